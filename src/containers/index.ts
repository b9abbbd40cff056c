/**
 * containers/ — the container lifecycle (create, start, stop, remove, the
 * status users see) and its supervision by restart policy. Builds on the
 * snapshotter (rootfs), mount/, runtime/ (spec, runc under conmon) and the
 * metadata store (records). Knows nothing of registries or manifests: an
 * image comes in through the ImageSource interface, already unpacked.
 */
export * from './service.js';
export * from './restart.js';
export * from './supervisor.js';
