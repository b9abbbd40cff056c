import { open } from 'node:fs/promises';
import { BerthError, isBerthError } from '../errors.js';
import { runCommand, syncfs } from '../linux/index.js';

/**
 * The disk-facing primitives of the snapshotters, in one place so the
 * mechanism can change without touching them.
 *
 * syncFilesystem flushes every dirty file of the filesystem holding `path`:
 * one syncfs(2) is far cheaper than an fsync per file of a layer, and
 * overlay writes land on the filesystem of the upper directory, which holds
 * the snapshot.
 */
export async function syncFilesystem(path: string): Promise<void> {
  try {
    await syncfs(path);
  } catch (err) {
    if (!isBerthError(err)) throw err;
    const missing = err.code === 'NOT_FOUND'; // a recorded snapshot without its directory
    throw new BerthError(missing ? 'CORRUPT' : 'UNAVAILABLE', `syncing the filesystem of ${path} failed: ${err.message}`, {
      cause: err,
      hint: missing ? 'remove the snapshot and unpack its image again' : 'check the disk (an I/O error or a full disk), then retry',
      details: { path, ...err.details },
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
  const res = await runCommand('rm', ['-rf', '--one-file-system', '--', path]);
  if (res.code !== 0) {
    throw new BerthError('UNAVAILABLE', `removing ${path} failed: ${(res.stderr || (res.error?.message ?? '')).split('\n')[0]}`, { cause: res.error, details: { path } });
  }
}
