/**
 * A fresh tmpfs per cold run, so no run sees another's files, page cache or
 * free-space state. Needs root (benchmarks run as root, like CI).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export interface Tmpfs {
  path: string;
  /** Unmounts it and every mount below it (lazily if still busy) and removes the mount point; idempotent. */
  unmount(): Promise<void>;
}

/** Mounts a tmpfs of `sizeBytes` (rounded up to MiB) on a new directory under `parent` (default os.tmpdir()). */
export async function mountTmpfs(sizeBytes: number, prefix = 'berth-bench-', parent = tmpdir()): Promise<Tmpfs> {
  const path = await mkdtemp(join(parent, prefix));
  const sizeMiB = Math.ceil(sizeBytes / (1 << 20));
  try {
    await execFileP('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m,mode=0700`, 'tmpfs', path]);
  } catch (err) {
    await rmdir(path).catch(() => {});
    throw new Error(`mount -t tmpfs (size ${sizeMiB} MiB) on ${path} failed: ${(err as Error).message.trim()}`);
  }
  let done: Promise<void> | undefined;
  return {
    path,
    unmount: () =>
      (done ??= (async () => {
        try {
          // -R: a container's rootfs overlay left mounted inside (after a failed run) goes first.
          await execFileP('umount', ['-R', path]);
        } catch {
          // A process we could not stop still has a file open: detach now, the kernel frees it when it exits.
          await execFileP('umount', ['-l', path]);
        }
        await rmdir(path);
      })()),
  };
}
