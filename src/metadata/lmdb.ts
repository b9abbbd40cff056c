import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import type { Database, RootDatabase } from 'lmdb';
import { BerthError } from '../errors.js';
import { checkKey, checkLabels, commitCause, openDurableEnv, syncEntries, translateLmdbError } from '../lmdb/index.js';
import { nullLogger, type Logger } from '../log.js';
import type { Descriptor } from '../oci/descriptor.js';
import { isDigest, type Digest } from '../oci/digest.js';
import type { BerthEvent } from '../events.js';
import { RefLabel, type ContainerRecord, type ContainerStore, type EventLog, type StoredEvent, type ContentLabelStore, type ImageRecord, type ImageStore, type Lease, type LeaseHolder, type LeaseResource, type LeaseStore, type MetadataStore } from './store.js';

/**
 * MetadataStore on LMDB (npm `lmdb`): one environment under `path`, one named
 * database per kind of record. Keys are strings (image name, digest, lease id)
 * in LMDB's byte order; values are JSON: records are small and few, so speed
 * does not matter, while JSON keeps the bytes on disk independent of
 * msgpackr's encoder choices and readable with mdb_dump.
 *
 * Durability is lmdb/'s: every write is one LMDB transaction, committed
 * with fsync before its promise resolves.
 *
 * Several processes may open the same path at once (berth apply next to
 * berth daemon): LMDB serialises writers with a robust mutex in lock.mdb (a
 * writer killed mid-transaction releases it) and readers see the last
 * committed state. Each write re-reads what it changes inside its transaction,
 * so concurrent writers from different processes never lose an update.
 */

/** The layout this code reads and writes. Bump it with a migration. */
export const SCHEMA_VERSION = 1;
const VERSION_KEY = 'schemaVersion';

/** The named databases; a new kind of record (containers, events) is one more name here. */
const DATABASES = ['meta', 'images', 'content', 'leases', 'containers', 'events'] as const;
type DbName = (typeof DATABASES)[number];

export interface LmdbMetadataStoreOptions {
  /** The environment's directory, e.g. /var/lib/berth/meta; created with mode 0700. */
  path: string;
  logger?: Logger;
  now?: () => Date;
  /** The event log keeps this many newest events (default 10 000). */
  maxEvents?: number;
}

export class LmdbMetadataStore implements MetadataStore {
  readonly images: ImageStore;
  readonly content: ContentLabelStore;
  readonly leases: LeaseStore;
  readonly containers: ContainerStore;
  readonly events: EventLog;

  private constructor(
    private readonly env: LmdbEnv,
    private readonly version: number,
    maxEvents: number,
  ) {
    this.images = new LmdbImageStore(env);
    this.content = new LmdbContentLabelStore(env);
    this.leases = new LmdbLeaseStore(env);
    this.containers = new LmdbContainerStore(env);
    this.events = new LmdbEventLog(env, maxEvents);
  }

  /**
   * Opens (creating when absent) the store at `path`. Fails with UNSUPPORTED
   * when the store was written by a newer berth, CORRUPT when the file is not
   * an LMDB environment or holds records without a schema version.
   */
  static async open(opts: LmdbMetadataStoreOptions): Promise<LmdbMetadataStore> {
    const path = resolve(opts.path);
    const logger = opts.logger ?? nullLogger;
    try {
      const { root, fresh, created } = await openDurableEnv(path, { maxDbs: 16, names: { file: 'metadata file', restoreHint: restoreHint(path) } });
      let env: LmdbEnv | undefined;
      try {
        env = new LmdbEnv(root, path, opts.now ?? (() => new Date()));
        const version = await initSchema(env);
        if (fresh) await syncEntries(path, created);
        logger.debug('metadata store opened', { path, schemaVersion: version, created: fresh });
        return new LmdbMetadataStore(env, version, opts.maxEvents ?? 10_000);
      } catch (err) {
        await (env ? env.close() : root.close());
        throw err;
      }
    } catch (err) {
      throw translateError(err, path, 'open metadata store');
    }
  }

  schemaVersion(): number {
    return this.version;
  }

  close(): Promise<void> {
    return this.env.close();
  }
}

