/**
 * runtime/ — turning bundles into running containers: OCI runtime spec
 * generation (pure), runc under one conmon per container, exit records,
 * CRI-format logs and cgroup reads. Knows nothing of images, registries,
 * snapshots or manifests: it gets an image config, a container's settings
 * and file contents, and returns a spec; it gets a bundle, and runs it.
 */
export * from './spec.js';
export * from './signals.js';
export { parseBytes } from '../oci/quantity.js';
export * from './runtime.js';
export { RuncRuntime, type RuncRuntimeOptions } from './runc.js';
export { readLog, CriLogParser, type LogLine, type ReadLogOptions } from './logs.js';
export { oomKills } from './cgroups.js';
