/**
 * manifests/ — what the user asks for: manifest files read with their
 * source positions, validated against the JSON Schemas in schemas/, checked
 * across files (unique names, dependencies, no cycles), normalised to desired
 * state with berth's defaults, and fingerprinted by the spec hash.
 *
 * Knows nothing of the store, the runtime, registries or the reconciler: it
 * reads files and returns data. Bad input never throws; it comes back as
 * ManifestErrors (file:line:col, JSON pointer, hint). A file with errors is
 * skipped whole, so a consumer must leave alone what such a file may define:
 * containers recorded from an errored file (or from below an errored
 * directory), and the objects errors name, are neither changed nor pruned
 * while the errors last.
 */
export { loadManifests, formatManifestError, isLeftover, MAX_MANIFEST_FILE_BYTES, type LoadOptions } from './load.js';
export type { LoadResult, ManifestError, ManifestErrorCode, ManifestObject } from './load.js';
export { DirectoryParseCache, type ParseCache } from './cache.js';
export * from './desired.js';
export * from './hash.js';
export { KINDS, SCHEMA_DIRECTORY, type Kind } from './schema.js';