/** The databases, the clock and the one read and write path the record stores share. */
class LmdbEnv {
  readonly db: Record<DbName, Database<unknown, string>>;
  private closing: Promise<void> | undefined;

  constructor(
    private readonly root: RootDatabase,
    readonly path: string,
    readonly now: () => Date,
  ) {
    this.db = Object.fromEntries(DATABASES.map((name) => [name, root.openDB(name, { encoding: 'json' })])) as LmdbEnv['db'];
  }

  read<T>(what: string, fn: () => T): T {
    this.checkOpen(what);
    try {
      return fn();
    } catch (err) {
      throw translateError(err, this.path, what);
    }
  }

  /**
   * Runs fn in a write transaction (a child transaction, so a throw rolls back
   * its writes even when lmdb-js batches it with others); resolves once the
   * commit is on disk. fn may read, and its reads see the latest committed
   * state of every process: the transaction holds LMDB's write lock.
   * Inside fn, write with putSync/removeSync.
   */
  async write<T>(what: string, fn: () => T): Promise<T> {
    this.checkOpen(what);
    try {
      return await this.root.childTransaction(fn);
    } catch (err) {
      throw translateError(await commitCause(err), this.path, what);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.root.close();
    return this.closing;
  }

  private checkOpen(what: string): void {
    if (this.closing) throw new BerthError('INTERNAL', `${what}: metadata store ${this.path} is closed`);
  }
}

class LmdbImageStore implements ImageStore {
  constructor(private readonly env: LmdbEnv) {}

  async get(name: string): Promise<ImageRecord | undefined> {
    checkKey(name, 'image name');
    return this.env.read(`get image ${name}`, () => this.env.db.images.get(name) as ImageRecord | undefined);
  }

  async list(): Promise<ImageRecord[]> {
    return this.env.read('list images', () => [...this.env.db.images.getRange()].map((e) => e.value as ImageRecord));
  }

  async put(rec: { name: string; target: Descriptor; labels?: Record<string, string> }): Promise<{ record: ImageRecord; previous?: ImageRecord }> {
    checkKey(rec.name, 'image name');
    checkDescriptor(rec.target, `target of image ${JSON.stringify(rec.name)}`);
    const labels = checkLabels(rec.labels ?? {}, `labels of image ${JSON.stringify(rec.name)}`);
    const images = this.env.db.images;
    return this.env.write(`put image ${rec.name}`, () => {
      const previous = images.get(rec.name) as ImageRecord | undefined;
      const now = this.env.now().toISOString();
      const record: ImageRecord = { name: rec.name, target: copy(rec.target), labels, createdAt: previous?.createdAt ?? now, updatedAt: now };
      images.putSync(rec.name, record);
      return previous ? { record, previous } : { record };
    });
  }

  async delete(name: string): Promise<ImageRecord> {
    checkKey(name, 'image name');
    const images = this.env.db.images;
    return this.env.write(`delete image ${name}`, () => {
      const previous = images.get(name) as ImageRecord | undefined;
      if (!previous) throw new BerthError('NOT_FOUND', `image ${JSON.stringify(name)} not found`, { details: { name } });
      images.removeSync(name);
      return previous;
    });
  }
}

class LmdbContentLabelStore implements ContentLabelStore {
  constructor(private readonly env: LmdbEnv) {}

  async get(digest: Digest): Promise<Record<string, string>> {
    checkDigest(digest, 'content digest');
    return this.env.read(`get labels of ${digest}`, () => (this.env.db.content.get(digest) as Record<string, string> | undefined) ?? {});
  }

  async set(digest: Digest, labels: Record<string, string>): Promise<void> {
    checkDigest(digest, 'content digest');
    const checked = checkLabels(labels, `labels of ${digest}`);
    for (const [key, value] of Object.entries(checked)) {
      if (key.startsWith(RefLabel.prefix)) checkDigest(value, `label ${key} of ${digest}`);
    }
    const content = this.env.db.content;
    await this.env.write(`set labels of ${digest}`, () => {
      if (Object.keys(checked).length === 0) content.removeSync(digest);
      else content.putSync(digest, checked);
    });
  }

