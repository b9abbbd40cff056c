import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { BerthError } from '../errors.js';

/**
 * Content digests ("sha256:<64 hex>"). Every digest that comes from outside
 * (a registry, a manifest, a CLI argument) passes parseDigest before anything
 * builds a path or a URL from it, so a digest can never smuggle "../".
 */

export type Digest = string & { readonly __digest: unique symbol };

const ALGORITHMS: Record<string, number> = { sha256: 64, sha512: 128 };

export function isDigest(s: unknown): s is Digest {
  if (typeof s !== 'string') return false;
  const i = s.indexOf(':');
  if (i <= 0) return false;
  const len = ALGORITHMS[s.slice(0, i)];
  const hex = s.slice(i + 1);
  return len !== undefined && hex.length === len && /^[a-f0-9]+$/.test(hex);
}

export function parseDigest(s: string, what = 'digest'): Digest {
  if (isDigest(s)) return s;
  const alg = s.split(':')[0];
  if (s.includes(':') && alg && !(alg in ALGORITHMS)) {
    throw new BerthError('UNSUPPORTED', `${what} ${JSON.stringify(s)} uses unsupported algorithm "${alg}"`, {
      hint: 'berth supports sha256 and sha512 digests',
    });
  }
  throw new BerthError('INVALID_ARGUMENT', `${what} ${JSON.stringify(s)} is not a valid digest`, {
    hint: 'a digest looks like sha256: followed by 64 lowercase hex characters',
  });
}

export function digestAlgorithm(d: Digest): 'sha256' | 'sha512' {
  return d.slice(0, d.indexOf(':')) as 'sha256' | 'sha512';
}

export function digestHex(d: Digest): string {
  return d.slice(d.indexOf(':') + 1);
}

export function sha256(data: Uint8Array | string): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
}

export function newHasher(alg: 'sha256' | 'sha512' = 'sha256'): { hash: Hash; digest(): Digest } {
  const hash = createHash(alg);
  return { hash, digest: () => `${alg}:${hash.digest('hex')}` as Digest };
}

/**
 * A pass-through stream that hashes and counts what flows through it and, at
 * the end, fails with DIGEST_MISMATCH or SIZE_MISMATCH/TRUNCATED instead of
 * ending cleanly when the bytes are not what `expected` says. It also fails as
 * soon as more than `size` bytes arrive, so an oversized body is cut short.
 */
export class VerifyingStream extends Transform {
  private readonly hash: Hash;
  private count = 0;

  constructor(
    private readonly expected: { digest: Digest; size?: number | undefined },
    private readonly what = 'content',
  ) {
    super();
    this.hash = createHash(digestAlgorithm(expected.digest));
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.count += chunk.length;
    const size = this.expected.size;
    if (size !== undefined && this.count > size) {
      cb(new BerthError('SIZE_MISMATCH', `${this.what} ${this.expected.digest}: expected ${size} bytes, received more (${this.count} so far)`));
      return;
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    const size = this.expected.size;
    if (size !== undefined && this.count !== size) {
      cb(new BerthError('TRUNCATED', `${this.what} ${this.expected.digest}: expected ${size} bytes, stream ended after ${this.count}`));
      return;
    }
    const found = `${digestAlgorithm(this.expected.digest)}:${this.hash.digest('hex')}`;
    if (found !== this.expected.digest) {
      cb(new BerthError('DIGEST_MISMATCH', `${this.what}: expected digest ${this.expected.digest}, found ${found}`, {
        details: { expected: this.expected.digest, found },
      }));
      return;
    }
    cb();
  }
}
