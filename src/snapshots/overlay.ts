import { access, chown, chmod, mkdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { BerthError } from '../errors.js';
import { nullLogger, type Logger } from '../log.js';
import type { Mount } from '../oci/mount.js';
import { fsError, LocalSnapshotter } from './local.js';
import type { SnapshotRecords } from './records.js';

export interface OverlaySnapshotterOptions {
  /** Holds metadata/ (the records) and snapshots/<id>/{fs,work}. Its path must not contain ',' or ':'. */
  root: string;
  logger?: Logger;
}

/**
 * Snapshots as overlayfs layers, after containerd's overlay snapshotter.
 * Each snapshot is <root>/snapshots/<id>/fs (its own files: the upper
 * directory while active, a lower directory once committed) and work/ (the
 * overlay work directory). The kernel writes whiteouts (0:0 character
 * devices) and opaque markers (trusted.overlay.opaque) into fs/ as files are
 * deleted and directories replaced through the mount.
 *
 * Mounts, with lowerdirs nearest parent first:
 * - active, no parent:  bind rw of its fs
 * - active on parents:  overlay lowerdir=<parents' fs>,upperdir=<fs>,workdir=<work>
 * - view of nothing:    bind ro of its (empty) fs
 * - view of one layer:  bind ro of that layer's fs
 * - view of several:    overlay with lowerdirs only (read-only by construction)
 * Paths are absolute; an overlay whose options exceed a page is mounted by
 * mount/ with relative lowerdirs from their common parent, <root>/snapshots
 * (see mount/mount.ts).
 */
export class OverlaySnapshotter extends LocalSnapshotter {
  private constructor(
    root: string,
    records: SnapshotRecords,
    logger: Logger,
    /** index=off where the kernel has the index feature: the same lower layer in several stacks must not trip its checks (containerd does the same). */
    private readonly extraOptions: string[],
  ) {
    super(root, records, logger);
  }

  /** Opens (creating when absent) the snapshotter at opts.root. Check overlaySupported (mount/) before choosing it. */
  static async open(opts: OverlaySnapshotterOptions): Promise<OverlaySnapshotter> {
    if (/[,:]/.test(resolve(opts.root))) {
      throw new BerthError('INVALID_ARGUMENT', `overlay snapshotter root ${JSON.stringify(resolve(opts.root))} contains ',' or ':', which overlay mount options cannot carry`, {
        hint: 'choose a --root without commas or colons',
      });
    }
    const { root, records } = await LocalSnapshotter.openRoot(opts.root, 'overlay');
    const hasIndex = await access('/sys/module/overlay/parameters/index').then(
      () => true,
      () => false,
    );
    return new OverlaySnapshotter(root, records, opts.logger ?? nullLogger, hasIndex ? ['index=off'] : []);
  }

  protected async populate(dir: string, kind: 'active' | 'view', parents: string[]): Promise<void> {
    const fs = join(dir, 'fs');
    try {
      // The merged root takes its owner and mode from the upper directory: keep those of the layer below.
      const below = kind === 'active' ? parents[0] : undefined;
      const [st] = await Promise.all([
        below === undefined ? undefined : stat(this.fsOf(below)),
        mkdir(fs, { mode: 0o755 }),
        kind === 'active' ? mkdir(join(dir, 'work'), { mode: 0o700 }) : undefined,
      ]);
      if (st) {
        // In this order: a chown may clear set-id bits the mode is to have.
        await chown(fs, st.uid, st.gid);
        await chmod(fs, st.mode & 0o7777);
      }
    } catch (err) {
      throw fsError(err, `create snapshot directory ${dir}`, dir);
    }
  }

  protected mountsOf(kind: 'active' | 'view', id: string, parents: string[]): Mount[] {
    const lowerdir = `lowerdir=${parents.map((p) => this.fsOf(p)).join(':')}`;
    if (kind === 'active') {
      if (parents.length === 0) return [{ type: 'bind', source: this.fsOf(id), options: ['rw', 'rbind'] }];
      return [{ type: 'overlay', source: 'overlay', options: [...this.extraOptions, `workdir=${join(this.dirOf(id), 'work')}`, `upperdir=${this.fsOf(id)}`, lowerdir] }];
    }
    if (parents.length === 0) return [{ type: 'bind', source: this.fsOf(id), options: ['ro', 'rbind'] }];
    if (parents.length === 1) return [{ type: 'bind', source: this.fsOf(parents[0]!), options: ['ro', 'rbind'] }];
    return [{ type: 'overlay', source: 'overlay', options: [...this.extraOptions, lowerdir] }];
  }
}
