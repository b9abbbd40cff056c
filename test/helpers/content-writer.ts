/**
 * A separate process that writes into a LocalContentStore ingest, for
 * cross-process lock and crash tests. Usage:
 *   node content-writer.js ROOT REF DIGEST SIZE hold N    write N pattern bytes, print "ready", then hold the ref until killed
 *   node content-writer.js ROOT REF DIGEST SIZE trickle   write the pattern slowly (64 KiB per ms), never commit
 * The bytes are patternBytes(), so the parent can produce the rest of the blob.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { LocalContentStore } from '../../src/content/local.js';
import type { Digest } from '../../src/oci/digest.js';

export const contentWriterScript = fileURLToPath(import.meta.url);

const PERIOD = 1_000_003; // not a power of two, so a resume at a wrong aligned offset changes the bytes
let block: Buffer | undefined;

/** Deterministic bytes [start, start+length) of an endless pattern. */
export function patternBytes(start: number, length: number): Buffer {
  if (!block) {
    block = Buffer.alloc(PERIOD);
    let x = 0x2545f491;
    for (let i = 0; i < PERIOD; i++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      block[i] = x & 0xff;
    }
  }
  const out = Buffer.alloc(length);
  for (let done = 0; done < length; ) {
    const at = (start + done) % PERIOD;
    done += block.copy(out, done, at, Math.min(PERIOD, at + length - done));
  }
  return out;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function main(argv: string[]): Promise<void> {
  const [root, ref, digest, size, mode, n] = argv;
  if (!root || !ref || !digest || !size || !mode) throw new Error('usage: ROOT REF DIGEST SIZE hold N | trickle');
  const store = new LocalContentStore({ root, pid: process.pid, isAlive });
  const w = await store.writer(ref, { digest: digest as Digest, size: Number(size) }, { timeoutMs: 30_000 });
  if (mode === 'hold') {
    const s = w.stream();
    s.end(patternBytes(w.offset, Number(n) - w.offset));
    await new Promise<void>((resolve, reject) => s.on('finish', resolve).on('error', reject));
    process.stdout.write(`ready ${w.offset}\n`);
    setInterval(() => {}, 1 << 30);
    return;
  }
  let offset = w.offset;
  const total = Number(size);
  async function* trickle(): AsyncGenerator<Buffer> {
    while (offset < total) {
      const chunk = patternBytes(offset, Math.min(64 * 1024, total - offset));
      offset += chunk.length;
      yield chunk;
      await sleep(1);
    }
  }
  process.stdout.write('writing\n');
  await pipeline(Readable.from(trickle()), w.stream());
  process.stdout.write('finished\n');
  setInterval(() => {}, 1 << 30);
}

if (process.argv[1] === contentWriterScript) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exit(1);
  });
}
