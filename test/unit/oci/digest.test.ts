import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { BerthError, type ErrorCode } from '../../../src/errors.js';
import { digestAlgorithm, digestHex, isDigest, newHasher, parseDigest, sha256, VerifyingStream, type Digest } from '../../../src/oci/digest.js';

const hex = (alg: string, data: Uint8Array | string): string => createHash(alg).update(data).digest('hex');
const H64 = '0123456789abcdef'.repeat(4);
const H128 = H64 + H64;

describe('isDigest', () => {
  const table: Array<[unknown, boolean]> = [
    [`sha256:${H64}`, true],
    [`sha512:${H128}`, true],
    [`sha256:${H64.toUpperCase()}`, false],
    [`sha256:${H64.slice(0, 63)}A`, false],
    [`sha256:${H64.slice(0, 63)}`, false],
    [`sha256:${H64}0`, false],
    [`sha512:${H64}`, false],
    [`sha384:${'a'.repeat(96)}`, false],
    [`SHA256:${H64}`, false],
    [`sha256:${H64}\n`, false],
    [` sha256:${H64}`, false],
    ['sha256:../../etc', false],
    [`sha256:../../${H64.slice(6)}`, false],
    [`sha256/${H64}`, false],
    [`sha256:${H64.slice(0, 32)}/${H64.slice(33)}`, false],
    ['sha256:', false],
    [`:${H64}`, false],
    [H64, false],
    ['', false],
    [undefined, false],
    [null, false],
    [42, false],
    [{ toString: () => `sha256:${H64}` }, false],
  ];
  for (const [input, want] of table) it(`${JSON.stringify(input) ?? String(input)} → ${want}`, () => assert.equal(isDigest(input), want));
});

describe('parseDigest', () => {
  it('returns a valid digest unchanged', () => {
    assert.equal(parseDigest(`sha256:${H64}`), `sha256:${H64}`);
    assert.equal(parseDigest(`sha512:${H128}`), `sha512:${H128}`);
  });

  const bad: Array<[string, ErrorCode]> = [
    ['sha256:../../etc', 'INVALID_ARGUMENT'],
    ['sha256:../../etc/passwd', 'INVALID_ARGUMENT'],
    [`sha256:${H64.toUpperCase()}`, 'INVALID_ARGUMENT'],
    ['sha256:abc', 'INVALID_ARGUMENT'],
    [H64, 'INVALID_ARGUMENT'],
    ['', 'INVALID_ARGUMENT'],
    [`md5:${'a'.repeat(32)}`, 'UNSUPPORTED'],
    ['../../etc:passwd', 'UNSUPPORTED'],
  ];
  for (const [input, code] of bad) {
    it(`rejects ${JSON.stringify(input)} with ${code}`, () => {
      assert.throws(() => parseDigest(input, 'layer digest'), (err: unknown) => {
        assert.ok(err instanceof BerthError);
        assert.equal(err.code, code);
        assert.ok(err.message.includes('layer digest'), err.message);
        assert.ok(err.message.includes(JSON.stringify(input)), err.message);
        assert.ok(err.hint);
        return true;
      });
    });
  }
});

describe('digest helpers', () => {
  it('splits algorithm and hex', () => {
    const d = parseDigest(`sha512:${H128}`);
    assert.equal(digestAlgorithm(d), 'sha512');
    assert.equal(digestHex(d), H128);
  });

  it('sha256 matches node:crypto and a known value', () => {
    assert.equal(sha256(''), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    assert.equal(sha256(Buffer.from('berth')), `sha256:${hex('sha256', 'berth')}`);
    assert.equal(sha256('berth'), sha256(new TextEncoder().encode('berth')));
  });

  it('newHasher hashes incrementally', () => {
    const h = newHasher();
    h.hash.update('ab');
    h.hash.update('c');
    assert.equal(h.digest(), `sha256:${hex('sha256', 'abc')}`);
    const h512 = newHasher('sha512');
    h512.hash.update('abc');
    assert.equal(h512.digest(), `sha512:${hex('sha512', 'abc')}`);
  });
});

describe('VerifyingStream', () => {
  const data = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31) % 251));
  const digest = `sha256:${hex('sha256', data)}` as Digest;
  const chunks = (buf: Buffer, size = 7919): Buffer[] => {
    const out: Buffer[] = [];
    for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
    return out;
  };

  /** Runs bytes through a VerifyingStream; returns what came out, or the error. */
  async function verify(input: Buffer, expected: { digest: Digest; size?: number }): Promise<{ out: Buffer; err?: unknown }> {
    const received: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        received.push(chunk);
        cb();
      },
    });
    try {
      await pipeline(Readable.from(chunks(input)), new VerifyingStream(expected, 'layer'), sink);
      return { out: Buffer.concat(received) };
    } catch (err) {
      return { out: Buffer.concat(received), err };
    }
  }

  it('passes the correct bytes through unchanged', async () => {
    const r = await verify(data, { digest, size: data.length });
    assert.equal(r.err, undefined);
    assert.ok(r.out.equals(data));
  });

  it('passes without a size when the digest matches', async () => {
    const r = await verify(data, { digest });
    assert.equal(r.err, undefined);
    assert.ok(r.out.equals(data));
  });

  it('verifies sha512 digests', async () => {
    const r = await verify(data, { digest: `sha512:${hex('sha512', data)}` as Digest, size: data.length });
    assert.equal(r.err, undefined);
  });

  it('one flipped byte fails with DIGEST_MISMATCH naming both digests', async () => {
    const flipped = Buffer.from(data);
    flipped[54_321] = flipped[54_321]! ^ 0x01;
    const found = `sha256:${hex('sha256', flipped)}`;
    const r = await verify(flipped, { digest, size: data.length });
    assert.ok(r.err instanceof BerthError, `expected BerthError, got ${String(r.err)}`);
    assert.equal(r.err.code, 'DIGEST_MISMATCH');
    assert.ok(r.err.message.includes(digest), r.err.message);
    assert.ok(r.err.message.includes(found), r.err.message);
    assert.ok(r.err.message.includes('layer'), r.err.message);
    assert.deepEqual(r.err.details, { expected: digest, found });
  });

  it('a short stream fails with TRUNCATED', async () => {
    const r = await verify(data.subarray(0, data.length - 1), { digest, size: data.length });
    assert.ok(r.err instanceof BerthError);
    assert.equal(r.err.code, 'TRUNCATED');
    assert.ok(r.err.message.includes(String(data.length)) && r.err.message.includes(String(data.length - 1)), r.err.message);
  });

  it('an empty stream fails with TRUNCATED when bytes were expected', async () => {
    const r = await verify(Buffer.alloc(0), { digest, size: data.length });
    assert.ok(r.err instanceof BerthError);
    assert.equal(r.err.code, 'TRUNCATED');
  });

  it('a long stream fails with SIZE_MISMATCH and is cut short', async () => {
    const long = Buffer.concat([data, Buffer.alloc(50_000, 1)]);
    const r = await verify(long, { digest, size: data.length });
    assert.ok(r.err instanceof BerthError);
    assert.equal(r.err.code, 'SIZE_MISMATCH');
    assert.ok(r.err.message.includes(digest), r.err.message);
    assert.ok(r.out.length <= data.length, `passed on ${r.out.length} bytes, more than the declared ${data.length}`);
  });

  it('the empty blob verifies', async () => {
    const r = await verify(Buffer.alloc(0), { digest: sha256(''), size: 0 });
    assert.equal(r.err, undefined);
    assert.equal(r.out.length, 0);
  });
});
