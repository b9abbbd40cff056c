/**
 * Conformance tests every ContentStore must pass. An implementation's test
 * file calls contentStoreConformance with a factory that makes a fresh,
 * empty store, plus hooks that damage stored bytes behind the store's back
 * (the only way to prove that verification looks at the bytes).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { ContentStore, ContentWriter } from '../../src/content/store.js';
import { isBerthError, type BerthError, type ErrorCode } from '../../src/errors.js';
import { sha256, type Digest } from '../../src/oci/digest.js';

export interface ContentStoreHarness {
  store: ContentStore;
  cleanup(): Promise<void>;
  /** Changes one byte of a committed blob in place. */
  corrupt(digest: Digest): Promise<void>;
  /** Changes one byte of an ingest's partial data (between two writer sessions). */
  corruptIngest(ref: string): Promise<void>;
}

/** Deterministic bytes, different for each seed. */
export function testBytes(size: number, seed = 'x'): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let i = 0; i < size; i += block.length) {
    block.copy(out, i);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

export async function writeTo(w: ContentWriter, data: Uint8Array): Promise<void> {
  await pipeline(Readable.from([Buffer.from(data)]), w.stream());
}

export async function rejectsWith(p: Promise<unknown>, code: ErrorCode, check?: (err: BerthError) => void): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isBerthError(err), `expected a BerthError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    check?.(err);
    return true;
  });
}

async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function listAll(store: ContentStore): Promise<string[]> {
  const out: string[] = [];
  for await (const b of store.list()) out.push(b.digest);
  return out.sort();
}

function sha512(data: Uint8Array): Digest {
  return `sha512:${createHash('sha512').update(data).digest('hex')}` as Digest;
}

export function contentStoreConformance(name: string, makeStore: () => Promise<ContentStoreHarness>): void {
  describe(`ContentStore conformance: ${name}`, () => {
    let h: ContentStoreHarness;
    let store: ContentStore;
    beforeEach(async () => {
      h = await makeStore();
      store = h.store;
    });
    afterEach(async () => {
      await h.cleanup();
    });

    it('followIngest streams an ingest while it is written, through its commit', async () => {
      const data = testBytes(3 << 20, 'follow');
      const d = sha256(data);
      assert.equal(await store.followIngest('no-such-ref', 10, new AbortController().signal), undefined);
      const w = await store.writer('follow-ref', { digest: d, size: data.length });
      const sink = w.stream();
      const firstHalf = new Promise<void>((r) => sink.write(data.subarray(0, 1 << 20), () => r()));
      await firstHalf;
      const follower = await store.followIngest('follow-ref', data.length, new AbortController().signal);
      assert.ok(follower, 'an open ingest can be followed');
      const got = collect(follower);
      // The rest arrives later, and the blob is committed (renamed) while being followed.
      await new Promise((r) => setTimeout(r, 30));
      await new Promise<void>((resolve, reject) => sink.end(data.subarray(1 << 20), () => resolve()).on('error', reject));
      await w.commit();
      assert.deepEqual(await got, data);
    });

    it('followIngest stops with CANCELLED when its signal aborts', async () => {
      const data = testBytes(1 << 20, 'abort');
      const w = await store.writer('abort-ref', { digest: sha256(data), size: data.length });
      await new Promise<void>((r) => w.stream().write(data.subarray(0, 1000), () => r()));
      const ac = new AbortController();
      const follower = (await store.followIngest('abort-ref', data.length, ac.signal))!;
      const got = collect(follower);
      setTimeout(() => ac.abort(), 30);
      await rejectsWith(got, 'CANCELLED');
      await w.abort();
    });

    it('round-trips put, info, reader, readBytes, list and delete', async () => {
      const a = testBytes(100_000, 'a');
      const b = testBytes(10, 'b');
      const da = sha256(a);
      const db = sha512(b);
      const before = Date.now();
      const ia = await store.put({ digest: da, size: a.length }, a);
      const ib = await store.put({ digest: db }, Readable.from([b.subarray(0, 4), b.subarray(4)]));
      assert.deepEqual({ digest: ia.digest, size: ia.size }, { digest: da, size: a.length });
      assert.deepEqual({ digest: ib.digest, size: ib.size }, { digest: db, size: 10 });
      assert.ok(ia.committedAt.getTime() >= before - 2000, 'committedAt is the commit time');

      assert.equal((await store.info(da))?.size, a.length);
      assert.deepEqual(await collect(await store.reader(da)), a);
      assert.deepEqual(await collect(await store.reader(da, { start: 99_990 })), a.subarray(99_990));
      assert.deepEqual(await store.readBytes(db, 10), b);
      assert.deepEqual(await listAll(store), [da, db].sort());
      assert.deepEqual(await store.ingests(), [], 'a committed ingest is gone');
      assert.equal(await store.verify(da), true);
      assert.equal(await store.verify(db), true);

      await store.delete(da);
      assert.equal(await store.info(da), undefined);
      assert.deepEqual(await listAll(store), [db]);
      await rejectsWith(store.delete(da), 'NOT_FOUND');
      await rejectsWith(store.reader(da), 'NOT_FOUND');
      await rejectsWith(store.readBytes(da, 1 << 20), 'NOT_FOUND');
      await rejectsWith(store.verify(da), 'NOT_FOUND');
    });

    it('delete with unless: the blob is gone while unless() decides, then deleted or put back whole', async () => {
      const data = testBytes(5000, 'u');
      const digest = sha256(data);
      await store.put({ digest, size: data.length }, data);
      const seen: Array<boolean> = [];
      const kept = await store.delete(digest, {
        unless: async () => {
          seen.push((await store.info(digest)) !== undefined);
          return true;
        },
      });
      assert.equal(kept, false, 'not deleted');
      assert.deepEqual(seen, [false], 'aside while unless() runs: a writer would store it anew');
      assert.deepEqual(await collect(await store.reader(digest)), data);
      assert.equal(await store.verify(digest), true);
      assert.deepEqual(await store.ingests(), [], 'the aside copy is no ingest');

      // A writer that stores it anew while it is aside: put back over the same bytes.
      assert.equal(await store.delete(digest, { unless: async () => ((await store.put({ digest, size: data.length }, data)), true) }), false);
      assert.deepEqual(await collect(await store.reader(digest)), data);

      assert.equal(await store.delete(digest, { unless: async () => false }), true);
      assert.equal(await store.info(digest), undefined);
      assert.deepEqual(await listAll(store), []);
      await rejectsWith(store.delete(digest, { unless: async () => false }), 'NOT_FOUND');
    });

    it('commit rejects a size mismatch, shows nothing under the digest and discards the ingest', async () => {
      const data = testBytes(1000);
      const digest = sha256(data);
      const w = await store.writer('short', { digest, size: 1001 });
      await writeTo(w, data);
      await rejectsWith(w.commit(), 'SIZE_MISMATCH', (err) => {
        assert.equal(err.details.expected, 1001);
        assert.equal(err.details.found, 1000);
        assert.match(err.message, /1001/);
        assert.match(err.message, /1000/);
      });
      assert.equal(await store.info(digest), undefined);
      assert.deepEqual(await listAll(store), []);
      assert.deepEqual(await store.ingests(), []);
      const again = await store.writer('short', { digest, size: 1000 });
      assert.equal(again.offset, 0, 'the bad bytes are not resumed');
      await again.abort();
    });

    it('commit rejects a digest mismatch, shows nothing under the digest and discards the ingest', async () => {
      const data = testBytes(1000);
      const wrong = sha256(testBytes(1000, 'other'));
      const w = await store.writer('bad', { digest: wrong, size: 1000 });
      await writeTo(w, data);
      await rejectsWith(w.commit(), 'DIGEST_MISMATCH', (err) => {
        assert.equal(err.details.expected, wrong);
        assert.equal(err.details.found, sha256(data));
        assert.ok(err.message.includes(wrong) && err.message.includes(sha256(data)), err.message);
      });
      assert.equal(await store.info(wrong), undefined);
      assert.equal(await store.info(sha256(data)), undefined);
      assert.deepEqual(await store.ingests(), []);
      await rejectsWith(store.put({ digest: wrong }, data), 'DIGEST_MISMATCH');
      assert.deepEqual(await listAll(store), []);
    });

    it('fails an oversized stream as soon as it passes the expected size', async () => {
      const digest = sha256(testBytes(100));
      const w = await store.writer('big', { digest, size: 100 });
      let produced = 0;
      async function* oversized(): AsyncGenerator<Buffer> {
        for (; produced < 1024; produced++) yield Buffer.alloc(64 * 1024, 1);
      }
      await rejectsWith(pipeline(Readable.from(oversized()), w.stream()), 'SIZE_MISMATCH');
      assert.ok(produced < 64, `the stream failed early (after ${produced} chunks)`);
      const st = (await store.ingests()).find((i) => i.ref === 'big');
      assert.ok(st && st.offset <= 100, `no more than the expected size is kept (${st?.offset})`);
      await w.abort();
      assert.deepEqual(await store.ingests(), []);
    });

    it('resumes an interrupted ingest from its offset', async () => {
      const data = testBytes(300_001);
      const digest = sha256(data);
      const half = 150_000;
      const w1 = await store.writer('resume', { digest, size: data.length });
      assert.equal(w1.offset, 0);
      await writeTo(w1, data.subarray(0, half));
      await w1.close();
      assert.equal(await store.info(digest), undefined, 'nothing visible before commit');
      const status = await store.ingests();
      assert.equal(status.length, 1);
      assert.equal(status[0]?.ref, 'resume');
      assert.equal(status[0]?.offset, half);
      assert.equal(status[0]?.expected?.digest, digest);

      const w2 = await store.writer('resume', { digest, size: data.length });
      assert.equal(w2.offset, half);
      await writeTo(w2, data.subarray(w2.offset));
      const info = await w2.commit();
      assert.equal(info.size, data.length);
      assert.deepEqual(await store.readBytes(digest, data.length), data);
      assert.deepEqual(await store.ingests(), []);
    });

    it('a large blob written from one reused buffer (shared memory) and resumed commits the right digest; a wrong one fails', async () => {
      // Large enough for a store to hash it off the writer's thread: a hash that read a buffer after its write's callback would see the next chunk.
      const data = testBytes(20 * 1024 * 1024 + 17, 'large');
      const digest = sha256(data);
      const buf = Buffer.from(new SharedArrayBuffer(1 << 20));
      const writeReusing = async (w: ContentWriter, from: number, to: number): Promise<void> => {
        const sink = w.stream();
        for (let at = from; at < to; ) {
          const n = data.copy(buf, 0, at, Math.min(to, at + buf.length));
          await new Promise<void>((resolve, reject) => sink.write(buf.subarray(0, n), (err) => (err ? reject(err) : resolve())));
          buf.fill(0); // the caller's reuse: allowed once the write has called back
          at += n;
        }
        sink.end();
        await new Promise<void>((resolve, reject) => sink.once('finish', resolve).once('error', reject));
      };
      const w1 = await store.writer('large', { digest, size: data.length });
      await writeReusing(w1, 0, 12 * 1024 * 1024 + 5);
      await w1.close();
      const w2 = await store.writer('large', { digest, size: data.length });
      assert.equal(w2.offset, 12 * 1024 * 1024 + 5);
      await writeReusing(w2, w2.offset, data.length);
      assert.equal((await w2.commit()).size, data.length);
      assert.ok((await store.readBytes(digest, data.length)).equals(data));

      const other = testBytes(data.length, 'other');
      const w3 = await store.writer('large-wrong', { digest: sha256(other), size: data.length });
      await writeReusing(w3, 0, data.length);
      await rejectsWith(w3.commit(), 'DIGEST_MISMATCH', (err) => assert.equal((err.details as { found?: string }).found, digest));
      assert.equal(await store.info(sha256(other)), undefined);
    });

    it('detects partial data that was changed on disk between sessions', async () => {
      const data = testBytes(5000);
      const digest = sha256(data);
      const w1 = await store.writer('tampered', { digest, size: data.length });
      await writeTo(w1, data.subarray(0, 2500));
      await w1.close();
      await h.corruptIngest('tampered');
      const w2 = await store.writer('tampered', { digest, size: data.length });
      assert.equal(w2.offset, 2500);
      await writeTo(w2, data.subarray(2500));
      await rejectsWith(w2.commit(), 'DIGEST_MISMATCH');
      assert.equal(await store.info(digest), undefined);
      assert.deepEqual(await store.ingests(), []);
    });

    it('treats committing an already stored blob as success', async () => {
      const data = testBytes(4096);
      const digest = sha256(data);
      await store.put({ digest, size: data.length }, data);
      const w = await store.writer('again', { digest, size: data.length });
      assert.equal(w.offset, data.length, 'nothing left to write');
      const info = await w.commit();
      assert.equal(info.size, data.length);
      assert.deepEqual(await store.ingests(), []);
      const again = await store.put({ digest }, data);
      assert.equal(again.size, data.length);
      const wrong = await store.writer('wrong-size', { digest, size: data.length + 1 });
      await rejectsWith(wrong.commit(), 'SIZE_MISMATCH');
      assert.equal(await store.verify(digest), true, 'the stored blob is untouched');
    });

    it('lets two writers of the same blob under different refs both commit', async () => {
      const data = testBytes(20_000);
      const digest = sha256(data);
      const a = await store.writer('race-a', { digest, size: data.length });
      const b = await store.writer('race-b', { digest, size: data.length });
      await writeTo(a, data);
      await writeTo(b, data);
      await a.commit();
      const info = await b.commit();
      assert.equal(info.size, data.length);
      assert.deepEqual(await listAll(store), [digest]);
      assert.deepEqual(await store.ingests(), []);
      assert.equal(await store.verify(digest), true);
    });

    it('serialises writers of the same ref', async () => {
      const data = testBytes(10_000);
      const digest = sha256(data);
      const order: string[] = [];
      const first = await store.writer('same', { digest, size: data.length });
      const secondP = store.writer('same', { digest, size: data.length }).then((w) => {
        order.push('second opened');
        return w;
      });
      await sleep(150);
      assert.equal(order.length, 0, 'the second writer waits while the first is open');
      await writeTo(first, data.subarray(0, 4000));
      order.push('first closing');
      await first.close();
      const second = await secondP;
      assert.deepEqual(order, ['first closing', 'second opened']);
      assert.equal(second.offset, 4000, 'the second writer sees what the first wrote');
      await writeTo(second, data.subarray(4000));
      await second.commit();
      assert.equal(await store.verify(digest), true);
    });

    it('gives up with LOCKED after timeoutMs while another writer holds the ref', async () => {
      const digest = sha256(testBytes(10));
      const ref = 'held/ref';
      const first = await store.writer(ref, { digest, size: 10 });
      const t0 = Date.now();
      await rejectsWith(store.writer(ref, { digest, size: 10 }, { timeoutMs: 100 }), 'LOCKED', (err) => {
        assert.ok(err.message.includes(ref), err.message);
        assert.equal(err.details.ref, ref);
      });
      const waited = Date.now() - t0;
      assert.ok(waited >= 90 && waited < 5000, `waited ${waited} ms`);
      await first.abort();
      const next = await store.writer(ref, { digest, size: 10 }, { timeoutMs: 100 });
      await next.abort();
    });

    it('truncate restarts the ingest at offset 0', async () => {
      const data = testBytes(3000);
      const digest = sha256(data);
      const w1 = await store.writer('trunc', { digest, size: data.length });
      await writeTo(w1, testBytes(1000, 'garbage'));
      await w1.close();
      const w2 = await store.writer('trunc', { digest, size: data.length });
      assert.equal(w2.offset, 1000);
      await w2.truncate();
      assert.equal(w2.offset, 0);
      await writeTo(w2, data);
      await w2.commit();
      assert.deepEqual(await store.readBytes(digest, 3000), data);
    });

    it('put restarts a leftover ingest instead of resuming it', async () => {
      const data = testBytes(3000);
      const digest = sha256(data);
      const w = await store.writer('leftover', { digest, size: data.length });
      await writeTo(w, testBytes(1000, 'garbage'));
      await w.close();
      const info = await store.put({ digest, size: data.length }, data, 'leftover');
      assert.equal(info.size, 3000);
      assert.equal(await store.verify(digest), true);
      assert.deepEqual(await store.ingests(), []);
    });

    it('restarts an ingest whose partial data cannot belong to the expected blob', async () => {
      const data = testBytes(10);
      const digest = sha256(data);
      const w1 = await store.writer('changed', { digest: sha256(testBytes(10, 'other')) });
      await writeTo(w1, testBytes(5, 'other'));
      await w1.close();
      const w2 = await store.writer('changed', { digest, size: 10 });
      assert.equal(w2.offset, 0, 'partial data of another digest is dropped');
      await w2.close();
      assert.deepEqual((await store.ingests()).map((i) => [i.ref, i.offset, i.expected?.digest]), [['changed', 0, digest]]);

      const w3 = await store.writer('longer', { digest });
      await writeTo(w3, testBytes(20, 'junk'));
      await w3.close();
      const w4 = await store.writer('longer', { digest, size: 10 });
      assert.equal(w4.offset, 0, 'more data than expected is dropped');
      await writeTo(w4, data);
      await w4.commit();
      assert.deepEqual(await store.readBytes(digest, 10), data);
    });

    it('readBytes fails with TOO_LARGE above max', async () => {
      const data = testBytes(100);
      const digest = sha256(data);
      await store.put({ digest, size: 100 }, data);
      await rejectsWith(store.readBytes(digest, 99), 'TOO_LARGE', (err) => assert.ok(err.message.includes(digest)));
      assert.deepEqual(await store.readBytes(digest, 100), data);
    });

    it('rejects invalid digests with INVALID_ARGUMENT before touching storage', async () => {
      const bad = ['sha256:../../x', `sha256:${'A'.repeat(64)}`, '../../../etc/passwd', `sha256:${'a'.repeat(63)}/`, 'sha256:', ''] as Digest[];
      for (const d of bad) {
        await rejectsWith(store.info(d), 'INVALID_ARGUMENT');
        await rejectsWith(store.reader(d), 'INVALID_ARGUMENT');
        await rejectsWith(store.readBytes(d, 10), 'INVALID_ARGUMENT');
        await rejectsWith(store.delete(d), 'INVALID_ARGUMENT');
        await rejectsWith(store.verify(d), 'INVALID_ARGUMENT');
        await rejectsWith(store.writer('ref', { digest: d }), 'INVALID_ARGUMENT');
        await rejectsWith(store.put({ digest: d }, Buffer.from('x')), 'INVALID_ARGUMENT');
      }
      assert.deepEqual(await listAll(store), []);
      assert.deepEqual(await store.ingests(), []);
    });

    it('accepts any ref string and reports it back', async () => {
      const data = testBytes(10);
      const digest = sha256(data);
      const refs = ['../../../etc/passwd', 'a/b\\c d\u0000e', 'layer-sha256:' + 'f'.repeat(64), '☃'];
      for (const ref of refs) {
        const w = await store.writer(ref, { digest, size: 10 });
        await writeTo(w, data.subarray(0, 5));
        await w.close();
      }
      assert.deepEqual((await store.ingests()).map((i) => i.ref).sort(), [...refs].sort());
      for (const i of await store.ingests()) assert.equal(i.offset, 5);
      await store.abortIngest(refs[0]!);
      assert.equal((await store.ingests()).length, refs.length - 1);
      await rejectsWith(store.abortIngest(refs[0]!), 'NOT_FOUND');
      const w = await store.writer(refs[1]!, { digest, size: 10 });
      await w.abort();
      assert.equal((await store.ingests()).length, refs.length - 2);
      assert.deepEqual(await listAll(store), []);
    });

    it('abortIngest fails with LOCKED while a writer holds the ref', async () => {
      const digest = sha256(testBytes(10));
      const w = await store.writer('busy', { digest, size: 10 });
      await writeTo(w, testBytes(10).subarray(0, 3));
      await rejectsWith(store.abortIngest('busy'), 'LOCKED');
      await w.close();
      await store.abortIngest('busy');
      assert.deepEqual(await store.ingests(), []);
    });

    it('a writer is unusable after commit, close or abort', async () => {
      const data = testBytes(10);
      const digest = sha256(data);
      const w = await store.writer('once', { digest, size: 10 });
      await writeTo(w, data);
      await w.commit();
      assert.throws(() => w.stream());
      await rejectsWith(w.commit(), 'INTERNAL');
      await w.close(); // closing twice is harmless
    });

    it('verify detects a corrupted blob', async () => {
      const data = testBytes(70_000);
      const digest = sha256(data);
      await store.put({ digest, size: data.length }, data);
      assert.equal(await store.verify(digest), true);
      await h.corrupt(digest);
      assert.equal(await store.verify(digest), false);
    });
  });
}