  async references(digest: Digest): Promise<Digest[]> {
    const labels = await this.get(digest);
    return Object.keys(labels)
      .filter((key) => key.startsWith(RefLabel.prefix))
      .map((key) => ({ order: refOrder(key.slice(RefLabel.prefix.length)), key }))
      .sort((a, b) => a.order[0] - b.order[0] || a.order[1] - b.order[1] || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map(({ key }) => labels[key] as Digest);
  }

  async list(): Promise<Array<{ digest: Digest; labels: Record<string, string> }>> {
    return this.env.read('list content labels', () =>
      [...this.env.db.content.getRange()].map((e) => ({ digest: e.key as Digest, labels: e.value as Record<string, string> })),
    );
  }
}

/** Sort key of a gc.ref label suffix: manifests (m.N), then config, then layers (l.N), by number; any other suffix last. */
function refOrder(suffix: string): [number, number] {
  const m = /^([ml])\.(\d+)$/.exec(suffix);
  if (m) return [m[1] === 'm' ? 0 : 2, Number(m[2])];
  return suffix === 'config' ? [1, 0] : [3, 0];
}

class LmdbLeaseStore implements LeaseStore {
  constructor(private readonly env: LmdbEnv) {}

  async create(opts: { id?: string; ttlMs?: number; labels?: Record<string, string>; holder?: LeaseHolder } = {}): Promise<Lease> {
    const id = opts.id ?? randomUUID();
    checkKey(id, 'lease id');
    const holder = opts.holder;
    if (holder && !(Number.isSafeInteger(holder.pid) && holder.pid > 0 && typeof holder.boot === 'string' && holder.boot.length <= 64)) {
      throw new BerthError('INVALID_ARGUMENT', `lease ${JSON.stringify(id)}: holder must be a pid and a boot id, got ${JSON.stringify(holder)}`);
    }
    const ttl = opts.ttlMs;
    if (ttl !== undefined && !(Number.isFinite(ttl) && ttl > 0)) {
      throw new BerthError('INVALID_ARGUMENT', `lease ${JSON.stringify(id)}: ttlMs must be a positive number of milliseconds, got ${String(ttl)}`);
    }
    const labels = checkLabels(opts.labels ?? {}, `labels of lease ${JSON.stringify(id)}`);
    const leases = this.env.db.leases;
    return this.env.write(`create lease ${id}`, () => {
      if (leases.get(id) !== undefined) throw new BerthError('ALREADY_EXISTS', `lease ${JSON.stringify(id)} already exists`, { details: { lease: id } });
      const now = this.env.now();
      const lease: Lease = { id, createdAt: now.toISOString(), labels, resources: [], ...(holder ? { holder: { pid: holder.pid, boot: holder.boot } } : {}) };
      if (ttl !== undefined) lease.expiresAt = new Date(now.getTime() + ttl).toISOString();
      leases.putSync(id, lease);
      return lease;
    });
  }

  async addResource(leaseId: string, res: LeaseResource): Promise<void> {
    checkKey(leaseId, 'lease id');
    const resource = checkResource(res, leaseId);
    const leases = this.env.db.leases;
    await this.env.write(`add ${resource.type} ${resource.id} to lease ${leaseId}`, () => {
      const lease = leases.get(leaseId) as Lease | undefined;
      if (!lease) throw new BerthError('NOT_FOUND', `lease ${JSON.stringify(leaseId)} not found`, { details: { lease: leaseId } });
      if (lease.resources.some((r) => r.type === resource.type && r.id === resource.id)) return;
      lease.resources.push(resource);
      leases.putSync(leaseId, lease);
    });
  }

  async get(id: string): Promise<Lease | undefined> {
    checkKey(id, 'lease id');
    return this.env.read(`get lease ${id}`, () => this.env.db.leases.get(id) as Lease | undefined);
  }

  async list(): Promise<Lease[]> {
    return this.env.read('list leases', () => [...this.env.db.leases.getRange()].map((e) => e.value as Lease));
  }

  async settle(id: string): Promise<void> {
    checkKey(id, 'lease id');
    const leases = this.env.db.leases;
    await this.env.write(`settle lease ${id}`, () => {
      const lease = leases.get(id) as Lease | undefined;
      if (!lease) throw new BerthError('NOT_FOUND', `lease ${JSON.stringify(id)} not found`, { details: { lease: id } });
      if (lease.settledAt) return;
      leases.putSync(id, { ...lease, settledAt: this.env.now().toISOString() });
    });
  }

