import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { BerthError } from '../errors.js';
import { checkKey, checkLabels } from '../lmdb/index.js';
import type { Logger } from '../log.js';
import type { Mount } from '../oci/mount.js';
import { SnapshotRecords, type RecordTxn, type SnapshotRecord } from './records.js';
import type { SnapshotInfo, Snapshotter, Usage } from './snapshotter.js';
import { removeTree, syncDir, syncFilesystem } from './sync.js';
import { diskUsage } from './usage.js';

/**
 * What the overlay and the plain-copy snapshotter share: the records, the
 * directory of each snapshot (<root>/snapshots/<id>, its files in fs/), and
 * the order of every step, so a crash at any point leaves either a record
 * with its whole directory or a directory without a record, which cleanup()
 * removes. Never a record pointing at a missing or half-deleted directory:
 *
 * - prepare/view: a fresh id is claimed by mkdir (atomic, so ids never
 *   collide, also across processes), the directory is filled, its entries
 *   are fsynced, and only then the record is written.
 * - commit: syncfs of the snapshot's filesystem first, then one transaction
 *   replaces the active record by the committed one. An active snapshot
 *   whose process died stays active and is listed as such: never used as a
 *   layer, removable.
 * - remove: the record goes first (in the transaction that checks for
 *   children), then the directory is renamed to removing-<id> (fsynced) and
 *   deleted. A crash in between leaves a directory no record owns.
 *
 * cleanup() deletes what no record owns; run it while no other process is
 * preparing snapshots on the same root (berth's state lock), since a
 * directory being filled has no record yet.
 *
 * Snapshotters return mounts and never mount: unmount an active snapshot
 * before committing or removing it.
 */
export abstract class LocalSnapshotter implements Snapshotter {
  protected readonly snapshotsDir: string;
  /** Ids of directories this process is filling, not yet recorded: cleanup() leaves them alone. */
  private readonly filling = new Set<string>();

  protected constructor(
    protected readonly root: string,
    protected readonly records: SnapshotRecords,
    protected readonly logger: Logger,
  ) {
    this.snapshotsDir = join(root, 'snapshots');
  }

  /** Creates <root>, <root>/snapshots and the records of a snapshotter named `driver`. */
  protected static async openRoot(root: string, driver: string): Promise<{ root: string; records: SnapshotRecords }> {
    const abs = resolve(root);
    const snapshots = join(abs, 'snapshots');
    const created = await mkdir(snapshots, { recursive: true, mode: 0o700 }).catch((err: unknown) => {
      throw fsError(err, `create snapshotter root ${abs}`, abs);
    });
    // Each new directory's entry lives in its parent: fsync the parents, from snapshots/ up to the first one mkdir made.
    for (let d = snapshots; created !== undefined; d = dirname(d)) {
      await syncDir(dirname(d));
      if (d === created) break;
    }
    return { root: abs, records: await SnapshotRecords.open(join(abs, 'metadata'), driver) };
  }

  /** Fills a new snapshot's directory `dir` (it exists, empty). `parents`: ids of the committed chain below, nearest first. */
  protected abstract populate(dir: string, kind: 'active' | 'view', parents: string[]): Promise<void>;
  /** The mounts of an active snapshot or view `id` on `parents` (ids, nearest first). */
  protected abstract mountsOf(kind: 'active' | 'view', id: string, parents: string[]): Mount[];

  protected dirOf(id: string): string {
    return join(this.snapshotsDir, id);
  }

  protected fsOf(id: string): string {
    return join(this.snapshotsDir, id, 'fs');
  }

  async stat(key: string): Promise<SnapshotInfo> {
    checkKey(key, 'snapshot key');
    return info(key, this.mustGet(this.records, key));
  }

  prepare(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]> {
    return this.create('active', key, parent, opts?.labels);
  }

  view(key: string, parent?: string, opts?: { labels?: Record<string, string> }): Promise<Mount[]> {
    return this.create('view', key, parent, opts?.labels);
  }

  async mounts(key: string): Promise<Mount[]> {
    checkKey(key, 'snapshot key');
    const rec = this.mustGet(this.records, key);
    if (rec.kind === 'committed') {
      throw new BerthError('INVALID_ARGUMENT', `snapshot ${JSON.stringify(key)} is committed and has no mounts`, {
        hint: 'create a view of it, or prepare an active snapshot on it',
        details: { key },
      });
    }
    return this.mountsOf(rec.kind, rec.id, this.chain(this.records, rec.parent));
  }

