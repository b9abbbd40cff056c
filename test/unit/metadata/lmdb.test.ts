import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, open as openFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { createRequire } from 'node:module';
import { commitCause } from '../../../src/lmdb/index.js';
import { LmdbMetadataStore, SCHEMA_VERSION, translateError } from '../../../src/metadata/lmdb.js';
import type { MetadataStore } from '../../../src/metadata/store.js';
import { sha256 } from '../../../src/oci/digest.js';
import { MediaType } from '../../../src/oci/mediatype.js';
import { tempDir } from '../../helpers/tmp.js';
import { rejectsWith } from '../../suites/content.js';
import { metadataStoreConformance } from '../../suites/metadata.js';

// As src/lmdb/ loads it (CommonJS), so the test and the store share one lmdb-js instance.
const { open } = createRequire(import.meta.url)('lmdb') as typeof import('lmdb');

// The compiled module a separate berth process would load.
const INDEX_URL = new URL('../../../src/metadata/index.js', import.meta.url).href;

const target = (seed: string) => ({ mediaType: MediaType.ociManifest, digest: sha256(seed), size: 42 });

metadataStoreConformance('LmdbMetadataStore', async () => {
  const tmp = await tempDir('berth-meta');
  const path = join(tmp.path, 'meta');
  let current: MetadataStore = await LmdbMetadataStore.open({ path });
  return {
    store: current,
    async reopen() {
      await current.close();
      current = await LmdbMetadataStore.open({ path });
      return current;
    },
    async cleanup() {
      await current.close();
      await tmp.cleanup();
    },
  };
});

/** Runs a node child that loads dist/src/metadata/index.js as `m` and runs `body` with `store` open on `path`. */
function child(path: string, body: string) {
  const code = `import * as m from ${JSON.stringify(INDEX_URL)};\nconst store = await m.LmdbMetadataStore.open({ path: ${JSON.stringify(path)} });\n${body}`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  proc.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  return { proc, exited, out: () => stdout, err: () => stderr };
}

/** Writes records into the raw LMDB environment, as an older or newer berth (or damage) would have left them. */
async function rawPut(path: string, db: string, key: string, value: unknown): Promise<void> {
  const root = open({ path, overlappingSync: false });
  const d = root.openDB(db, { encoding: 'json' });
  await (value === undefined ? d.remove(key) : d.put(key, value));
  await root.close();
}

