/**
 * Big, deterministic benchmark layers, made by streaming and cached on disk.
 *
 * Layer i holds `mib` MiB of file content in 4 MiB files under `layer-i/`.
 * Even layers are random bytes (incompressible: gzip output ≈ input), odd
 * layers are text-like lines of words (compressible about 3×), so a benchmark
 * sees both network-bound and CPU/decompression-bound layers. Content comes
 * from AES-128-CTR keyed by the layer's seed: fast, seeded, the same bytes on
 * every machine.
 *
 * Each layer streams tar-stream pack → sha256 (diffID) → zlib gzip → sha256
 * (digest) → file; nothing larger than a 1 MiB chunk is held in memory. A
 * finished layer is renamed into the cache and described by a JSON sidecar
 * written last, so a killed run leaves at worst a `.partial` to redo.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack as tarPack, type Pack } from 'tar-stream';
import { MediaType } from '../../../src/oci/mediatype.js';

/** Bump when the content or layout changes, so old caches are not reused. */
export const LAYERS_VERSION = 'v1';
/** zlib level: 6 is the default of Go's compress/gzip, which docker, buildkit and containerd use. */
export const GZIP_LEVEL = 6;
export const DEFAULT_CACHE_DIR = '/var/tmp/berth-bench-layers';

const MiB = 1 << 20;
const FILE_MIB = 4;
const MTIME = new Date('2024-01-01T00:00:00Z');

/** random and text: benchLayers(); files: many small files (smallfiles.ts); rootfs: a distribution's root filesystem (debian.ts). */
export type LayerKind = 'random' | 'text' | 'files' | 'rootfs';

export interface BenchLayer {
  index: number;
  kind: LayerKind;
  /** The gzip blob in the cache. */
  path: string;
  mediaType: string;
  /** Of the gzip blob, as the manifest lists it. */
  digest: string;
  size: number;
  /** Of the uncompressed tar, as the config's rootfs lists it. */
  diffID: string;
  tarSize: number;
}

export interface LayerSetOptions {
  count: number;
  /** File content per layer, MiB (the tar is slightly larger: headers and padding). */
  mib: number;
  cacheDir?: string;
  /** Layers generated at once (zlib runs on the libuv pool, so 2 uses both cores). */
  parallel?: number;
  onGenerate?: (layer: BenchLayer, ms: number) => void;
}

export function layerKind(index: number): LayerKind {
  return index % 2 === 0 ? 'random' : 'text';
}

/** The layers 0..count-1, generated on first use, from the cache afterwards. */
export async function benchLayers(opts: LayerSetOptions): Promise<BenchLayer[]> {
  const dir = join(opts.cacheDir ?? DEFAULT_CACHE_DIR, `${LAYERS_VERSION}-${opts.mib}mib-gzip${GZIP_LEVEL}`);
  await mkdir(dir, { recursive: true });
  const out: BenchLayer[] = new Array(opts.count);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < opts.count; i = next++) out[i] = await cachedLayer(dir, i, opts);
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.parallel ?? 2) }, worker));
  return out;
}

function cachedLayer(dir: string, index: number, opts: LayerSetOptions): Promise<BenchLayer> {
  return cachedGzipLayer(join(dir, `layer-${index}.tar.gz`), (partial) => writeLayer(partial, index, opts.mib), opts.onGenerate);
}

/**
 * A gzip layer at `path`, described by its JSON sidecar; made by `make`
 * (which writes `path.partial`) when either is missing or the sizes disagree.
 */
