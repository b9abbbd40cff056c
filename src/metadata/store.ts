import type { Descriptor } from '../oci/descriptor.js';
import type { Digest } from '../oci/digest.js';

/**
 * The metadata store interface: names pointing at digests, labels on content
 * that record references between blobs (so a garbage collector can mark from
 * images), and leases that protect resources in use (a pull in progress).
 * Every write is one transaction, durable when the call returns.
 */

export interface ImageRecord {
  /** Canonical reference, e.g. "docker.io/library/busybox:latest". */
  name: string;
  /** The manifest or index the name points at. */
  target: Descriptor;
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

export type LeaseResource = { type: 'content'; id: Digest } | { type: 'ingest'; id: string } | { type: 'snapshot'; id: string };

export interface Lease {
  id: string;
  createdAt: string;
  /** After this time the lease no longer protects anything (a crashed pull). */
  expiresAt?: string;
  labels: Record<string, string>;
  resources: LeaseResource[];
}

/**
 * Label keys on content that name what a blob references, as containerd's
 * gc.ref labels do: an index points at its manifests, a manifest at its
 * config and layers.
 */
export const RefLabel = {
  manifest: (i: number) => `berth.io/gc.ref.content.m.${i}`,
  config: 'berth.io/gc.ref.content.config',
  layer: (i: number) => `berth.io/gc.ref.content.l.${i}`,
  prefix: 'berth.io/gc.ref.content.',
  /** On a config: the top snapshot of the unpacked image in that snapshotter. */
  snapshot: (snapshotter: string) => `berth.io/gc.ref.snapshot.${snapshotter}`,
} as const;

export interface ImageStore {
  get(name: string): Promise<ImageRecord | undefined>;
  list(): Promise<ImageRecord[]>;
  /** Creates or updates; keeps createdAt of an existing record. Returns the stored record and the previous one. */
  put(rec: { name: string; target: Descriptor; labels?: Record<string, string> }): Promise<{ record: ImageRecord; previous?: ImageRecord }>;
  /** NOT_FOUND when absent. Returns the removed record. */
  delete(name: string): Promise<ImageRecord>;
}

export interface ContentLabelStore {
  get(digest: Digest): Promise<Record<string, string>>;
  /** Replaces all labels of a digest. An empty object removes the entry. */
  set(digest: Digest, labels: Record<string, string>): Promise<void>;
  /** Digests referenced by a blob's gc.ref labels, in label order. */
  references(digest: Digest): Promise<Digest[]>;
  list(): Promise<Array<{ digest: Digest; labels: Record<string, string> }>>;
}

export interface LeaseStore {
  create(opts?: { id?: string; ttlMs?: number; labels?: Record<string, string> }): Promise<Lease>;
  addResource(leaseId: string, res: LeaseResource): Promise<void>;
  get(id: string): Promise<Lease | undefined>;
  list(): Promise<Lease[]>;
  delete(id: string): Promise<void>;
}

export interface MetadataStore {
  readonly images: ImageStore;
  readonly content: ContentLabelStore;
  readonly leases: LeaseStore;
  /** The schema version on disk (berth refuses to open a newer one). */
  schemaVersion(): number;
  close(): Promise<void>;
}