  async delete(id: string): Promise<void> {
    checkKey(id, 'lease id');
    const leases = this.env.db.leases;
    await this.env.write(`delete lease ${id}`, () => {
      leases.removeSync(id);
    });
  }
}

class LmdbContainerStore implements ContainerStore {
  constructor(private readonly env: LmdbEnv) {}

  async get(name: string): Promise<ContainerRecord | undefined> {
    checkKey(name, 'container name');
    return this.env.read(`get container ${name}`, () => this.env.db.containers.get(name) as ContainerRecord | undefined);
  }

  async list(): Promise<ContainerRecord[]> {
    return this.env.read('list containers', () => [...this.env.db.containers.getRange()].map((e) => e.value as ContainerRecord));
  }

  async create(rec: Omit<ContainerRecord, 'createdAt' | 'updatedAt'>): Promise<ContainerRecord> {
    checkKey(rec.name, 'container name');
    checkKey(rec.id, 'container id');
    checkDigest(rec.imageDigest, `image digest of container ${JSON.stringify(rec.name)}`);
    const labels = checkLabels(rec.labels, `labels of container ${JSON.stringify(rec.name)}`);
    const containers = this.env.db.containers;
    return this.env.write(`create container ${rec.name}`, () => {
      if (containers.get(rec.name) !== undefined) {
        throw new BerthError('ALREADY_EXISTS', `container ${JSON.stringify(rec.name)} already exists`, { hint: `choose another name, or remove it first: berth rm ${rec.name}`, details: { container: rec.name } });
      }
      const now = this.env.now().toISOString();
      const record: ContainerRecord = { ...copy(rec), labels, createdAt: now, updatedAt: now };
      containers.putSync(rec.name, record);
      return record;
    });
  }

  async update(name: string, fn: (rec: ContainerRecord) => ContainerRecord | undefined): Promise<ContainerRecord> {
    checkKey(name, 'container name');
    const containers = this.env.db.containers;
    return this.env.write(`update container ${name}`, () => {
      const stored = containers.get(name) as ContainerRecord | undefined;
      if (!stored) throw new BerthError('NOT_FOUND', `container ${JSON.stringify(name)} not found`, { details: { container: name } });
      const next = fn(copy(stored));
      if (!next) return stored;
      if (next.name !== name || next.id !== stored.id) throw new BerthError('INTERNAL', `container ${JSON.stringify(name)}: an update may not change its name or id`);
      const record: ContainerRecord = { ...copy(next), createdAt: stored.createdAt, updatedAt: this.env.now().toISOString() };
      containers.putSync(name, record);
      return record;
    });
  }

  async delete(name: string): Promise<void> {
    checkKey(name, 'container name');
    const containers = this.env.db.containers;
    await this.env.write(`delete container ${name}`, () => {
      containers.removeSync(name);
    });
  }
}

/** Keys are the sequence numbers (ordered-binary numbers sort numerically). */
class LmdbEventLog implements EventLog {
  constructor(
    private readonly env: LmdbEnv,
    private readonly max: number,
  ) {}

  async append(events: readonly BerthEvent[]): Promise<StoredEvent[]> {
    if (events.length === 0) return [];
    const db = this.env.db.events as unknown as Database<StoredEvent, number>;
    return this.env.write('append events', () => {
      let seq = lastKey(db);
      const time = this.env.now().toISOString();
      const stored = events.map((event) => ({ seq: ++seq, time, event: copy(event) }));
      for (const e of stored) db.putSync(e.seq, e);
      // Retention: drop the oldest beyond max, a few per append, so the log stays bounded without a sweeper.
      for (const key of db.getKeys({ end: seq - this.max + 1, limit: events.length + 16 })) db.removeSync(key);
      return stored;
    });
  }

  async since(after: number, limit = 1000): Promise<StoredEvent[]> {
    const db = this.env.db.events as unknown as Database<StoredEvent, number>;
    return this.env.read('read events', () => [...db.getRange({ start: after + 1, limit })].map((e) => e.value));
  }