  async commit(name: string, key: string, opts?: { labels?: Record<string, string> }): Promise<void> {
    checkKey(name, 'snapshot name');
    checkKey(key, 'snapshot key');
    const labels = opts?.labels === undefined ? undefined : checkLabels(opts.labels, `labels of snapshot ${JSON.stringify(name)}`);
    const check = (txn: Pick<RecordTxn, 'get'>): SnapshotRecord => {
      const rec = this.mustGet(txn, key);
      if (rec.kind !== 'active') {
        throw new BerthError('INVALID_ARGUMENT', `cannot commit ${JSON.stringify(key)}: it is a ${rec.kind} snapshot, not an active one`, { details: { key, kind: rec.kind } });
      }
      if (txn.get(name) !== undefined) throw taken(name);
      return rec;
    };
    const rec = check(this.records);
    await syncFilesystem(this.fsOf(rec.id));
    await this.records.write(`commit ${key} as ${name}`, (txn) => {
      const now = check(txn);
      if (now.id !== rec.id) throw new BerthError('FAILED_PRECONDITION', `snapshot ${JSON.stringify(key)} was replaced while it was being committed`, { details: { key } });
      const at = new Date().toISOString();
      txn.remove(key);
      txn.put(name, { id: rec.id, kind: 'committed', ...(rec.parent !== undefined ? { parent: rec.parent } : {}), labels: labels ?? rec.labels, createdAt: at, updatedAt: at });
    });
    this.logger.debug('snapshot committed', { key, name, id: rec.id });
  }

  async remove(key: string): Promise<void> {
    checkKey(key, 'snapshot key');
    const rec = await this.records.write(`remove ${key}`, (txn) => {
      const found = this.mustGet(txn, key);
      const children = txn
        .all()
        .filter(([, r]) => r.parent === key)
        .map(([k]) => k);
      if (children.length > 0) {
        const shown = children.slice(0, 5).map((c) => JSON.stringify(c)).join(', ') + (children.length > 5 ? ` and ${children.length - 5} more` : '');
        throw new BerthError('FAILED_PRECONDITION', `snapshot ${JSON.stringify(key)} has children: ${shown}`, {
          hint: 'remove its children first',
          details: { key, children },
        });
      }
      txn.remove(key);
      return found;
    });
    try {
      await this.discard(rec.id);
    } catch (err) {
      // The snapshot is gone; what is left of its directory is garbage for cleanup().
      this.logger.warn('could not delete a removed snapshot\'s directory', { key, id: rec.id, error: String(err) });
    }
  }

