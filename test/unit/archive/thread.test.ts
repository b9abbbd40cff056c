/**
 * applyLayerOnThread: the same contract as applyLayer (result, tree, error
 * codes, the blob's own failure, cancellation, logs), with the work on a
 * worker thread.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { applyLayer, applyLayerOnThread } from '../../../src/archive/index.js';
import { BerthError, isBerthError } from '../../../src/errors.js';
import { createLogger, type LogRecord } from '../../../src/log.js';
import type { Digest } from '../../../src/oci/index.js';
import { tempDir } from '../../helpers/tmp.js';
import { chunked, gzip, sha256hex, shape, snapshot, tar, type Entry } from './helpers.js';

let tmp: { path: string; cleanup(): Promise<void> };
let n = 0;
before(async () => {
  tmp = await tempDir('berth-archive-thread');
});
after(() => tmp.cleanup());

function newRoot(): string {
  const dir = join(tmp.path, `root${n++}`);
  mkdirSync(dir);
  return dir;
}

const ENTRIES: Entry[] = [
  { name: 'd/', type: 'dir', mode: 0o750, uid: 7, gid: 8 },
  // Larger than the thread's in-flight window, so the blob is paused and resumed.
  { name: 'd/random', content: randomBytes(5 << 20) },
  { name: 'd/text', content: 'berth '.repeat(100_000), xattrs: { 'user.k': Buffer.from([0, 0xff, 1]) } },
  { name: 'd/s', type: 'symlink', linkname: 'text' },
  { name: 'd/h', type: 'link', linkname: 'd/text' },
  { name: 'd/.wh.gone' },
  { name: 'x', type: 'fifo' },
];
const TAR = tar(ENTRIES);
const GZ = gzip(TAR);
const DIFF_ID = `sha256:${sha256hex(TAR)}` as Digest;

async function rejectsWith(p: Promise<unknown>, code: string): Promise<BerthError> {
  let caught: BerthError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isBerthError(err), `expected a BerthError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    caught = err;
    return true;
  });
  return caught!;
}

describe('applyLayerOnThread', () => {
  it('makes the same tree and result as applyLayer, from chunks of any size', async () => {
    const here = newRoot();
    const there = newRoot();
    const expected = await applyLayer(here, chunked(GZ, 1 << 20), { compression: 'gzip', diffId: DIFF_ID });
    // Small chunks are copied to the thread, whole 1 MiB ones transferred: both must arrive intact.
    const small = await applyLayerOnThread(there, chunked(GZ, 7919), { compression: 'gzip', diffId: DIFF_ID });
    assert.deepEqual(small, expected);
    assert.deepEqual(shape(snapshot(there)), shape(snapshot(here)));
    const big = newRoot();
    const whole = Readable.from(
      (function* () {
        for (let i = 0; i < GZ.length; i += 1 << 20) yield Buffer.from(GZ.subarray(i, i + (1 << 20)));
      })(),
      { objectMode: false },
    );
    assert.deepEqual(await applyLayerOnThread(big, whole, { compression: 'gzip', diffId: DIFF_ID }), expected);
    assert.deepEqual(shape(snapshot(big)), shape(snapshot(here)));
  });

  it('applies one layer after another on the kept thread', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await applyLayerOnThread(newRoot(), chunked(TAR, 65536), { compression: 'none' });
      assert.equal(r.diffId, DIFF_ID);
    }
  });

  it('brings back errors with their code and details', async () => {
    const wrong = `sha256:${'0'.repeat(64)}` as Digest;
    const mismatch = await rejectsWith(applyLayerOnThread(newRoot(), chunked(GZ), { compression: 'gzip', diffId: wrong }), 'DIGEST_MISMATCH');
    assert.equal(mismatch.details['expected'], wrong);
    assert.equal(mismatch.details['found'], DIFF_ID);
    const bad = Buffer.from(GZ);
    bad.fill(0x55, 2000, 3000);
    await rejectsWith(applyLayerOnThread(newRoot(), chunked(bad), { compression: 'gzip' }), 'CORRUPT');
    const notDir = join(tmp.path, 'missing-root');
    await rejectsWith(applyLayerOnThread(notDir, chunked(TAR), { compression: 'none' }), 'NOT_FOUND');
  });

  it("passes the blob's own failure through with its code", async () => {
    let sent = false;
    const failing = new Readable({
      read() {
        if (!sent) {
          sent = true;
          this.push(GZ.subarray(0, 4000));
        } else this.destroy(new BerthError('UNAVAILABLE', 'blob read failed: disk on fire'));
      },
    });
    const err = await rejectsWith(applyLayerOnThread(newRoot(), failing, { compression: 'gzip' }), 'UNAVAILABLE');
    assert.match(err.message, /disk on fire/);
    assert.ok(failing.destroyed);
  });

  it('stops on abort with CANCELLED and destroys the blob', async () => {
    const stalled = new Readable({ read() {} });
    stalled.push(GZ.subarray(0, 100_000));
    const ac = new AbortController();
    const p = applyLayerOnThread(newRoot(), stalled, { compression: 'gzip', signal: ac.signal });
    setTimeout(() => ac.abort(), 50);
    await rejectsWith(p, 'CANCELLED');
    assert.ok(stalled.destroyed);
    ac.abort();
    await rejectsWith(applyLayerOnThread(newRoot(), chunked(TAR), { compression: 'none', signal: ac.signal }), 'CANCELLED');
  });

  it("sends the thread's log lines to the caller's logger", async () => {
    const records: LogRecord[] = [];
    const logger = createLogger((r) => records.push(r), 'debug');
    const root = newRoot();
    await applyLayerOnThread(root, chunked(TAR), { compression: 'none', logger });
    const applied = records.find((r) => r.msg === 'layer tar applied');
    assert.ok(applied, JSON.stringify(records));
    assert.equal(applied.fields['diffId'], DIFF_ID);
    assert.equal(applied.fields['root'], root);
  });
});