  async lastSeq(): Promise<number> {
    const db = this.env.db.events as unknown as Database<StoredEvent, number>;
    return this.env.read('read events', () => lastKey(db));
  }
}

function lastKey(db: Database<StoredEvent, number>): number {
  for (const key of db.getKeys({ reverse: true, limit: 1 })) return key;
  return 0;
}

/**
 * Reads the schema version, writing the current one into a new, empty store.
 * Runs as a transaction so two processes creating the same store agree.
 */
async function initSchema(env: LmdbEnv): Promise<number> {
  const { meta } = env.db;
  let version: unknown = env.read('read schema version', () => meta.get(VERSION_KEY));
  if (version === undefined) {
    version = await env.write('initialise schema version', () => {
      const found: unknown = meta.get(VERSION_KEY);
      if (found !== undefined) return found;
      const hasRecords = DATABASES.some((name) => [...env.db[name].getKeys({ limit: 1 })].length > 0);
      if (hasRecords) return undefined;
      meta.putSync(VERSION_KEY, SCHEMA_VERSION);
      return SCHEMA_VERSION;
    });
  }
  const where = `metadata store ${env.path}`;
  if (version === undefined) {
    throw new BerthError('CORRUPT', `${where} holds records but no schema version`, {
      hint: restoreHint(env.path),
      details: { path: env.path },
    });
  }
  if (!Number.isSafeInteger(version) || (version as number) < 1) {
    throw new BerthError('CORRUPT', `${where} has an invalid schema version ${JSON.stringify(version)}`, { details: { path: env.path } });
  }
  if ((version as number) > SCHEMA_VERSION) {
    throw new BerthError('UNSUPPORTED', `${where} has schema version ${String(version)}, newer than the ${SCHEMA_VERSION} this berth knows`, {
      hint: 'upgrade berth to the version that wrote this store (or newer)',
      details: { path: env.path, found: version, supported: SCHEMA_VERSION },
    });
  }
  return version as number;
}

/** Translates what LMDB, lmdb-js or the file system threw into a BerthError naming the store at `path`. */
export function translateError(err: unknown, path: string, what: string): BerthError {
  return translateLmdbError(err, path, what, { where: `metadata store ${path}`, restoreHint: restoreHint(path) });
}

function restoreHint(path: string): string {
  return `move ${path} aside and start again (images will be pulled again), or restore it from a backup`;
}

function checkDigest(d: unknown, what: string): asserts d is Digest {
  if (!isDigest(d)) {
    throw new BerthError('INVALID_ARGUMENT', `${what} ${JSON.stringify(d)} is not a valid digest`, {
      hint: 'a digest looks like sha256: followed by 64 lowercase hex characters',
    });
  }
}

function checkDescriptor(d: Descriptor, what: string): void {
  if (typeof d !== 'object' || d === null) throw new BerthError('INVALID_ARGUMENT', `${what} must be a descriptor, got ${JSON.stringify(d)}`);
  checkDigest(d.digest, `${what}: digest`);
  if (typeof d.mediaType !== 'string' || d.mediaType === '') throw new BerthError('INVALID_ARGUMENT', `${what}: mediaType must be a non-empty string`);
  if (!Number.isSafeInteger(d.size) || d.size < 0) throw new BerthError('INVALID_ARGUMENT', `${what}: size must be a non-negative integer, got ${JSON.stringify(d.size)}`);
}

function checkResource(res: LeaseResource, leaseId: string): LeaseResource {
  const what = `resource of lease ${JSON.stringify(leaseId)}`;
  if (typeof res !== 'object' || res === null) throw new BerthError('INVALID_ARGUMENT', `${what} must be an object, got ${JSON.stringify(res)}`);
  if (res.type === 'content') checkDigest(res.id, `${what}: content`);
  else if (res.type === 'ingest' || res.type === 'snapshot') checkKey(res.id, `${what}: ${res.type} id`);
  else throw new BerthError('INVALID_ARGUMENT', `${what} has unknown type ${JSON.stringify((res as { type: unknown }).type)}`);
  return { type: res.type, id: res.id } as LeaseResource;
}

function copy<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}
