import type { Database, RootDatabase } from 'lmdb';
import { BerthError } from '../errors.js';
import { commitCause, openDurableEnv, syncEntries, translateLmdbError } from '../lmdb/index.js';
import type { SnapshotKind } from './snapshotter.js';

/**
 * The snapshot tree of one snapshotter, in its own LMDB environment (<root>/metadata):
 * snapshots/ may not import metadata/, and the records belong with the
 * directories they describe. One database maps a key (active, view) or a
 * name (committed) to its record; the snapshot's directory is
 * <root>/snapshots/<id>. Values are JSON.
 *
 * Durability is lmdb/'s: every write is one child transaction that
 * re-reads what it changes and resolves once the commit is on disk.
 */

export interface SnapshotRecord {
  /** Names the directory <root>/snapshots/<id>. */
  id: string;
  kind: SnapshotKind;
  /** The committed name this snapshot sits on. */
  parent?: string;
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
}

/** Reads and writes inside one transaction; see SnapshotRecords.write. */
export interface RecordTxn {
  get(key: string): SnapshotRecord | undefined;
  put(key: string, rec: SnapshotRecord): void;
  remove(key: string): void;
  all(): Array<[string, SnapshotRecord]>;
}

const SCHEMA_VERSION = 1;

export class SnapshotRecords {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly root: RootDatabase,
    private readonly snapshots: Database<SnapshotRecord, string>,
    readonly path: string,
  ) {}

  /**
   * Opens (creating when absent) the records at `path`, written by the
   * snapshotter named `driver`: one root holds one kind of snapshot, and
   * opening it as the other is FAILED_PRECONDITION.
   */
  static async open(path: string, driver: string): Promise<SnapshotRecords> {
    try {
      const { root, fresh, created } = await openDurableEnv(path, { maxDbs: 4, names: { file: 'snapshot records file', restoreHint: restoreHint(path) } });
      try {
        const meta = root.openDB<unknown, string>('meta', { encoding: 'json' });
        const records = new SnapshotRecords(root, root.openDB<SnapshotRecord, string>('snapshots', { encoding: 'json' }), path);
        const found = await root.childTransaction(() => {
          const had = { version: meta.get('schemaVersion'), driver: meta.get('driver') };
          if (had.version === undefined) {
            meta.putSync('schemaVersion', SCHEMA_VERSION);
            meta.putSync('driver', driver);
            return { version: SCHEMA_VERSION, driver };
          }
          return had;
        });
        if (found.driver !== driver) {
          throw new BerthError('FAILED_PRECONDITION', `snapshot records ${path} belong to the ${String(found.driver)} snapshotter, not ${driver}`, {
            hint: 'give each snapshotter its own root directory',
            details: { path, found: found.driver, expected: driver },
          });
        }
        if (found.version !== SCHEMA_VERSION) {
          throw new BerthError('UNSUPPORTED', `snapshot records ${path} have schema version ${String(found.version)}, this berth reads ${SCHEMA_VERSION}`, {
            hint: 'upgrade berth to the version that wrote them (or newer)',
            details: { path, found: found.version },
          });
        }
        if (fresh) await syncEntries(path, created);
        return records;
      } catch (err) {
        await root.close();
        throw err;
      }
    } catch (err) {
      throw translate(err, path, 'open snapshot records');
    }
  }

  get(key: string): SnapshotRecord | undefined {
    this.checkOpen();
    return this.snapshots.get(key);
  }

  all(): Array<[string, SnapshotRecord]> {
    this.checkOpen();
    return [...this.snapshots.getRange()].map((e) => [e.key, e.value]);
  }

  /**
   * Runs fn in one write transaction (holding LMDB's write lock, so its
   * reads see every process's last commit) and resolves once the commit is
   * on disk; a throw rolls back fn's writes. fn must be synchronous.
   */
  async write<T>(what: string, fn: (txn: RecordTxn) => T): Promise<T> {
    this.checkOpen();
    try {
      const db = this.snapshots;
      const txn: RecordTxn = {
        get: (key) => db.get(key),
        all: () => [...db.getRange()].map((e) => [e.key, e.value]),
        put: (key, rec) => void db.putSync(key, rec),
        remove: (key) => void db.removeSync(key),
      };
      return await this.root.childTransaction(() => fn(txn));
    } catch (err) {
      throw translate(await commitCause(err), this.path, what);
    }
  }

  close(): Promise<void> {
    this.closing ??= this.root.close();
    return this.closing;
  }

  private checkOpen(): void {
    if (this.closing) throw new BerthError('INTERNAL', `snapshot records ${this.path} are closed`);
  }
}

function translate(err: unknown, path: string, what: string): BerthError {
  return translateLmdbError(err, path, what, { where: path, restoreHint: restoreHint(path) });
}

function restoreHint(path: string): string {
  return `the snapshot records at ${path} are damaged: move the snapshotter's root aside (images will be unpacked again)`;
}