describe('LmdbMetadataStore', () => {
  let tmp: { path: string; cleanup(): Promise<void> };
  let path: string;
  beforeEach(async () => {
    tmp = await tempDir('berth-meta');
    path = join(tmp.path, 'meta');
  });
  afterEach(async () => {
    await tmp.cleanup();
  });

  it('creates the directory with mode 0700, and tightens an existing one', async () => {
    const nested = join(tmp.path, 'a', 'b', 'meta');
    const s1 = await LmdbMetadataStore.open({ path: nested });
    await s1.close();
    assert.equal((await stat(nested)).mode & 0o777, 0o700);

    await mkdir(path, { mode: 0o755 });
    await chmod(path, 0o755);
    const s2 = await LmdbMetadataStore.open({ path });
    await s2.close();
    assert.equal((await stat(path)).mode & 0o777, 0o700);
  });

  it('writes schema version 1 into a new store and reads it back', async () => {
    assert.equal(SCHEMA_VERSION, 1);
    const s = await LmdbMetadataStore.open({ path });
    assert.equal(s.schemaVersion(), 1);
    await s.close();
    const root = open({ path, overlappingSync: false });
    assert.equal(root.openDB('meta', { encoding: 'json' }).get('schemaVersion'), 1);
    await root.close();
  });

  it('refuses a store with a newer schema version: UNSUPPORTED, hint to upgrade', async () => {
    await (await LmdbMetadataStore.open({ path })).close();
    await rawPut(path, 'meta', 'schemaVersion', SCHEMA_VERSION + 1);
    await rejectsWith(LmdbMetadataStore.open({ path }), 'UNSUPPORTED', (err) => {
      assert.match(err.message, new RegExp(`schema version ${SCHEMA_VERSION + 1}`));
      assert.match(err.message, new RegExp(path));
      assert.match((err as { hint?: string }).hint ?? '', /upgrade berth/);
    });
  });

  it('treats records without a schema version as CORRUPT', async () => {
    const s = await LmdbMetadataStore.open({ path });
    await s.images.put({ name: 'x/y:1', target: target('a') });
    await s.close();
    await rawPut(path, 'meta', 'schemaVersion', undefined);
    await rejectsWith(LmdbMetadataStore.open({ path }), 'CORRUPT', (err) => assert.match(err.message, new RegExp(path)));
  });

  it('reports a damaged data file as CORRUPT with its path, without crashing', async () => {
    await mkdir(path, { recursive: true });
    await writeFile(join(path, 'data.mdb'), Buffer.alloc(20_000, 7));
    await rejectsWith(LmdbMetadataStore.open({ path }), 'CORRUPT', (err) => assert.match(err.message, new RegExp(join(path, 'data.mdb'))));

    const other = join(tmp.path, 'other');
    const s = await LmdbMetadataStore.open({ path: other });
    await s.images.put({ name: 'x/y:1', target: target('a') });
    await s.close();
    await truncate(join(other, 'data.mdb'), 4096);
    await rejectsWith(LmdbMetadataStore.open({ path: other }), 'CORRUPT', (err) => assert.match(err.message, /truncated/));
  });

  it('stamps records with the injected clock', async () => {
    let t = Date.parse('2024-01-02T03:04:05.000Z');
    const s = await LmdbMetadataStore.open({ path, now: () => new Date(t) });
    try {
      const first = (await s.images.put({ name: 'x/y:1', target: target('a') })).record;
      assert.equal(first.createdAt, '2024-01-02T03:04:05.000Z');
      t += 1000;
      const second = (await s.images.put({ name: 'x/y:1', target: target('b') })).record;
      assert.deepEqual([second.createdAt, second.updatedAt], ['2024-01-02T03:04:05.000Z', '2024-01-02T03:04:06.000Z']);
      const lease = await s.leases.create({ ttlMs: 90_000 });
      assert.deepEqual([lease.createdAt, lease.expiresAt], ['2024-01-02T03:04:06.000Z', '2024-01-02T03:05:36.000Z']);
    } finally {
      await s.close();
    }
  });

  it('refuses use after close', async () => {
    const s = await LmdbMetadataStore.open({ path });
    await s.close();
    await s.close();
    await rejectsWith(s.images.list(), 'INTERNAL', (err) => assert.match(err.message, /closed/));
  });

  it('keeps an awaited write when the writing process is SIGKILLed right after', async () => {
    const c = child(
      path,
      `await store.images.put({ name: 'x/durable:1', target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: '${sha256('durable')}', size: 7 } });
       process.stdout.write('ok\\n');
       // keep writing, so the kill lands with a transaction in flight
       for (let i = 0; ; i++) await store.leases.create({ id: 'busy-' + i });`,
    );
    await new Promise<void>((resolve, reject) => {
      c.proc.stdout.on('data', () => c.out().includes('ok\n') && resolve());
      c.exited.then(() => reject(new Error(`child exited early: ${c.err()}`)), reject);
    });
    c.proc.kill('SIGKILL');
    assert.equal((await c.exited).signal, 'SIGKILL');

    const s = await LmdbMetadataStore.open({ path });
    try {
      const rec = await s.images.get('x/durable:1');
      assert.equal(rec?.target.digest, sha256('durable'));
      const busy = (await s.leases.list()).map((l) => Number(l.id.slice('busy-'.length))).sort((a, b) => a - b);
      assert.deepEqual(busy, busy.map((_, i) => i), 'committed leases form a prefix: no transaction half-applied');
      await s.images.put({ name: 'x/after:1', target: target('after') }); // the killed writer left no lock behind
    } finally {
      await s.close();
    }
  });

  it('two processes writing the same store lose no update', async () => {
    const s = await LmdbMetadataStore.open({ path });
    try {
      await s.leases.create({ id: 'shared' });
      const N = 30;
      const c = child(
        path,
        `for (let i = 0; i < ${N}; i++) {
           await store.leases.addResource('shared', { type: 'ingest', id: 'child-' + i });
           await store.images.put({ name: 'child/' + i, target: { mediaType: 'm', digest: '${sha256('c')}', size: 1 } });
         }
         await store.close();`,
      );
      for (let i = 0; i < N; i++) {
        await s.leases.addResource('shared', { type: 'ingest', id: `parent-${i}` });
        await s.images.put({ name: `parent/${i}`, target: target('p') });
      }
      const { code } = await c.exited;
      assert.equal(code, 0, c.err());
      const ids = (await s.leases.get('shared'))!.resources.map((r) => r.id);
      assert.equal(ids.length, 2 * N, `resources: ${ids.join(' ')}`);
      assert.equal(new Set(ids).size, 2 * N);
      assert.equal((await s.images.list()).length, 2 * N);
    } finally {
      await s.close();
    }
  });

  it('refuses over-long names before LMDB sees them', async () => {
    const s = await LmdbMetadataStore.open({ path });
    try {
      await rejectsWith(s.images.put({ name: 'x'.repeat(5000), target: target('a') }), 'INVALID_ARGUMENT');
      assert.deepEqual(await s.images.list(), []);
    } finally {
      await s.close();
    }
  });
});

describe('translateError', () => {
  it('maps a full map or disk to UNAVAILABLE with a hint, unwrapping lmdb-js commit failures', async () => {
    const mapFull = translateError(Object.assign(new Error('MDB_MAP_FULL: Environment mapsize limit reached'), { code: -30792 }), '/r/meta', 'put image x');
    assert.equal(mapFull.code, 'UNAVAILABLE');
    assert.match(mapFull.hint ?? '', /free disk space/);
    assert.match(mapFull.message, /put image x.*\/r\/meta/);

    // What lmdb-js rejects with when a commit fails on a full disk: a generic error, the errno behind a promise.
    const cause = Object.assign(new Error('No space left on device'), { code: 28 });
    const failed = Object.assign(new Error('Commit failed (see commitError for details)'), { commitError: Promise.reject(cause) });
    const full = translateError(await commitCause(failed), '/r/meta', 'put image x');
    assert.equal(full.code, 'UNAVAILABLE');
    assert.match(full.hint ?? '', /disk .* is full/);
    assert.equal(full.cause, cause);
  });

  it('maps corruption to CORRUPT naming the path, and passes BerthErrors through', () => {
    const err = translateError(Object.assign(new Error('MDB_CORRUPTED'), { code: -30796 }), '/r/meta', 'get image x');
    assert.equal(err.code, 'CORRUPT');
    assert.match(err.message, /\/r\/meta/);
    assert.equal(translateError(new SyntaxError('Unexpected token'), '/r/meta', 'get').code, 'CORRUPT');
    const mine = translateError(Object.assign(new Error('x'), { code: 'ENOSPC' }), '/r', 'w');
    assert.equal(translateError(mine, '/other', 'y'), mine);
  });
});
