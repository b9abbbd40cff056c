/**
 * applyLayer's stream handling: compressions, the diffID over the whole
 * decompressed stream, bad and truncated input, failures of the blob itself,
 * cancellation; and GNU tar as an oracle for the resulting tree.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync, chmodSync, lchownSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { applyLayer } from '../../../src/archive/index.js';
import { BerthError, isBerthError } from '../../../src/errors.js';
import { lsetxattr, mknod } from '../../../src/linux/index.js';
import type { Digest } from '../../../src/oci/index.js';
import { tempDir } from '../../helpers/tmp.js';
import { chunked, gzip, sha256hex, shape, snapshot, tar, zstd, type Entry } from './helpers.js';

let tmp: { path: string; cleanup(): Promise<void> };
let n = 0;
before(async () => {
  tmp = await tempDir('berth-archive-stream');
});
after(() => tmp.cleanup());

function newRoot(): string {
  const dir = join(tmp.path, `root${n++}`);
  mkdirSync(dir);
  return dir;
}

const ENTRIES: Entry[] = [
  { name: 'd/', type: 'dir', mode: 0o750 },
  { name: 'd/random', content: randomBytes(700_000) },
  { name: 'd/text', content: 'berth '.repeat(100_000) },
  { name: 'd/s', type: 'symlink', linkname: 'text' },
  { name: 'd/h', type: 'link', linkname: 'd/text' },
];
const TAR = tar(ENTRIES);
const DIFF_ID = `sha256:${sha256hex(TAR)}` as Digest;

async function rejectsWith(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<BerthError> {
  let caught: BerthError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isBerthError(err), `expected a BerthError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    caught = err;
    return true;
  });
  return caught!;
}

describe('compression', () => {
  const trees: string[] = [];
  for (const [compression, blob] of [
    ['none', TAR],
    ['gzip', gzip(TAR)],
    ['zstd', zstd(TAR)],
  ] as const) {
    it(`applies a ${compression} layer and verifies its diffID`, async () => {
      const root = newRoot();
      const res = await applyLayer(root, chunked(blob, 65536), { compression, diffId: DIFF_ID });
      assert.deepEqual(res, { diffId: DIFF_ID, size: TAR.length, entries: ENTRIES.length });
      assert.ok(readFileSync(join(root, 'd/random')).equals(ENTRIES[1]!.content as Buffer));
      const t = snapshot(root);
      t.delete('.');
      trees.push(JSON.stringify(shape(t)));
    });
  }
  it('gives the same tree for every compression', () => {
    assert.equal(trees.length, 3);
    assert.equal(trees[1], trees[0]);
    assert.equal(trees[2], trees[0]);
  });

  it('reads concatenated gzip members as one stream', async () => {
    const half = 512 * 3;
    const blob = Buffer.concat([gzip(TAR.subarray(0, half)), gzip(TAR.subarray(half))]);
    const res = await applyLayer(newRoot(), chunked(blob), { compression: 'gzip', diffId: DIFF_ID });
    assert.equal(res.diffId, DIFF_ID);
  });
});

describe('diffID', () => {
  it('fails with DIGEST_MISMATCH naming the expected and the found digest', async () => {
    const wrong = `sha256:${'0'.repeat(64)}` as Digest;
    const err = await rejectsWith(applyLayer(newRoot(), chunked(gzip(TAR)), { compression: 'gzip', diffId: wrong }), 'DIGEST_MISMATCH');
    assert.ok(err.message.includes(wrong) && err.message.includes(DIFF_ID), err.message);
    assert.deepEqual(err.details, { expected: wrong, found: DIFF_ID });
  });

  it('covers everything after the end-of-archive marker: record padding and trailing bytes', async () => {
    const padded = Buffer.concat([TAR, Buffer.alloc(10240 - (TAR.length % 10240)), Buffer.from('trailing junk')]);
    const res = await applyLayer(newRoot(), chunked(zstd(padded)), { compression: 'zstd' });
    assert.deepEqual(res, { diffId: `sha256:${sha256hex(padded)}`, size: padded.length, entries: ENTRIES.length });
    await rejectsWith(applyLayer(newRoot(), chunked(padded), { compression: 'none', diffId: DIFF_ID }), 'DIGEST_MISMATCH');
  });

  it('uses the diffID\'s algorithm', async () => {
    const { createHash } = await import('node:crypto');
    const sha512 = `sha512:${createHash('sha512').update(TAR).digest('hex')}` as Digest;
    assert.equal((await applyLayer(newRoot(), chunked(TAR), { compression: 'none', diffId: sha512 })).diffId, sha512);
  });
});

describe('bad input', () => {
  it('corrupt, truncated and non-gzip data are CORRUPT', async () => {
    const gz = gzip(TAR);
    const flipped = Buffer.from(gz);
    for (let i = 100; i < 200; i++) flipped[i] = flipped[i]! ^ 0x5a;
    await rejectsWith(applyLayer(newRoot(), chunked(flipped), { compression: 'gzip' }), 'CORRUPT', /gzip/);
    await rejectsWith(applyLayer(newRoot(), chunked(gz.subarray(0, gz.length - 100)), { compression: 'gzip' }), 'CORRUPT', /gzip/);
    await rejectsWith(applyLayer(newRoot(), chunked(TAR), { compression: 'gzip' }), 'CORRUPT', /gzip/);
  });

  it('corrupt, truncated and non-zstd data are CORRUPT', async () => {
    const zs = zstd(TAR);
    const flipped = Buffer.from(zs);
    for (let i = 100; i < 200; i++) flipped[i] = flipped[i]! ^ 0x5a;
    await rejectsWith(applyLayer(newRoot(), chunked(flipped), { compression: 'zstd' }), 'CORRUPT', /zstd/);
    await rejectsWith(applyLayer(newRoot(), chunked(zs.subarray(0, zs.length - 100)), { compression: 'zstd' }), 'CORRUPT', /zstd/);
    await rejectsWith(applyLayer(newRoot(), chunked(TAR), { compression: 'zstd' }), 'CORRUPT', /zstd/);
  });

  it('a tar truncated inside a file or a header is CORRUPT', async () => {
    await rejectsWith(applyLayer(newRoot(), chunked(gzip(TAR.subarray(0, 100_000))), { compression: 'gzip' }), 'CORRUPT', /ends .* before the end of a file/);
    await rejectsWith(applyLayer(newRoot(), chunked(TAR.subarray(0, 512 + 512 + 700_000 + 100)), { compression: 'none' }), 'CORRUPT', /ends inside/);
  });

  it('an unknown entry type is UNSUPPORTED, naming the entry', async () => {
    await rejectsWith(applyLayer(newRoot(), chunked(tar([{ name: 'ok', content: 'x' }, { name: 'odd', typeflag: 'Q' }])), { compression: 'none' }), 'UNSUPPORTED', /"odd"/);
  });

  it('owners outside the range of Linux ids are CORRUPT', async () => {
    await rejectsWith(applyLayer(newRoot(), chunked(tar([{ name: 'f', content: 'x', pax: { uid: '4294967295' } }])), { compression: 'none' }), 'CORRUPT', /owner 4294967295:0/);
    await rejectsWith(applyLayer(newRoot(), chunked(tar([{ name: 'f', content: 'x', pax: { gid: '99999999999' } }])), { compression: 'none' }), 'CORRUPT', /owner/);
  });

  it('a root that is not a directory is NOT_FOUND', async () => {
    await rejectsWith(applyLayer(join(tmp.path, 'no-such-root'), chunked(TAR), { compression: 'none' }), 'NOT_FOUND', /no-such-root/);
  });

  it('an unknown compression is UNSUPPORTED', async () => {
    await rejectsWith(applyLayer(newRoot(), chunked(TAR), { compression: 'lz4' as 'none' }), 'UNSUPPORTED');
  });
});

/** A blob that sends `data` then fails with `err`. */
function failing(data: Buffer, err: Error): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(data);
      } else this.destroy(err);
    },
  });
}