export async function cachedGzipLayer(
  path: string,
  make: (partial: string) => Promise<Omit<BenchLayer, 'path'>>,
  onGenerate?: (layer: BenchLayer, ms: number) => void,
): Promise<BenchLayer> {
  const sidecar = `${path}.json`;
  const cached = await readFile(sidecar, 'utf8').then((s) => JSON.parse(s) as BenchLayer, () => undefined);
  // A size check catches a truncated or missing blob; a wrong digest would still be refused by the registry on push.
  if (cached && (await stat(path).catch(() => undefined))?.size === cached.size) return { ...cached, path };
  await mkdir(dirname(path), { recursive: true });
  const started = Date.now();
  const partial = `${path}.partial`;
  try {
    const layer = { ...(await make(partial)), path };
    await rename(partial, path);
    await writeFile(sidecar, JSON.stringify(layer, null, 2) + '\n');
    onGenerate?.(layer, Date.now() - started);
    return layer;
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}

/** Counts and hashes what flows through. */
class Tap extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

export interface GzipTarInfo {
  digest: string;
  size: number;
  diffID: string;
  tarSize: number;
}

/** Streams a tar into `file` as gzip (level GZIP_LEVEL), hashing both sides; resolves when the file is written. */
export async function writeGzipTar(tar: Readable | Pack, file: string): Promise<GzipTarInfo> {
  const tarTap = new Tap();
  const blobTap = new Tap();
  await pipeline(tar, tarTap, createGzip({ level: GZIP_LEVEL }), blobTap, createWriteStream(file));
  return { digest: `sha256:${blobTap.hash.digest('hex')}`, size: blobTap.bytes, diffID: `sha256:${tarTap.hash.digest('hex')}`, tarSize: tarTap.bytes };
}

async function writeLayer(file: string, index: number, mib: number): Promise<Omit<BenchLayer, 'path'>> {
  const kind = layerKind(index);
  const pack = tarPack();
  const written = writeGzipTar(pack, file);
  const stream = keystream(`berth-bench-layer-${index}`);
  const top = `layer-${index}`;
  await addEntry(pack, { name: `${top}/`, type: 'directory', mode: 0o755 });
  const fileMiB = Math.min(FILE_MIB, mib);
  for (let n = 0, left = mib; left > 0; n++, left -= fileMiB) {
    const thisMiB = Math.min(fileMiB, left);
    const name = `${top}/${kind}-${String(n).padStart(4, '0')}.${kind === 'random' ? 'bin' : 'txt'}`;
    await addEntry(pack, { name, type: 'file', mode: 0o644, size: thisMiB * MiB }, chunks(stream, kind, thisMiB));
  }
  pack.finalize();
  return { index, kind, mediaType: MediaType.ociLayerGzip, ...(await written) };
}

/** Adds one entry (mtime 2024-01-01, root-owned) and waits until tar-stream took it; `body` streams the content. */
export async function addEntry(
  pack: Pack,
  header: { name: string; type: 'file' | 'directory'; mode: number; size?: number },
  body?: AsyncIterable<Buffer>,
): Promise<void> {
  const full = { ...header, mtime: MTIME, uid: 0, gid: 0, uname: '', gname: '' };
  await new Promise<void>((resolve, reject) => {
    const entry = pack.entry(full, (err) => (err ? reject(err) : resolve()));
    if (!body) return;
    void (async () => {
      for await (const chunk of body) if (!entry.write(chunk)) await once(entry, 'drain');
      entry.end(undefined);
    })().catch(reject);
  });
}

/** A seeded pseudo-random byte source: AES-128-CTR over zeros, key and IV from sha256(seed). */
export function keystream(seed: string): (n: number) => Buffer {
  const k = createHash('sha256').update(seed).digest();
  const cipher = createCipheriv('aes-128-ctr', k.subarray(0, 16), k.subarray(16, 32));
  const zeros = Buffer.alloc(MiB);
  return (n) => cipher.update(n <= zeros.length ? zeros.subarray(0, n) : Buffer.alloc(n));
}

async function* chunks(random: (n: number) => Buffer, kind: LayerKind, mib: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < mib; i++) yield kind === 'random' ? random(MiB) : textChunk(random);
}

// 64 words, so one random byte's low 6 bits pick a word; log- and source-like text.
const WORDS = (
  'the request response GET POST /api/v1/items 200 404 500 INFO WARN DEBUG ERROR user session token config ' +
  'layer image container runtime snapshot mount digest sha256 manifest index registry pull push blob ' +
  'function return const let if else for while import export class interface type string number ' +
  'true false null undefined error message timeout retry backoff cache hit miss write read open close stream lease'
)
  .split(' ')
  .map((w) => Buffer.from(w));
if (WORDS.length !== 64) throw new Error(`layers.ts: WORDS has ${WORDS.length} words, expected 64`);

/** 1 MiB of words separated by spaces, with a newline after about one word in eight. */
export function textChunk(random: (n: number) => Buffer): Buffer {
  const out = Buffer.allocUnsafe(MiB);
  const r = random(MiB / 2);
  let pos = 0;
  for (let i = 0; pos < MiB; i = (i + 1) % r.length) {
    const b = r[i]!;
    pos += WORDS[b & 63]!.copy(out, pos);
    if (pos < MiB) out[pos++] = (b & 0xc0) === 0 && (r[(i + 7) % r.length]! & 1) === 0 ? 0x0a : 0x20;
  }
  return out;
}
