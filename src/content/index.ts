/**
 * content/ — blobs addressed by digest, and the ingests that write them
 * (resumable after a crash, verified, fsynced, published by atomic rename).
 * It knows nothing of registries, images, metadata or manifests: a blob is
 * bytes and a digest, and it imports only oci/digest, errors and log.
 */
export type { BlobInfo, ContentStore, ContentWriter, Expected, IngestStatus } from './store.js';
export { LocalContentStore, type LocalContentStoreOptions } from './local.js';
