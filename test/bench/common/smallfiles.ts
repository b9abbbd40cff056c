/**
 * A benchmark layer of many small files (a node_modules- or source-tree-like
 * load, where per-file costs dominate): `count` files, 100 per directory
 * under `files/dNNNN/`, sizes 0..4 KiB skewed small (about 1.3 KiB on
 * average), text content (compresses about 3x), one file in ten executable.
 * Deterministic and cached like layers.ts.
 */
import { join } from 'node:path';
import { pack as tarPack, type Pack } from 'tar-stream';
import { MediaType } from '../../../src/oci/mediatype.js';
import { cachedGzipLayer, DEFAULT_CACHE_DIR, GZIP_LEVEL, keystream, textChunk, writeGzipTar, type BenchLayer } from './layers.js';

export const SMALLFILES_VERSION = 'v1';
const PER_DIR = 100;
const MAX_SIZE = 4096;
const MTIME = new Date('2024-01-01T00:00:00Z');

export interface SmallFilesOptions {
  count: number;
  cacheDir?: string;
  onGenerate?: (layer: BenchLayer, ms: number) => void;
}

function entry(pack: Pack, name: string, type: 'file' | 'directory', mode: number, content?: Buffer): Promise<void> {
  const header = { name, type, mode, mtime: MTIME, uid: 0, gid: 0, uname: '', gname: '' };
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
    if (content) pack.entry({ ...header, size: content.length }, content, cb);
    else pack.entry(header, cb);
  });
}

async function writeSmallFiles(file: string, count: number): Promise<Omit<BenchLayer, 'path'>> {
  const random = keystream(`berth-bench-smallfiles-${count}`);
  const pool = textChunk(random); // 1 MiB of text to slice file contents from
  const pack = tarPack();
  const written = writeGzipTar(pack, file);
  await entry(pack, 'files/', 'directory', 0o755);
  const r = random(count * 8);
  for (let i = 0; i < count; i++) {
    if (i % PER_DIR === 0) await entry(pack, `files/d${String(i / PER_DIR).padStart(4, '0')}/`, 'directory', 0o755);
    const u = r.readUInt16LE(i * 8) / 65536;
    const size = Math.floor(u * u * MAX_SIZE);
    const offset = r.readUInt32LE(i * 8 + 2) % (pool.length - MAX_SIZE);
    const name = `files/d${String(Math.floor(i / PER_DIR)).padStart(4, '0')}/f${String(i % PER_DIR).padStart(3, '0')}.txt`;
    await entry(pack, name, 'file', r[i * 8 + 6]! % 10 === 0 ? 0o755 : 0o644, pool.subarray(offset, offset + size));
  }
  pack.finalize();
  return { index: 0, kind: 'files', mediaType: MediaType.ociLayerGzip, ...(await written) };
}

/** One layer of `count` small files, generated on first use, from the cache afterwards. */
export function smallFilesLayer(opts: SmallFilesOptions): Promise<BenchLayer> {
  const dir = join(opts.cacheDir ?? DEFAULT_CACHE_DIR, `smallfiles-${SMALLFILES_VERSION}-${opts.count}-gzip${GZIP_LEVEL}`);
  return cachedGzipLayer(join(dir, 'layer-0.tar.gz'), (partial) => writeSmallFiles(partial, opts.count), opts.onGenerate);
}