  async list(): Promise<SnapshotInfo[]> {
    return this.records
      .all()
      .map(([key, rec]) => info(key, rec))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async usage(key: string): Promise<Usage> {
    checkKey(key, 'snapshot key');
    const fs = this.fsOf(this.mustGet(this.records, key).id);
    return diskUsage(fs).catch((err: unknown) => {
      throw fsError(err, `usage of snapshot ${JSON.stringify(key)}`, fs);
    });
  }

  async cleanup(): Promise<number> {
    try {
      return await this.removeUnowned();
    } catch (err) {
      throw fsError(err, `clean up ${this.snapshotsDir}`, this.snapshotsDir);
    }
  }

  private async removeUnowned(): Promise<number> {
    const owned = new Set(this.records.all().map(([, r]) => r.id));
    const garbage: string[] = [];
    for (const name of await readdir(this.snapshotsDir)) {
      if (name.startsWith('removing-')) garbage.push(name);
      else if (isId(name) && !owned.has(name) && !this.filling.has(name)) {
        await rename(this.dirOf(name), this.dirOf(`removing-${name}`));
        garbage.push(`removing-${name}`);
      }
    }
    if (garbage.length === 0) return 0;
    await syncDir(this.snapshotsDir);
    for (const name of garbage) await removeTree(this.dirOf(name));
    await syncDir(this.snapshotsDir);
    this.logger.info('removed snapshot directories no record owns', { count: garbage.length, names: garbage });
    return garbage.length;
  }

  close(): Promise<void> {
    return this.records.close();
  }

  private async create(kind: 'active' | 'view', key: string, parent: string | undefined, rawLabels: Record<string, string> | undefined): Promise<Mount[]> {
    checkKey(key, 'snapshot key');
    if (parent !== undefined) checkKey(parent, 'parent');
    const labels = checkLabels(rawLabels, `labels of snapshot ${JSON.stringify(key)}`);
    const check = (txn: Pick<RecordTxn, 'get'>): string[] => {
      if (txn.get(key) !== undefined) throw taken(key);
      if (parent === undefined) return [];
      const p = txn.get(parent);
      if (!p) throw new BerthError('NOT_FOUND', `parent snapshot ${JSON.stringify(parent)} of ${JSON.stringify(key)} not found`, { details: { key, parent } });
      if (p.kind !== 'committed') {
        throw new BerthError('INVALID_ARGUMENT', `parent ${JSON.stringify(parent)} of ${JSON.stringify(key)} is a ${p.kind} snapshot; a parent must be committed`, { details: { key, parent } });
      }
      return this.chain(txn, parent);
    };
    const parents = check(this.records); // fail before the work; checked again when recording
    const id = await this.claimId();
    const dir = this.dirOf(id);
    try {
      await this.populate(dir, kind, parents);
      // The new directory's entries, and its own entry in snapshots/, durable before a record names it.
      await Promise.all([syncDir(dir), syncDir(this.snapshotsDir)]);
      await this.records.write(`${kind === 'view' ? 'view' : 'prepare'} ${key}`, (txn) => {
        if (check(txn)[0] !== parents[0]) {
          throw new BerthError('FAILED_PRECONDITION', `parent ${JSON.stringify(parent)} of ${JSON.stringify(key)} was replaced meanwhile; retry`, { details: { key, parent } });
        }
        const at = new Date().toISOString();
        txn.put(key, { id, kind, ...(parent !== undefined ? { parent } : {}), labels, createdAt: at, updatedAt: at });
      });
    } catch (err) {
      await this.discard(id).catch((e) => this.logger.warn('could not delete an unrecorded snapshot directory', { id, error: String(e) }));
      throw fsError(err, `${kind === 'view' ? 'view' : 'prepare'} ${key}`, dir);
    } finally {
      this.filling.delete(id);
    }
    this.logger.debug('snapshot created', { key, kind, id, parent });
    return this.mountsOf(kind, id, parents);
  }

  /** A new empty directory <root>/snapshots/<id> under an id nobody else has. */
  private async claimId(): Promise<string> {
    for (;;) {
      const id = randomBytes(4).toString('hex');
      if (this.filling.has(id)) continue;
      this.filling.add(id); // before mkdir: a cleanup() running meanwhile must not take it for garbage
      try {
        await mkdir(this.dirOf(id), { mode: 0o700 });
        return id;
      } catch (err) {
        this.filling.delete(id);
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fsError(err, `create a snapshot directory in ${this.snapshotsDir}`, this.snapshotsDir);
      }
    }
  }

  /** Renames the directory of `id` out of the way, durably, then deletes it. */
  private async discard(id: string): Promise<void> {
    const doomed = this.dirOf(`removing-${id}`);
    try {
      await rename(this.dirOf(id), doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    await syncDir(this.snapshotsDir);
    await removeTree(doomed);
  }

  /** Ids of the committed chain from `name` down, nearest first. */
  private chain(txn: Pick<RecordTxn, 'get'>, name: string | undefined): string[] {
    const ids: string[] = [];
    for (let n = name; n !== undefined; ) {
      const rec = txn.get(n);
      if (!rec) throw new BerthError('CORRUPT', `snapshot ${JSON.stringify(n)} is missing from the records ${this.records.path} but has children`, { details: { name: n } });
      ids.push(rec.id);
      n = rec.parent;
    }
    return ids;
  }

  private mustGet(txn: Pick<RecordTxn, 'get'>, key: string): SnapshotRecord {
    const rec = txn.get(key);
    if (!rec) throw new BerthError('NOT_FOUND', `snapshot ${JSON.stringify(key)} not found`, { details: { key } });
    return rec;
  }
}

const isId = (name: string) => /^[0-9a-f]{8}$/.test(name);

function taken(key: string): BerthError {
  return new BerthError('ALREADY_EXISTS', `snapshot ${JSON.stringify(key)} already exists`, { details: { key } });
}

function info(key: string, rec: SnapshotRecord): SnapshotInfo {
  return { key, kind: rec.kind, ...(rec.parent !== undefined ? { parent: rec.parent } : {}), labels: { ...rec.labels }, createdAt: rec.createdAt, updatedAt: rec.updatedAt };
}

/** A file system error as a BerthError naming what was being done and where. */
export function fsError(err: unknown, what: string, path: string): BerthError {
  if (err instanceof BerthError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const message = `${what}: ${(err as Error).message}`;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new BerthError('UNAVAILABLE', message, { cause: err, hint: `free disk space on the file system of ${path} and retry`, details: { path } });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return new BerthError('FAILED_PRECONDITION', message, { cause: err, hint: `berth needs to write ${path}`, details: { path } });
  return new BerthError('INTERNAL', message, { cause: err, details: { path } });
}
