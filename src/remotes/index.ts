/**
 * remotes/ — talking to OCI registries: resolve a reference to a descriptor,
 * fetch manifests and blobs, authenticate (Basic, Bearer tokens), pick
 * endpoints (mirrors, then the registry), TLS settings, retries with backoff.
 * It must not know the content store, metadata, images or the manifests
 * directory: it hands bytes and streams to whoever asked.
 */
export type { BlobBody, Fetcher, Resolved, Resolver } from './resolver.js';
export { RegistryResolver, type RegistryResolverOptions } from './registry.js';
export {
  DEFAULT_REGISTRIES_FILE,
  defaultRegistryHosts,
  isLoopbackHost,
  loadRegistryHosts,
  parseRegistryHosts,
  type PathRewrite,
  type RegistryEndpoint,
  type RegistryHosts,
} from './hosts.js';
export {
  DockerConfigCredentials,
  noCredentials,
  normalizeCredentialHost,
  parseDockerConfig,
  StaticCredentials,
  type CredentialStore,
  type Credentials,
} from './credentials.js';
export { parseWWWAuthenticate, type Challenge } from './auth.js';
export { backoffDelay, parseRetryAfter } from './retry.js';
