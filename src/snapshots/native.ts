import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../errors.js';
import { runCommand } from '../linux/index.js';
import { nullLogger, type Logger } from '../log.js';
import type { Mount } from '../oci/mount.js';
import { fsError, LocalSnapshotter } from './local.js';
import type { SnapshotRecords } from './records.js';

export interface NativeSnapshotterOptions {
  /** Holds metadata/ (the records) and snapshots/<id>/fs. */
  root: string;
  logger?: Logger;
}

/**
 * Snapshots as plain directory copies, for filesystems without overlay
 * (containerd's native snapshotter). Each snapshot is <root>/snapshots/<id>/fs
 * holding its whole tree: preparing on a parent copies the parent's tree
 * with `cp -a --reflink=auto` (hardlinks, xattrs, devices, ownership, modes
 * and times kept; shared extents where the filesystem can reflink, e.g.
 * btrfs, XFS).
 *
 * Mounts are binds: rw of its own fs for an active snapshot; ro of the
 * parent's fs for a view (a committed snapshot never changes, so a view
 * needs no copy), or of its own empty fs for a view of nothing.
 */
export class NativeSnapshotter extends LocalSnapshotter {
  private constructor(root: string, records: SnapshotRecords, logger: Logger) {
    super(root, records, logger);
  }

  static async open(opts: NativeSnapshotterOptions): Promise<NativeSnapshotter> {
    const { root, records } = await LocalSnapshotter.openRoot(opts.root, 'native');
    return new NativeSnapshotter(root, records, opts.logger ?? nullLogger);
  }

  protected async populate(dir: string, kind: 'active' | 'view', parents: string[]): Promise<void> {
    const fs = join(dir, 'fs');
    const below = parents[0];
    if (kind === 'view' || below === undefined) {
      await mkdir(fs, { mode: 0o755 }).catch((err: unknown) => {
        throw fsError(err, `create snapshot directory ${fs}`, fs);
      });
      return;
    }
    const res = await runCommand('cp', ['-a', '--reflink=auto', '--', this.fsOf(below), fs]);
    if (res.code !== 0) {
      const said = (res.stderr || (res.error?.message ?? '')).split('\n')[0];
      throw new BerthError('UNAVAILABLE', `copying snapshot ${this.fsOf(below)} to ${fs} failed: ${said}`, {
        cause: res.error,
        hint: `check free space and the disk holding ${this.root}, then retry`,
        details: { source: this.fsOf(below), target: fs, stderr: res.stderr },
      });
    }
  }

  protected mountsOf(kind: 'active' | 'view', id: string, parents: string[]): Mount[] {
    if (kind === 'active') return [{ type: 'bind', source: this.fsOf(id), options: ['rw', 'rbind'] }];
    return [{ type: 'bind', source: this.fsOf(parents[0] ?? id), options: ['ro', 'rbind'] }];
  }
}
