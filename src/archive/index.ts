/**
 * archive/ — layer tar streams and directories: applying a layer to a
 * directory under the OCI changeset rules (whiteouts, opaque directories,
 * hardlinks, devices, ownership, xattrs), safely (every path resolved inside
 * the root), streaming (no layer or file held in memory). It knows nothing
 * of snapshots, mounts, images or registries: a layer is a compressed tar
 * stream and a root is a directory.
 */
export { applyLayer, type ApplyOptions, type ApplyResult } from './apply.js';
export { readFileInRoot } from './read.js';
export { findExecutableInRoot, statInRoot } from './lookup.js';
export { applyLayerOnThread } from './thread.js';
