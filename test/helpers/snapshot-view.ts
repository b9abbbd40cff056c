/**
 * A read-only view of one of berth's committed snapshots, mounted from the
 * mounts berth's snapshotter returns (with mount(8), not berth's mount/
 * code), for reading the tree a container would get.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { Digest } from '../../src/oci/digest.js';
import type { Mount } from '../../src/oci/mount.js';
import { openTestSystem } from './berth.js';

const execFileP = promisify(execFile);

/** Mounts a view's rootfs: one overlay or bind mount. */
export async function mountRootfs(mounts: Mount[], target: string): Promise<void> {
  if (mounts.length !== 1) throw new Error(`expected one rootfs mount, got ${JSON.stringify(mounts)}`);
  const m = mounts[0]!;
  const args = m.type === 'bind' ? ['-o', m.options.join(','), m.source, target] : ['-t', m.type, '-o', m.options.join(','), m.source, target];
  await execFileP('mount', args);
}

export async function unmount(target: string): Promise<void> {
  try {
    await execFileP('umount', [target]);
  } catch {
    await execFileP('umount', ['-l', target]);
  }
}

/**
 * Runs `fn` with a view of snapshot `name` (e.g. an image's top chain ID)
 * mounted on `target`, in the berth root that test/helpers/berth.ts lays
 * out under `root`; unmounts and removes the view afterwards.
 */
export async function withSnapshotView<T>(root: string, name: Digest, target: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const { sys } = await openTestSystem(root);
  try {
    const { snapshotter } = await sys.snapshotter();
    const key = `test-view-${process.pid}-${Date.now()}`;
    const mounts = await snapshotter.view(key, name);
    try {
      await mkdir(target, { recursive: true });
      await mountRootfs(mounts, target);
      try {
        return await fn(target);
      } finally {
        await unmount(target);
      }
    } finally {
      await snapshotter.remove(key);
    }
  } finally {
    await sys.close();
  }
}
