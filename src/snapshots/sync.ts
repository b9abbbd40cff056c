import { open } from 'node:fs/promises';
import { execa } from 'execa';
import { BerthError } from '../errors.js';

/**
 * The disk-facing primitives of the snapshotters, in one place so the
 * mechanism can change without touching them.
 *
 * syncFilesystem flushes every dirty file of the filesystem holding `path`:
 * one syncfs(2) is far cheaper than an fsync per file of a layer, and
 * overlay writes land on the filesystem of the upper directory, which holds
 * the snapshot. Node has no syncfs; `sync -f PATH` (coreutils) calls it.
 * (Swap for linux/'s syncfs once that lands.)
 */
export async function syncFilesystem(path: string): Promise<void> {
  const res = await execa('sync', ['-f', path], { reject: false, stdin: 'ignore' });
  if (res.failed) {
    throw new BerthError('UNAVAILABLE', `syncing the filesystem of ${path} failed: ${String(res.stderr || res.message).trim()}`, {
      cause: res,
      hint: 'check the disk (an I/O error or a full disk), then retry',
      details: { path },
    });
  }
}

/** fsync of a directory: makes the entries created, renamed or removed in it durable. */
export async function syncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Deletes the tree at `path` (absent is fine). `rm -rf` is several times
 * faster than fs.rm on large trees, and --one-file-system keeps it out of
 * anything mounted inside.
 */
export async function removeTree(path: string): Promise<void> {
  const res = await execa('rm', ['-rf', '--one-file-system', '--', path], { reject: false, stdin: 'ignore' });
  if (res.failed) {
    throw new BerthError('UNAVAILABLE', `removing ${path} failed: ${String(res.stderr || res.message).split('\n')[0]}`, { cause: res, details: { path } });
  }
}
