/**
 * Conformance tests every MetadataStore must pass. An implementation's test
 * file calls metadataStoreConformance with a factory that makes a fresh,
 * empty store. reopen() closes the current store and opens the same data
 * again (the new store replaces the old one); cleanup() closes whatever is
 * open and removes the data.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { RefLabel, type MetadataStore } from '../../src/metadata/store.js';
import type { Descriptor } from '../../src/oci/descriptor.js';
import { sha256, type Digest } from '../../src/oci/digest.js';
import { MediaType } from '../../src/oci/mediatype.js';
import { rejectsWith } from './content.js';

export interface MetadataStoreHarness {
  store: MetadataStore;
  reopen(): Promise<MetadataStore>;
  cleanup(): Promise<void>;
}

const digest = (seed: string): Digest => sha256(seed);
const manifest = (seed: string): Descriptor => ({ mediaType: MediaType.ociManifest, digest: digest(seed), size: 100 + seed.length });

/** Returns the labels in a shuffled insertion order, so key order on disk cannot stand in for label order. */
function shuffled(labels: Array<[string, string]>): Record<string, string> {
  const out = [...labels];
  for (let i = out.length - 1; i > 0; i--) {
    const j = (i * 7 + 3) % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return Object.fromEntries(out);
}

export function metadataStoreConformance(name: string, makeStore: () => Promise<MetadataStoreHarness>): void {
  describe(`MetadataStore conformance: ${name}`, () => {
    let h: MetadataStoreHarness;
    let store: MetadataStore;
    const reopen = async () => {
      store = await h.reopen();
      return store;
    };

    beforeEach(async () => {
      h = await makeStore();
      store = h.store;
    });
    afterEach(async () => {
      await h.cleanup();
    });

    it('reports a positive integer schema version', () => {
      const v = store.schemaVersion();
      assert.ok(Number.isInteger(v) && v >= 1, `schema version ${v}`);
    });

    describe('images', () => {
      it('creates a record and returns it from get and list', async () => {
        assert.equal(await store.images.get('docker.io/library/busybox:latest'), undefined);
        const before = Date.now();
        const { record, previous } = await store.images.put({ name: 'docker.io/library/busybox:latest', target: manifest('a'), labels: { app: 'web' } });
        assert.equal(previous, undefined);
        assert.equal(record.name, 'docker.io/library/busybox:latest');
        assert.deepEqual(record.target, manifest('a'));
        assert.deepEqual(record.labels, { app: 'web' });
        assert.equal(record.createdAt, record.updatedAt);
        assert.ok(Date.parse(record.createdAt) >= before - 1000 && Date.parse(record.createdAt) <= Date.now() + 1000, record.createdAt);
        assert.deepEqual(await store.images.get('docker.io/library/busybox:latest'), record);
        assert.deepEqual(await store.images.list(), [record]);
      });

      it('defaults labels to an empty object', async () => {
        const { record } = await store.images.put({ name: 'x/y:1', target: manifest('a') });
        assert.deepEqual(record.labels, {});
        assert.deepEqual((await store.images.get('x/y:1'))?.labels, {});
      });

      it('updates keeping createdAt, setting updatedAt, and returns the previous record', async () => {
        const first = (await store.images.put({ name: 'x/y:1', target: manifest('a'), labels: { v: '1' } })).record;
        await sleep(10);
        const { record, previous } = await store.images.put({ name: 'x/y:1', target: manifest('b') });
        assert.deepEqual(previous, first);
        assert.equal(record.createdAt, first.createdAt);
        assert.ok(Date.parse(record.updatedAt) > Date.parse(first.updatedAt), `${record.updatedAt} after ${first.updatedAt}`);
        assert.deepEqual(record.target, manifest('b'));
        assert.deepEqual(record.labels, {}, 'labels are replaced, not merged');
        assert.deepEqual(await store.images.get('x/y:1'), record);
        assert.equal((await store.images.list()).length, 1);
      });

      it('lists sorted by name', async () => {
        const names = ['registry.local:5000/b:2', 'docker.io/library/busybox:latest', 'registry.local:5000/a:1', 'registry.local:5000/b:10', 'docker.io/library/alpine:3'];
        for (const n of names) await store.images.put({ name: n, target: manifest(n) });
        const listed = await store.images.list();
        assert.deepEqual(listed.map((r) => r.name), [...names].sort());
        assert.deepEqual(listed.map((r) => r.target.digest), [...names].sort().map((n) => digest(n)));
      });

      it('deletes, returning the removed record; NOT_FOUND names the image', async () => {
        const { record } = await store.images.put({ name: 'x/y:1', target: manifest('a') });
        await store.images.put({ name: 'x/z:1', target: manifest('b') });
        assert.deepEqual(await store.images.delete('x/y:1'), record);
        assert.equal(await store.images.get('x/y:1'), undefined);
        assert.deepEqual((await store.images.list()).map((r) => r.name), ['x/z:1']);
        await rejectsWith(store.images.delete('x/y:1'), 'NOT_FOUND', (err) => assert.match(err.message, /x\/y:1/));
      });

      it('rejects an invalid target digest or an empty name, storing nothing', async () => {
        for (const bad of ['sha256:abc', 'sha256:' + 'A'.repeat(64), 'md5:' + 'a'.repeat(32), '', 'sha256:' + 'a'.repeat(64) + '/..']) {
          await rejectsWith(store.images.put({ name: 'x/y:1', target: { mediaType: MediaType.ociManifest, digest: bad as Digest, size: 1 } }), 'INVALID_ARGUMENT');
        }
        await rejectsWith(store.images.put({ name: '', target: manifest('a') }), 'INVALID_ARGUMENT');
        assert.deepEqual(await store.images.list(), []);
      });
    });

    describe('content labels', () => {
      it('returns no labels for unknown content', async () => {
        assert.deepEqual(await store.content.get(digest('none')), {});
        assert.deepEqual(await store.content.references(digest('none')), []);
      });

      it('set replaces all labels; an empty set removes the entry', async () => {
        const d = digest('blob');
        await store.content.set(d, { a: '1', b: '2' });
        assert.deepEqual(await store.content.get(d), { a: '1', b: '2' });
        await store.content.set(d, { c: '3' });
        assert.deepEqual(await store.content.get(d), { c: '3' });
        assert.deepEqual(await store.content.list(), [{ digest: d, labels: { c: '3' } }]);
        await store.content.set(d, {});
        assert.deepEqual(await store.content.get(d), {});
        assert.deepEqual(await store.content.list(), []);
      });

      it('lists every labelled digest', async () => {
        const entries = ['one', 'two', 'three'].map((s) => ({ digest: digest(s), labels: { name: s } }));
        for (const e of entries) await store.content.set(e.digest, e.labels);
        const byDigest = (a: { digest: string }, b: { digest: string }) => (a.digest < b.digest ? -1 : 1);
        assert.deepEqual([...(await store.content.list())].sort(byDigest), [...entries].sort(byDigest));
      });

      it('references of a manifest: config, then layers in numeric order (l.10 after l.9)', async () => {
        const m = digest('manifest');
        const config = digest('config');
        const layers = Array.from({ length: 12 }, (_, i) => digest(`layer ${i}`));
        await store.content.set(
          m,
          shuffled([
            ...layers.map((l, i): [string, string] => [RefLabel.layer(i), l]),
            [RefLabel.config, config],
            ['berth.io/other', 'not a reference'],
          ]),
        );
        assert.deepEqual(await store.content.references(m), [config, ...layers]);
      });

      it('references of an index: manifests in numeric order, before config and layers', async () => {
        const idx = digest('index');
        const manifests = Array.from({ length: 11 }, (_, i) => digest(`manifest ${i}`));
        await store.content.set(idx, shuffled([...manifests.map((d, i): [string, string] => [RefLabel.manifest(i), d]), [RefLabel.layer(0), digest('l0')], [RefLabel.config, digest('c')]]));
        assert.deepEqual(await store.content.references(idx), [...manifests, digest('c'), digest('l0')]);
      });

      it('rejects an invalid digest, and a reference label whose value is not a digest', async () => {
        await rejectsWith(store.content.set('sha256:1234' as Digest, { a: 'b' }), 'INVALID_ARGUMENT');
        await rejectsWith(store.content.get('nope' as Digest), 'INVALID_ARGUMENT');
        await rejectsWith(store.content.set(digest('m'), { [RefLabel.config]: 'sha256:short' }), 'INVALID_ARGUMENT');
        assert.deepEqual(await store.content.list(), []);
      });
    });

    describe('leases', () => {
      it('creates with a random id, createdAt and no expiry by default', async () => {
        const before = Date.now();
        const a = await store.leases.create();
        const b = await store.leases.create();
        assert.ok(a.id.length > 0 && a.id !== b.id, `${a.id} vs ${b.id}`);
        assert.ok(Date.parse(a.createdAt) >= before - 1000, a.createdAt);
        assert.equal(a.expiresAt, undefined);
        assert.deepEqual(a.resources, []);
        assert.deepEqual(a.labels, {});
        assert.deepEqual(await store.leases.get(a.id), a);
      });

      it('creates with a given id, labels and a ttl', async () => {
        const lease = await store.leases.create({ id: 'pull-1', ttlMs: 60_000, labels: { ref: 'x/y:1' } });
        assert.equal(lease.id, 'pull-1');
        assert.deepEqual(lease.labels, { ref: 'x/y:1' });
        assert.equal(Date.parse(lease.expiresAt!) - Date.parse(lease.createdAt), 60_000);
        assert.deepEqual(await store.leases.get('pull-1'), lease);
        await rejectsWith(store.leases.create({ id: 'pull-1' }), 'ALREADY_EXISTS');
      });

      it('adds resources once each; NOT_FOUND for an unknown lease', async () => {
        const { id } = await store.leases.create();
        await store.leases.addResource(id, { type: 'content', id: digest('a') });
        await store.leases.addResource(id, { type: 'ingest', id: 'ingest-a' });
        await store.leases.addResource(id, { type: 'content', id: digest('a') });
        await store.leases.addResource(id, { type: 'snapshot', id: 'ingest-a' });
        await store.leases.addResource(id, { type: 'ingest', id: 'ingest-a' });
        assert.deepEqual((await store.leases.get(id))?.resources, [
          { type: 'content', id: digest('a') },
          { type: 'ingest', id: 'ingest-a' },
          { type: 'snapshot', id: 'ingest-a' },
        ]);
        await rejectsWith(store.leases.addResource('no-such-lease', { type: 'content', id: digest('a') }), 'NOT_FOUND', (err) => assert.match(err.message, /no-such-lease/));
        await rejectsWith(store.leases.addResource(id, { type: 'content', id: 'sha256:bad' as Digest }), 'INVALID_ARGUMENT');
      });

      it('lists and deletes; delete is idempotent', async () => {
        const a = await store.leases.create({ id: 'a' });
        const b = await store.leases.create({ id: 'b' });
        const byId = (x: { id: string }, y: { id: string }) => (x.id < y.id ? -1 : 1);
        assert.deepEqual([...(await store.leases.list())].sort(byId), [a, b]);
        await store.leases.delete('a');
        await store.leases.delete('a');
        await store.leases.delete('never-existed');
        assert.equal(await store.leases.get('a'), undefined);
        assert.deepEqual(await store.leases.list(), [b]);
      });

      it('rejects a non-positive ttl', async () => {
        await rejectsWith(store.leases.create({ ttlMs: 0 }), 'INVALID_ARGUMENT');
        await rejectsWith(store.leases.create({ ttlMs: -5 }), 'INVALID_ARGUMENT');
        assert.deepEqual(await store.leases.list(), []);
      });
    });

    it('keeps everything across close and reopen', async () => {
      const version = store.schemaVersion();
      const image = (await store.images.put({ name: 'x/y:1', target: manifest('a'), labels: { k: 'v' } })).record;
      const labels = { [RefLabel.config]: digest('c'), [RefLabel.layer(0)]: digest('l0') };
      await store.content.set(digest('a'), labels);
      const lease = await store.leases.create({ id: 'l', ttlMs: 1000 });
      await store.leases.addResource('l', { type: 'content', id: digest('a') });
      await store.images.put({ name: 'x/gone:1', target: manifest('g') });
      await store.images.delete('x/gone:1');

      await reopen();
      assert.equal(store.schemaVersion(), version);
      assert.deepEqual(await store.images.list(), [image]);
      assert.deepEqual(await store.content.get(digest('a')), labels);
      assert.deepEqual(await store.content.references(digest('a')), [digest('c'), digest('l0')]);
      assert.deepEqual(await store.leases.get('l'), { ...lease, resources: [{ type: 'content', id: digest('a') }] });

      const { previous } = await store.images.put({ name: 'x/y:1', target: manifest('b') });
      assert.deepEqual(previous, image, 'an update after reopen sees the stored record');
    });
  });
}
