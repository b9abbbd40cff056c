import type { Mount } from '../oci/mount.js';

/**
 * The snapshotter interface, after containerd's snapshots.Snapshotter.
 * Snapshots form a tree: a committed snapshot (named, immutable; for image
 * layers the name is the layer's chain ID) can be the parent of active
 * snapshots (keyed, writable) and views (keyed, read-only). Committing an
 * active snapshot turns it into a committed one under a name.
 *
 * Snapshotters return mounts and never mount anything themselves; mount/
 * performs mounts. A snapshot that was being prepared or filled when the
 * process died stays "active" and is never mistaken for a committed one.
 *
 * Errors: NOT_FOUND (no such key), ALREADY_EXISTS (key or name taken),
 * INVALID_ARGUMENT (committing a view, a parent that is not committed),
 * FAILED_PRECONDITION (removing a snapshot that has children; the message
 * names them).
 */

export type SnapshotKind = 'active' | 'view' | 'committed';

export interface SnapshotInfo {
  /** The key (active, view) or the name (committed). */
  key: string;
  kind: SnapshotKind;
  parent?: string;
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

export interface Usage {
  /** Bytes used by this snapshot's own layer (not its parents). */
  size: number;
  inodes: number;
}

export interface Snapshotter {
  /** NOT_FOUND when absent. */
  stat(key: string): Promise<SnapshotInfo>;
  /** Creates an active (writable) snapshot on top of `parent` (a committed name) and returns its mounts. */
  prepare(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]>;
  /** Creates a read-only view of `parent` and returns its mounts. */
  view(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]>;
  /** The mounts of an active snapshot or view. */
  mounts(key: string): Promise<Mount[]>;
  /**
   * Turns active snapshot `key` into committed snapshot `name`. The
   * snapshot's files are synced to disk before the commit is recorded, so a
   * committed snapshot survives a power cut whole.
   */
  commit(name: string, key: string, opts?: { labels?: Record<string, string> }): Promise<void>;
  /** Removes a snapshot without children; NOT_FOUND when absent. */
  remove(key: string): Promise<void>;
  list(): Promise<SnapshotInfo[]>;
  usage(key: string): Promise<Usage>;
  /** Removes directories that no snapshot record owns (left by a crash). Returns how many. */
  cleanup(): Promise<number>;
  close(): Promise<void>;
}
