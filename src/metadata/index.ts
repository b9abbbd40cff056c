/**
 * metadata/ — what berth knows by name: image names pointing at digests,
 * labels on content recording which blob references which (for the garbage
 * collector), leases protecting resources in use, and the schema version of
 * the store. It knows nothing of registries, the manifests directory or the
 * reconciler; it stores what it is told, durably, and answers questions.
 */
export * from './store.js';
export { LmdbMetadataStore, type LmdbMetadataStoreOptions } from './lmdb.js';
export { recordEvents, type EventRecorder } from './recorder.js';
