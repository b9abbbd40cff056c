/**
 * runtime/ — turning bundles into running containers: OCI runtime spec
 * generation (pure) and, later, runc under conmon. Knows nothing of images,
 * registries, snapshots or manifests: it gets an image config, the
 * container's config and file contents, and returns a spec.
 */
export * from './spec.js';
export * from './signals.js';
export * from './quantity.js';