/** zstd processes that are children of this one. */
function zstdChildren(): number[] {
  const out: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (stat.includes('(zstd)') && Number(fields[1]) === process.pid) out.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

describe('the blob stream', () => {
  for (const [compression, blob] of [
    ['none', TAR],
    ['gzip', gzip(TAR)],
    ['zstd', zstd(TAR)],
  ] as const) {
    it(`passes a failure of the blob through unchanged (${compression})`, async () => {
      const cause = new BerthError('UNAVAILABLE', 'blob read failed: disk on fire');
      await assert.rejects(applyLayer(newRoot(), failing(blob.subarray(0, 4000), cause), { compression }), (err: unknown) => err === cause);
      if (compression === 'zstd') await waitFor(() => zstdChildren().length === 0);
    });
  }

  it('stops on abort with CANCELLED, killing zstd', async () => {
    const zs = zstd(TAR);
    const stalled = new Readable({ read() {} });
    stalled.push(zs.subarray(0, 1000));
    const ac = new AbortController();
    const p = applyLayer(newRoot(), stalled, { compression: 'zstd', signal: ac.signal });
    await waitFor(() => zstdChildren().length > 0);
    setTimeout(() => ac.abort(), 20);
    await rejectsWith(p, 'CANCELLED');
    await waitFor(() => zstdChildren().length === 0);
    assert.ok(stalled.destroyed);
  });

  it('refuses to start when already aborted', async () => {
    const ac = new AbortController();
    ac.abort();
    await rejectsWith(applyLayer(newRoot(), chunked(TAR), { compression: 'none', signal: ac.signal }), 'CANCELLED');
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('GNU tar as the oracle', () => {
  /** security.capability v2 with bytes >= 0x80 (cap_setfcap). */
  const CAP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

  function makeSource(): string {
    const src = join(tmp.path, `src${n++}`);
    const p = (...x: string[]): string => join(src, ...x);
    mkdirSync(p('usr/bin'), { recursive: true });
    mkdirSync(p('tmp'));
    chmodSync(p('tmp'), 0o1777);
    mkdirSync(p('srv'));
    lchownSync(p('srv'), 33, 3000000);
    chmodSync(p('srv'), 0o2750);
    writeFileSync(p('usr/bin/empty'), '');
    writeFileSync(p('usr/bin/su'), randomBytes(5000));
    lchownSync(p('usr/bin/su'), 0, 0);
    chmodSync(p('usr/bin/su'), 0o4755);
    writeFileSync(p('usr/bin/ping'), 'ping');
    lsetxattr(p('usr/bin/ping'), 'security.capability', CAP);
    writeFileSync(p('usr/bin/big'), randomBytes(3 << 20));
    writeFileSync(p('usr/bin/text'), 'compressible '.repeat(200_000));
    lsetxattr(p('usr/bin/text'), 'user.mime', Buffer.from('text/plain'));
    linkSync(p('usr/bin/su'), p('usr/bin/su-link'));
    const long = p('a'.repeat(120), 'b'.repeat(200), 'c'.repeat(100));
    mkdirSync(long, { recursive: true });
    writeFileSync(join(long, 'file-with-a-long-path'), 'long');
    symlinkSync(`/${'t'.repeat(150)}/target`, p('long-target'));
    symlinkSync('../usr/bin/su', p('tmp/rel'));
    writeFileSync(p('ünïcødé ✓'), 'utf8');
    writeFileSync(p('owned'), 'o');
    lchownSync(p('owned'), 2500000, 4000001);
    mknod(p('fifo'), 'fifo', 0o640);
    mknod(p('null'), 'char', 0o666, 1, 3);
    mknod(p('disk'), 'block', 0o660, 8, 0);
    writeFileSync(p('frac'), 'f');
    utimesSync(p('frac'), 1700000000.25, 1700000000.75);
    for (const d of ['usr/bin', 'usr', 'tmp']) utimesSync(p(d), 1600000000, 1600000000);
    return src;
  }

  /** The tree without the root entry, inode numbers replaced by hardlink groups. */
  function comparable(root: string): unknown[] {
    const t = snapshot(root);
    t.delete('.');
    const group = new Map<number, string>();
    return [...t].map(([path, node]) => {
      if (!group.has(node.ino)) group.set(node.ino, path);
      const { ino, ...rest } = node;
      return [path, { ...rest, linkGroup: node.nlink > 1 ? group.get(ino) : undefined }];
    });
  }

  for (const format of ['pax', 'gnu'] as const) {
    it(`gives the tree GNU tar extracts, for a ${format} archive`, async () => {
      const src = makeSource();
      const layer = execFileSync('tar', [`--format=${format}`, ...(format === 'pax' ? ['--xattrs', '--xattrs-include=*'] : []), '-C', src, '-cf', '-', '.'], { maxBuffer: 1 << 30 });
      const byTar = newRoot();
      execFileSync('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '--same-permissions', '--numeric-owner', '-C', byTar, '-xf', '-'], { input: layer });
      const byBerth = newRoot();
      const res = await applyLayer(byBerth, chunked(gzip(layer), 1 << 16), { compression: 'gzip' });
      assert.equal(res.diffId, `sha256:${sha256hex(layer)}`);
      assert.equal(layer.length % 10240, 0); // GNU tar pads to its record size: the diffID covered it
      const ours = comparable(byBerth);
      assert.deepEqual(ours, comparable(byTar));
      const mtimes = ours.map((e) => (e as [string, { mtimeNs: string }])[1].mtimeNs);
      assert.ok(mtimes.includes(format === 'pax' ? '1700000000750000000' : '1700000000000000000') && mtimes.includes('1600000000000000000'));
      // The oracle itself saw what matters.
      const ping = snapshot(byTar).get('usr/bin/ping')!;
      if (format === 'pax') assert.equal(ping.xattrs['security.capability'], CAP.toString('hex'));
      assert.equal(lstatSync(join(byTar, 'usr/bin/su')).mode & 0o7777, 0o4755);
      assert.equal(lstatSync(join(byTar, 'owned')).uid, 2500000);
    });
  }
});
