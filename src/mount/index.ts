/**
 * mount/ — the one place that mounts and unmounts: Mounts as snapshotters
 * return them (bind, overlay, tmpfs, ...) onto a target, undone again, and
 * the check whether overlay snapshots work on a filesystem. It knows nothing
 * of snapshots, images or containers: it performs what it is given.
 *
 * Overlays with more lowerdirs than fit in one page of options are mounted
 * with lowerdirs relative to their common parent, from that directory
 * (containerd's scheme; see mount.ts). Mounts stay absolute everywhere else.
 */
export { isMountPoint, mountAll, mountPoints, unmount, withMounts } from './mount.js';
export { overlaySupported } from './overlay.js';
