import { BerthError } from '../errors.js';
import { isDigest, type Digest } from './digest.js';
import { isIndex, isManifest, isSchema1, MediaType } from './mediatype.js';
import type { Platform } from './platform.js';

/**
 * Descriptors, manifests, indexes and image configs, and the parsers that turn
 * untrusted JSON bytes into them. Parsers check the shape berth relies on and
 * refuse what it cannot handle (schema1) with an error naming the problem.
 */

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  artifactType?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
  created?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    StopSignal?: string;
    ExposedPorts?: Record<string, object>;
    Volumes?: Record<string, object>;
  };
  rootfs: { type: 'layers'; diff_ids: Digest[] };
  history?: Array<Record<string, unknown>>;
}

/** Largest manifest or index berth accepts; protects memory against a hostile registry. */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Largest image config berth accepts. */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

function invalid(what: string, problem: string): BerthError {
  return new BerthError('INVALID_MANIFEST', `${what}: ${problem}`);
}

function parseJSON(bytes: Uint8Array, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw invalid(what, `not valid JSON (${(err as Error).message})`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw invalid(what, 'not a JSON object');
  return v as Record<string, unknown>;
}

export function parseDescriptor(v: unknown, what: string): Descriptor {
  if (!v || typeof v !== 'object') throw invalid(what, 'descriptor is not an object');
  const d = v as Record<string, unknown>;
  if (typeof d.mediaType !== 'string' || d.mediaType === '') throw invalid(what, 'descriptor has no mediaType');
  if (!isDigest(d.digest)) throw invalid(what, `descriptor digest ${JSON.stringify(d.digest)} is not a valid digest`);
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) throw invalid(what, `descriptor ${d.digest} has invalid size ${JSON.stringify(d.size)}`);
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (Array.isArray(d.urls)) out.urls = d.urls.filter((u): u is string => typeof u === 'string');
  if (d.annotations && typeof d.annotations === 'object') out.annotations = d.annotations as Record<string, string>;
  if (d.platform && typeof d.platform === 'object') {
    const p = d.platform as Record<string, unknown>;
    if (typeof p.os === 'string' && typeof p.architecture === 'string') {
      out.platform = { os: p.os, architecture: p.architecture, ...(typeof p.variant === 'string' ? { variant: p.variant } : {}) };
    }
  }
  if (typeof d.artifactType === 'string') out.artifactType = d.artifactType;
  return out;
}

/**
 * Decides what a manifest-ish blob is. The registry's Content-Type is a
 * hint; the document's own mediaType field wins when present; otherwise the
 * shape (manifests[] vs layers[]) decides, as containerd does.
 */
export function detectManifestType(bytes: Uint8Array, contentType: string | undefined, what: string): string {
  const doc = parseJSON(bytes, what);
  if (doc.schemaVersion === 1 || (contentType && isSchema1(contentType))) {
    throw new BerthError('UNSUPPORTED', `${what}: Docker schema1 manifests are not supported`, {
      hint: 'schema1 is deprecated and insecure; re-push the image with a current Docker or any OCI tool to get a schema2/OCI manifest',
    });
  }
  if (typeof doc.mediaType === 'string' && (isIndex(doc.mediaType) || isManifest(doc.mediaType))) return doc.mediaType;
  const ct = contentType?.split(';')[0]?.trim();
  if (ct && (isIndex(ct) || isManifest(ct))) return ct;
  if (Array.isArray(doc.manifests)) return MediaType.ociIndex;
  if (Array.isArray(doc.layers)) return MediaType.ociManifest;
  throw new BerthError('UNSUPPORTED', `${what}: unknown manifest media type ${JSON.stringify(doc.mediaType ?? ct ?? null)}`);
}

export function parseIndex(bytes: Uint8Array, mediaType: string, what: string): ImageIndex {
  const doc = parseJSON(bytes, what);
  if (doc.schemaVersion !== 2) throw invalid(what, `schemaVersion is ${JSON.stringify(doc.schemaVersion)}, expected 2`);
  if (!Array.isArray(doc.manifests)) throw invalid(what, 'index has no manifests array');
  return {
    schemaVersion: 2,
    mediaType,
    manifests: doc.manifests.map((m, i) => parseDescriptor(m, `${what} manifests[${i}]`)),
    ...(doc.annotations ? { annotations: doc.annotations as Record<string, string> } : {}),
  };
}

export function parseManifest(bytes: Uint8Array, mediaType: string, what: string): ImageManifest {
  const doc = parseJSON(bytes, what);
  if (doc.schemaVersion !== 2) throw invalid(what, `schemaVersion is ${JSON.stringify(doc.schemaVersion)}, expected 2`);
  if (!Array.isArray(doc.layers)) throw invalid(what, 'manifest has no layers array');
  return {
    schemaVersion: 2,
    mediaType,
    config: parseDescriptor(doc.config, `${what} config`),
    layers: doc.layers.map((l, i) => parseDescriptor(l, `${what} layers[${i}]`)),
    ...(doc.annotations ? { annotations: doc.annotations as Record<string, string> } : {}),
  };
}

export function parseImageConfig(bytes: Uint8Array, what: string): ImageConfig {
  const doc = parseJSON(bytes, what);
  if (typeof doc.architecture !== 'string' || typeof doc.os !== 'string') throw invalid(what, 'config lacks os or architecture');
  const rootfs = doc.rootfs as Record<string, unknown> | undefined;
  if (!rootfs || !Array.isArray(rootfs.diff_ids)) throw invalid(what, 'config has no rootfs.diff_ids');
  for (const [i, d] of rootfs.diff_ids.entries()) if (!isDigest(d)) throw invalid(what, `rootfs.diff_ids[${i}] ${JSON.stringify(d)} is not a valid digest`);
  return doc as unknown as ImageConfig;
}
