import type { Descriptor } from '../oci/descriptor.js';
import type { BerthEvent } from '../events.js';
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

/** The process that took a lease: its pid, in the boot its boot_id names (pids start over at every boot). */
export interface LeaseHolder {
  pid: number;
  boot: string;
}

export interface Lease {
  id: string;
  createdAt: string;
  /** Who took it, where known: a lease whose holder is gone (killed, a power cut) marks no work in progress. */
  holder?: LeaseHolder;
  /** After this time the lease no longer protects anything (a crashed pull). */
  expiresAt?: string;
  /**
   * Set when the operation that took the lease has ended without dropping it
   * (a failed pull keeps what it fetched for the next one): its resources are
   * still protected until it expires, but it no longer marks work in progress.
   */
  settledAt?: string;
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
  create(opts?: { id?: string; ttlMs?: number; labels?: Record<string, string>; holder?: LeaseHolder }): Promise<Lease>;
  addResource(leaseId: string, res: LeaseResource): Promise<void>;
  get(id: string): Promise<Lease | undefined>;
  list(): Promise<Lease[]>;
  /** Marks the lease's operation as ended (settledAt); idempotent, NOT_FOUND for an unknown lease. */
  settle(id: string): Promise<void>;
  delete(id: string): Promise<void>;
}

/** When a container's init process exits: Docker's restart policies. */
export interface RestartPolicy {
  policy: 'never' | 'on-failure' | 'always';
  /** on-failure only: give up after this many restarts. */
  maxRetries?: number;
  /** Backoff: the first delay, doubled per consecutive restart up to maxMs. */
  initialMs: number;
  maxMs: number;
}

/** What berth last saw of a container's runs; the runtime is the truth for a live one. */
export interface ContainerStatus {
  /** Restarts made by the restart policy since the container was created. */
  restartCount: number;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number;
  signal?: number;
  oomKilled?: boolean;
  /** A restart is due at this time (the backoff of the restart policy). */
  nextRestartAt?: string;
  /** The delay before the next restart, doubled per consecutive restart. */
  backoffMs?: number;
  /** Why the last start or restart failed. */
  lastError?: string;
}

/** A container berth created: its image, settings and last known status. */
export interface ContainerRecord {
  /** Unique, chosen by the user. */
  name: string;
  /** The runtime's id and the key of its snapshot and bundle. */
  id: string;
  /** The image name it was created from, canonical. */
  image: string;
  /** The image manifest it was created from. */
  imageDigest: Digest;
  /** The committed snapshot (top chain ID) its rootfs is prepared on. */
  chainId: Digest;
  /** The container's own settings (runtime/'s ContainerConfig), opaque to this store. */
  config: Record<string, unknown>;
  restart: RestartPolicy;
  /** The signal `stop` sends first (the image's StopSignal or the container's own). */
  stopSignal: number;
  labels: Record<string, string>;
  /** What the user last asked for: stop and rm set 'stopped' before they signal, so an exit they caused is not restarted. */
  desired: 'running' | 'stopped';
  createdAt: string;
  updatedAt: string;
  status: ContainerStatus;
  /** Set when the reconciler made it from a manifest: berth apply changes and prunes only these. */
  managed?: { specHash: string; spec: Record<string, unknown> };
}

export interface ContainerStore {
  get(name: string): Promise<ContainerRecord | undefined>;
  list(): Promise<ContainerRecord[]>;
  /** ALREADY_EXISTS when the name is taken. */
  create(rec: Omit<ContainerRecord, 'createdAt' | 'updatedAt'>): Promise<ContainerRecord>;
  /**
   * Read-modify-write in one transaction: fn gets the stored record (a copy)
   * and returns the new one, or undefined to leave it as it is. NOT_FOUND
   * when absent. Returns the record as stored afterwards.
   */
  update(name: string, fn: (rec: ContainerRecord) => ContainerRecord | undefined): Promise<ContainerRecord>;
  /** Absent is fine. */
  delete(name: string): Promise<void>;
}

/** An event as persisted: numbered in order of appending, starting at 1. */
export interface StoredEvent {
  seq: number;
  time: string;
  event: BerthEvent;
}

/** The event log: bounded, oldest dropped first. */
export interface EventLog {
  append(events: readonly BerthEvent[]): Promise<StoredEvent[]>;
  /** Events with seq > after, oldest first, at most limit. */
  since(after: number, limit?: number): Promise<StoredEvent[]>;
  /** The seq of the newest event (0 when none). */
  lastSeq(): Promise<number>;
}

export interface MetadataStore {
  readonly images: ImageStore;
  readonly content: ContentLabelStore;
  readonly leases: LeaseStore;
  readonly containers: ContainerStore;
  readonly events: EventLog;
  /** The schema version on disk (berth refuses to open a newer one). */
  schemaVersion(): number;
  close(): Promise<void>;
}
