import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Usage } from './snapshotter.js';

/**
 * Disk usage of the tree at `root`, like `du` (and containerd's
 * fs.DiskUsage): allocated bytes (st_blocks × 512) and inodes, each inode
 * counted once however many hardlinks it has, the root directory included.
 * Does not leave root's filesystem.
 */
export async function diskUsage(root: string): Promise<Usage> {
  const top = await lstat(root, { bigint: true });
  const linked = new Set<string>();
  let size = Number(top.blocks) * 512;
  let inodes = 1;
  const dirs = [root];
  for (let dir = dirs.pop(); dir !== undefined; dir = dirs.pop()) {
    const names = await readdir(dir);
    const stats = await Promise.all(names.map((n) => lstat(join(dir!, n), { bigint: true })));
    for (const [i, st] of stats.entries()) {
      if (st.dev !== top.dev) continue;
      if (st.nlink > 1n && !st.isDirectory()) {
        const id = String(st.ino);
        if (linked.has(id)) continue;
        linked.add(id);
      }
      size += Number(st.blocks) * 512;
      inodes++;
      if (st.isDirectory()) dirs.push(join(dir, names[i]!));
    }
  }
  return { size, inodes };
}
