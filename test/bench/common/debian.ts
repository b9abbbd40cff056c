/**
 * A Debian root filesystem as one benchmark layer, the way Debian's official
 * images are made: `debootstrap --variant=minbase SUITE` into a directory,
 * then GNU tar (its default gnu format, numeric owners, sorted names, as
 * debuerreotype does) streamed through layers.ts's gzip writer. Cached like
 * the other layers; debootstrap runs only when the cache is empty.
 *
 * debootstrap needs root and a reachable Debian mirror (the one apt is set
 * up with works). It is optional: debianRootfsLayer() says why it cannot
 * make the layer instead of throwing, so a benchmark can skip this set.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { MediaType } from '../../../src/oci/mediatype.js';
import { cachedGzipLayer, DEFAULT_CACHE_DIR, GZIP_LEVEL, writeGzipTar, type BenchLayer } from './layers.js';

export const DEBOOTSTRAP = '/usr/sbin/debootstrap';
export const DEBIAN_ROOTFS_VERSION = 'v1';

export interface DebianRootfsOptions {
  suite?: string;
  /** A mirror URL; default: debootstrap's own (deb.debian.org, as apt here is set up). */
  mirror?: string;
  cacheDir?: string;
  onGenerate?: (layer: BenchLayer, ms: number) => void;
  /** debootstrap's progress, line by line. */
  onProgress?: (line: string) => void;
}

export type DebianRootfs = { layer: BenchLayer } | { unavailable: string };

async function debootstrap(suite: string, target: string, opts: DebianRootfsOptions): Promise<void> {
  const args = ['--variant=minbase', suite, target, ...(opts.mirror ? [opts.mirror] : [])];
  const child = spawn(DEBOOTSTRAP, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  const onData = (d: Buffer): void => {
    const text = d.toString();
    tail = (tail + text).slice(-4096);
    for (const line of text.split('\n')) if (line.trim()) opts.onProgress?.(line.trim());
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', resolve);
  });
  if (code !== 0) throw new Error(`debootstrap ${args.join(' ')} exited with ${code}:\n${tail.trimEnd().split('\n').slice(-10).join('\n')}`);
}

async function writeRootfsLayer(partial: string, suite: string, scratchParent: string, opts: DebianRootfsOptions): Promise<Omit<BenchLayer, 'path'>> {
  // On the cache's filesystem (a real disk), not a tmpfs: debootstrap makes device nodes and needs a few hundred MB.
  const scratch = await mkdtemp(join(scratchParent, 'debootstrap-'));
  try {
    const rootfs = join(scratch, 'rootfs');
    await debootstrap(suite, rootfs, opts);
    const tar = spawn('tar', ['--numeric-owner', '--sort=name', '-C', rootfs, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    tar.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4096)));
    const exited = new Promise<number | null>((resolve, reject) => {
      tar.once('error', reject);
      tar.once('close', resolve);
    });
    const info = await writeGzipTar(tar.stdout, partial);
    const code = await exited;
    if (code !== 0) throw new Error(`tar of ${rootfs} exited with ${code}: ${stderr.trim()}`);
    return { index: 0, kind: 'rootfs', mediaType: MediaType.ociLayerGzip, ...info };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The rootfs layer of Debian `suite` (default bookworm) minbase, or why it cannot be made here. */
export async function debianRootfsLayer(opts: DebianRootfsOptions = {}): Promise<DebianRootfs> {
  const suite = opts.suite ?? 'bookworm';
  const dir = join(opts.cacheDir ?? DEFAULT_CACHE_DIR, `debian-${suite}-minbase-${DEBIAN_ROOTFS_VERSION}-gzip${GZIP_LEVEL}`);
  const path = join(dir, 'layer-0.tar.gz');
  const cachedAlready = existsSync(`${path}.json`);
  if (!cachedAlready) {
    if (!existsSync(DEBOOTSTRAP)) return { unavailable: `${DEBOOTSTRAP} is missing (apt-get install -y debootstrap)` };
    if (process.getuid?.() !== 0) return { unavailable: 'debootstrap needs root' };
  }
  await mkdir(dir, { recursive: true });
  try {
    return { layer: await cachedGzipLayer(path, (partial) => writeRootfsLayer(partial, suite, dir, opts), opts.onGenerate) };
  } catch (err) {
    return { unavailable: (err as Error).message };
  }
}
