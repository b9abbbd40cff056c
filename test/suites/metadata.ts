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
import type { BerthEvent } from '../../src/events.js';
import { RefLabel, type ContainerRecord, type MetadataStore } from '../../src/metadata/store.js';
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

      it('records its holder; a malformed holder is INVALID_ARGUMENT', async () => {
        const lease = await store.leases.create({ id: 'held', holder: { pid: 4242, boot: 'b0' } });
        assert.deepEqual(lease.holder, { pid: 4242, boot: 'b0' });
        assert.deepEqual((await store.leases.get('held'))?.holder, { pid: 4242, boot: 'b0' });
        assert.equal((await store.leases.create({ id: 'anonymous' })).holder, undefined);
        await rejectsWith(store.leases.create({ id: 'bad', holder: { pid: -1, boot: 'b0' } }), 'INVALID_ARGUMENT');
        assert.equal(await store.leases.get('bad'), undefined);
      });

      it('settles: settledAt set once, resources and expiry kept; NOT_FOUND for an unknown lease', async () => {
        const lease = await store.leases.create({ id: 'failed-pull', ttlMs: 60_000 });
        await store.leases.addResource(lease.id, { type: 'content', id: digest('a') });
        assert.equal((await store.leases.get(lease.id))?.settledAt, undefined);
        await store.leases.settle(lease.id);
        const settled = (await store.leases.get(lease.id))!;
        assert.ok(settled.settledAt && Date.parse(settled.settledAt) >= Date.parse(lease.createdAt), `settledAt ${settled.settledAt}`);
        assert.deepEqual({ ...settled, settledAt: undefined }, { ...lease, settledAt: undefined, resources: [{ type: 'content', id: digest('a') }] });
        await store.leases.settle(lease.id);
        assert.equal((await store.leases.get(lease.id))?.settledAt, settled.settledAt, 'settling again keeps the first time');
        await rejectsWith(store.leases.settle('no-such-lease'), 'NOT_FOUND');
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

    describe('containers', () => {
      const container = (name: string, over: Partial<ContainerRecord> = {}): Omit<ContainerRecord, 'createdAt' | 'updatedAt'> => ({
        name,
        id: `id-${name}`,
        image: 'registry.local:5000/app:1',
        imageDigest: digest('image'),
        chainId: digest('chain'),
        config: { env: { A: '1' }, args: ['sleep', '10'] },
        restart: { policy: 'on-failure', maxRetries: 2, initialMs: 1000, maxMs: 60_000 },
        stopSignal: 15,
        labels: { app: 'web' },
        desired: 'stopped',
        status: { restartCount: 0 },
        ...over,
      });

      it('creates a record and returns it from get and list', async () => {
        assert.equal(await store.containers.get('web'), undefined);
        assert.deepEqual(await store.containers.list(), []);
        const before = Date.now();
        const rec = await store.containers.create(container('web'));
        assert.deepEqual({ ...rec, createdAt: undefined, updatedAt: undefined }, { ...container('web'), createdAt: undefined, updatedAt: undefined });
        assert.equal(rec.createdAt, rec.updatedAt);
        assert.ok(Date.parse(rec.createdAt) >= before - 1000 && Date.parse(rec.createdAt) <= Date.now() + 1000, rec.createdAt);
        assert.deepEqual(await store.containers.get('web'), rec);
        assert.deepEqual(await store.containers.list(), [rec]);
      });

      it('refuses a second create of a name: ALREADY_EXISTS naming it, the first record kept', async () => {
        const first = await store.containers.create(container('web'));
        await rejectsWith(store.containers.create(container('web', { id: 'other', labels: {} })), 'ALREADY_EXISTS', (err) => assert.match(err.message, /"web"/));
        assert.deepEqual(await store.containers.get('web'), first);
        assert.equal((await store.containers.list()).length, 1);
      });

      it('lists every container, by name', async () => {
        for (const n of ['db', 'web', 'cache', 'api']) await store.containers.create(container(n));
        assert.deepEqual((await store.containers.list()).map((r) => r.name).sort(), ['api', 'cache', 'db', 'web']);
      });

      it('updates with a function of the stored record, keeping createdAt and setting updatedAt', async () => {
        const first = await store.containers.create(container('web'));
        await sleep(10);
        const updated = await store.containers.update('web', (r) => ({ ...r, desired: 'running', status: { ...r.status, restartCount: r.status.restartCount + 1, startedAt: '2024-01-01T00:00:00.000Z' } }));
        assert.equal(updated.desired, 'running');
        assert.deepEqual(updated.status, { restartCount: 1, startedAt: '2024-01-01T00:00:00.000Z' });
        assert.equal(updated.createdAt, first.createdAt);
        assert.ok(Date.parse(updated.updatedAt) > Date.parse(first.updatedAt), `${updated.updatedAt} after ${first.updatedAt}`);
        assert.deepEqual(await store.containers.get('web'), updated);
        // A field set to undefined is gone (a cleared nextRestartAt must not come back).
        await store.containers.update('web', (r) => ({ ...r, status: { ...r.status, nextRestartAt: '2024-01-01T00:00:01.000Z' } }));
        const cleared = await store.containers.update('web', (r) => ({ ...r, status: { ...r.status, nextRestartAt: undefined } }));
        assert.equal((await store.containers.get('web'))?.status.nextRestartAt, undefined);
        assert.equal(cleared.status.nextRestartAt, undefined);
      });

      it('leaves the record as it is when the function returns undefined, even if it changed its copy', async () => {
        const first = await store.containers.create(container('web'));
        const result = await store.containers.update('web', (r) => {
          r.desired = 'running';
          r.status.restartCount = 99;
          return undefined;
        });
        assert.deepEqual(result, first);
        assert.deepEqual(await store.containers.get('web'), first);
      });

      it('loses no update when updates run concurrently', async () => {
        await store.containers.create(container('web'));
        await Promise.all(Array.from({ length: 20 }, () => store.containers.update('web', (r) => ({ ...r, status: { ...r.status, restartCount: r.status.restartCount + 1 } }))));
        assert.equal((await store.containers.get('web'))?.status.restartCount, 20);
      });

      it('update of an unknown container is NOT_FOUND naming it, and creates nothing', async () => {
        await rejectsWith(store.containers.update('ghost', (r) => r), 'NOT_FOUND', (err) => assert.match(err.message, /ghost/));
        assert.equal(await store.containers.get('ghost'), undefined);
      });

      it('deletes; deleting an absent container is fine', async () => {
        await store.containers.create(container('web'));
        const db = await store.containers.create(container('db'));
        await store.containers.delete('web');
        await store.containers.delete('web');
        await store.containers.delete('never-existed');
        assert.equal(await store.containers.get('web'), undefined);
        assert.deepEqual(await store.containers.list(), [db]);
        // The name is free again.
        const again = await store.containers.create(container('web', { id: 'id-web-2' }));
        assert.equal((await store.containers.get('web'))?.id, 'id-web-2');
        assert.deepEqual(await store.containers.get('web'), again);
      });

      it('keeps containers across close and reopen', async () => {
        const rec = await store.containers.create(container('web'));
        const updated = await store.containers.update('web', (r) => ({ ...r, status: { ...r.status, exitCode: 3, oomKilled: true } }));
        await reopen();
        assert.deepEqual(await store.containers.get('web'), updated);
        assert.equal(updated.createdAt, rec.createdAt);
      });
    });

    describe('event log', () => {
      const ev = (i: number): BerthEvent => ({ type: 'container.exited', name: `c${i}`, id: `id${i}`, exitCode: i % 256, oomKilled: i % 2 === 0 });

      it('is empty at first: lastSeq 0, since(0) nothing', async () => {
        assert.equal(await store.events.lastSeq(), 0);
        assert.deepEqual(await store.events.since(0), []);
        assert.deepEqual(await store.events.append([]), []);
        assert.equal(await store.events.lastSeq(), 0);
      });

      it('numbers events from 1 in order of appending, with the time, and returns them as stored', async () => {
        const before = Date.now();
        const a = await store.events.append([ev(1), ev(2)]);
        const b = await store.events.append([ev(3)]);
        assert.deepEqual(a.map((e) => e.seq), [1, 2]);
        assert.deepEqual(b.map((e) => e.seq), [3]);
        for (const e of [...a, ...b]) assert.ok(Date.parse(e.time) >= before - 1000 && Date.parse(e.time) <= Date.now() + 1000, e.time);
        assert.deepEqual([...a, ...b].map((e) => e.event), [ev(1), ev(2), ev(3)]);
        assert.equal(await store.events.lastSeq(), 3);
        assert.deepEqual(await store.events.since(0), [...a, ...b]);
      });

      it('since(after) returns events after seq, oldest first, at most limit', async () => {
        for (let i = 1; i <= 25; i++) await store.events.append([ev(i)]);
        assert.deepEqual((await store.events.since(20)).map((e) => e.seq), [21, 22, 23, 24, 25]);
        assert.deepEqual((await store.events.since(3, 4)).map((e) => e.seq), [4, 5, 6, 7]);
        assert.deepEqual((await store.events.since(0, 1)).map((e) => e.event), [ev(1)]);
        assert.deepEqual(await store.events.since(25), []);
        assert.deepEqual(await store.events.since(1000), []);
        // Paging with since(last seq seen) reads every event once.
        const paged: number[] = [];
        for (let after = 0; ; ) {
          const page = await store.events.since(after, 7);
          if (!page.length) break;
          paged.push(...page.map((e) => e.seq));
          after = page.at(-1)!.seq;
        }
        assert.deepEqual(paged, Array.from({ length: 25 }, (_, i) => i + 1));
      });

      it('keeps numbering across close and reopen, reusing no seq', async () => {
        await store.events.append([ev(1), ev(2)]);
        await reopen();
        assert.equal(await store.events.lastSeq(), 2);
        assert.deepEqual((await store.events.append([ev(3)])).map((e) => e.seq), [3]);
        assert.deepEqual((await store.events.since(0)).map((e) => e.event), [ev(1), ev(2), ev(3)]);
      });

      it('stays bounded: the oldest are dropped first, the newest kept in order', async () => {
        // More than any sensible retention (LmdbMetadataStore keeps 10 000 by default).
        const total = 12_000;
        for (let i = 0; i < total; i += 500) await store.events.append(Array.from({ length: 500 }, (_, j) => ev(i + j + 1)));
        assert.equal(await store.events.lastSeq(), total);
        const kept: number[] = [];
        for (let after = 0; ; ) {
          const page = await store.events.since(after, 1000);
          if (!page.length) break;
          kept.push(...page.map((e) => e.seq));
          after = page.at(-1)!.seq;
        }
        assert.ok(kept.length < total, `all ${total} events are still kept`);
        assert.ok(kept.length >= 1000, `only ${kept.length} events kept`);
        assert.deepEqual(kept, Array.from({ length: kept.length }, (_, i) => total - kept.length + 1 + i), 'the kept events are the newest, contiguous');
        assert.deepEqual((await store.events.since(total - 1))[0]?.event, ev(total));
        // Reading from before the oldest kept event starts at the oldest kept one.
        assert.equal((await store.events.since(0, 1))[0]?.seq, kept[0]);
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
