/**
 * snapshots/ — the snapshot tree (containerd's snapshots): committed layers
 * named by chain ID, active snapshots being filled, read-only views, each a
 * directory under the snapshotter's root with its record in the
 * snapshotter's own LMDB environment. Two implementations: overlayfs, and
 * plain copies where overlay is missing (mount/'s overlaySupported decides).
 * It returns mounts and never mounts; it knows nothing of images, layers'
 * tar format, metadata/ or containers.
 */
export type { SnapshotInfo, SnapshotKind, Snapshotter, Usage } from './snapshotter.js';
export { OverlaySnapshotter, type OverlaySnapshotterOptions } from './overlay.js';
export { NativeSnapshotter, type NativeSnapshotterOptions } from './native.js';
