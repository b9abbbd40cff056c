/**
 * oci/ — the vocabulary of berth: digests, descriptors, media types,
 * references, platforms, chain IDs. Pure types and functions, no I/O; every
 * other module may import it, it imports only errors.ts.
 */
export * from './digest.js';
export * from './mediatype.js';
export * from './descriptor.js';
export * from './platform.js';
export * from './reference.js';
export * from './chainid.js';
export * from './mount.js';
export * from './quantity.js';
