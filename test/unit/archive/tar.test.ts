/**
 * The tar reader on its own: formats, numeric encodings, PAX records kept as
 * bytes, what counts as content, and the errors for malformed input.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBerthError } from '../../../src/errors.js';
import { TarReader, type TarEntry } from '../../../src/archive/tar.js';
import { fixChecksum, MTIME, tar } from './helpers.js';

async function* pieces(data: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

/** Every entry of `data` with its content, read in pieces of `size` bytes. */
async function readAll(data: Buffer, size = 4096): Promise<Array<TarEntry & { content: string }>> {
  const r = new TarReader(pieces(data, size));
  const out: Array<TarEntry & { content: string }> = [];
  for (let e = await r.next(); e; e = await r.next()) {
    const parts: Buffer[] = [];
    for (let p = await r.read(); p; p = await r.read()) parts.push(Buffer.from(p));
    out.push({ ...e, content: Buffer.concat(parts).toString('latin1') });
  }
  await r.drain();
  return out;
}

async function rejectsWith(data: Buffer, code: string, pattern: RegExp): Promise<void> {
  await assert.rejects(readAll(data), (err: unknown) => {
    assert.ok(isBerthError(err), String(err));
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('TarReader', () => {
  it('reads ustar entries of every kind, with their fields', async () => {
    const entries = await readAll(
      tar([
        { name: 'd/', type: 'dir', mode: 0o1755, uid: 7, gid: 8 },
        { name: 'd/f', content: 'hello', mode: 0o4711, mtime: MTIME },
        { name: 'd/l', type: 'symlink', linkname: '../x' },
        { name: 'd/h', type: 'link', linkname: 'd/f' },
        { name: 'd/c', type: 'char', devmajor: 4, devminor: 64 },
        { name: 'd/b', type: 'block', devmajor: 8, devminor: 17 },
        { name: 'd/p', type: 'fifo' },
      ]),
      1,
    );
    assert.deepEqual(
      entries.map((e) => [e.name, e.kind, e.mode, e.uid, e.gid, e.size, e.linkname, e.devmajor, e.devminor, e.content]),
      [
        ['d/', 'directory', 0o1755, 7, 8, 0, '', 0, 0, ''],
        ['d/f', 'file', 0o4711, 0, 0, 5, '', 0, 0, 'hello'],
        ['d/l', 'symlink', 0o777, 0, 0, 0, '../x', 0, 0, ''],
        ['d/h', 'link', 0o644, 0, 0, 0, 'd/f', 0, 0, ''],
        ['d/c', 'char', 0o644, 0, 0, 0, '', 4, 64, ''],
        ['d/b', 'block', 0o644, 0, 0, 0, '', 8, 17, ''],
        ['d/p', 'fifo', 0o644, 0, 0, 0, '', 0, 0, ''],
      ],
    );
    assert.equal(entries[1]!.mtime, BigInt(MTIME) * 1_000_000_000n);
    assert.equal(entries[0]!.offset, 0);
    assert.equal(entries[2]!.offset, 1536);
  });

  it('joins the ustar prefix field to the name', async () => {
    const t = tar([{ name: 'name-part', content: 'x' }]);
    t.write('some/prefix\0', 345, 'latin1');
    fixChecksum(t);
    assert.equal((await readAll(t))[0]!.name, 'some/prefix/name-part');
  });

  it('reads GNU base-256 numbers', async () => {
    const t = tar([{ name: 'f', content: 'x' }]);
    t.fill(0, 108, 116);
    t[108] = 0x80; // uid 0x01020304 in base-256
    t.writeUInt32BE(0x01020304, 112);
    fixChecksum(t);
    assert.equal((await readAll(t))[0]!.uid, 0x01020304);
  });

  it('keeps PAX values as bytes and applies path, linkpath, size, ids and times', async () => {
    const bin = Buffer.from([0x00, 0x80, 0xff, 0x0a, 0x3d]);
    const [e] = await readAll(
      tar([{ name: 'short', type: 'symlink', linkname: 't', xattrs: { 'security.capability': bin, 'user.a': 'v=w' }, pax: { path: 'p/a/x', linkpath: 'long/target', uid: '5000000', gid: '6', mtime: '1700000000.1234567891', atime: '1700000001', comment: 'ignored' } }]),
    );
    assert.equal(e!.name, 'p/a/x');
    assert.equal(e!.linkname, 'long/target');
    assert.deepEqual([e!.uid, e!.gid, e!.mtime, e!.atime], [5000000, 6, 1700000000123456789n, 1700000001000000000n]);
    assert.deepEqual(e!.xattrs?.map(([k, v]) => [k, v.toString('hex')]), [
      ['security.capability', bin.toString('hex')],
      ['user.a', Buffer.from('v=w').toString('hex')],
    ]);
  });

  it('uses the PAX size for content', async () => {
    const t = tar([{ name: 'f', content: 'x'.repeat(600), pax: { size: '600' } }, { name: 'g', content: 'y' }]);
    // Zero the header's own size field: the PAX record must win.
    const hdr = 1024;
    t.write('00000000000\0', hdr + 124, 'latin1');
    fixChecksum(t, hdr);
    const entries = await readAll(t);
    assert.deepEqual(entries.map((e) => [e.name, e.content.length]), [['f', 600], ['g', 1]]);
  });

  it('skips global PAX headers, as containerd does', async () => {
    const g = tar([{ name: 'pax_global_header', typeflag: 'g', content: '17 path=ignored\n' }], { end: false });
    const entries = await readAll(Buffer.concat([g, tar([{ name: 'f', content: 'x' }])]));
    assert.deepEqual(entries.map((e) => e.name), ['f']);
  });

  it('gives header-only types no content whatever their size field says', async () => {
    const t = tar([{ name: 'l', type: 'symlink', linkname: 'x' }, { name: 'f', content: 'z' }]);
    t.write('00000000777\0', 124, 'latin1');
    fixChecksum(t);
    assert.deepEqual((await readAll(t)).map((e) => [e.name, e.size]), [['l', 0], ['f', 1]]);
  });

  it('reads a NUL typeflag with a trailing slash as a directory, otherwise as a file', async () => {
    const entries = await readAll(tar([{ name: 'old-dir/', typeflag: '\0' }, { name: 'old-file', typeflag: '\0', content: 'q' }, { name: 'contig', typeflag: '7', content: 'c' }]));
    assert.deepEqual(entries.map((e) => [e.name, e.kind, e.content]), [['old-dir/', 'directory', ''], ['old-file', 'file', 'q'], ['contig', 'file', 'c']]);
  });

  it('accepts a stream that ends at a header boundary without the end-of-archive blocks', async () => {
    assert.deepEqual((await readAll(tar([{ name: 'f', content: 'x' }], { end: false }))).map((e) => e.name), ['f']);
  });

  it('refuses a bad checksum, a truncated header, content or extended header', async () => {
    const t = tar([{ name: 'f', content: 'hello world' }]);
    const bad = Buffer.from(t);
    bad[0] = 0x67;
    await rejectsWith(bad, 'CORRUPT', /checksum/);
    await rejectsWith(t.subarray(0, 300), 'CORRUPT', /ends inside a header/);
    await rejectsWith(t.subarray(0, 512 + 5), 'CORRUPT', /ends 6 bytes before the end of a file/);
    await rejectsWith(tar([{ name: 'p'.repeat(200), content: 'x' }]).subarray(0, 700), 'CORRUPT', /extended header/);
    await rejectsWith(tar([{ name: 'p'.repeat(200), content: 'x' }]).subarray(0, 1024), 'CORRUPT', /after an extended header/);
  });

  it('refuses garbage that is not a tar', async () => {
    await rejectsWith(Buffer.alloc(2048, 0x41), 'CORRUPT', /not a tar stream/);
  });

  it('refuses malformed PAX records', async () => {
    await rejectsWith(tar([{ name: 'f', pax: {} }, { name: 'x', typeflag: 'x', content: '99 path=x\n' }, { name: 'g' }]), 'CORRUPT', /malformed PAX record/);
    await rejectsWith(tar([{ name: 'x', typeflag: 'x', content: '10 uid=-1\n' }, { name: 'g' }]), 'CORRUPT', /not a non-negative integer/);
  });

  it('refuses unknown entry types, sparse files and non-UTF-8 names as UNSUPPORTED', async () => {
    await rejectsWith(tar([{ name: 'weird', typeflag: 'Z' }]), 'UNSUPPORTED', /entry type "Z".*weird/);
    await rejectsWith(tar([{ name: 'sparse', typeflag: 'S' }]), 'UNSUPPORTED', /sparse/);
    await rejectsWith(tar([{ name: 'f', content: 'x', pax: { 'GNU.sparse.major': '1' } }]), 'UNSUPPORTED', /sparse/);
    const latin1 = tar([{ name: 'caf_', content: 'x' }]);
    latin1[3] = 0xe9;
    fixChecksum(latin1);
    await rejectsWith(latin1, 'UNSUPPORTED', /not valid UTF-8/);
  });

  it('drains the stream after the end marker', async () => {
    let pulled = 0;
    const data = Buffer.concat([tar([{ name: 'f', content: 'x' }]), Buffer.alloc(10240), Buffer.from('trailing')]);
    async function* src(): AsyncGenerator<Buffer> {
      for (let i = 0; i < data.length; i += 512) {
        pulled += Math.min(512, data.length - i);
        yield data.subarray(i, i + 512);
      }
    }
    const r = new TarReader(src());
    assert.equal((await r.next())?.name, 'f');
    assert.equal(await r.next(), undefined);
    await r.drain();
    assert.equal(pulled, data.length);
  });
});

