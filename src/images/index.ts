/**
 * images/ — operations on images: pull (resolve, fetch, verify, store, name),
 * and the local inventory (list, inspect, remove). Built on the content store,
 * the metadata store and a registry Resolver, all injected; it constructs no
 * concrete implementation and knows nothing of containers or the reconciler.
 */
export * from './pull.js';
export * from './inventory.js';
export { Semaphore, SingleFlight } from './limit.js';
export * from './unpack.js';
export * from './rootfs.js';
export * from './import.js';
export * from './export.js';
