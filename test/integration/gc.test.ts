/**
 * berth gc against real parts: images pulled from docker-registry, unpacked
 * into overlayfs snapshots, a container running under runc. What an image
 * name, a container or a live lease uses stays; the rest goes, shared
 * layers only with their last user.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { collectGarbage } from '../../src/gc/index.js';
import { chainIds } from '../../src/oci/chainid.js';
import type { LeaseHolder } from '../../src/metadata/store.js';
import { sha256, type Digest } from '../../src/oci/digest.js';
import type { ContentStore } from '../../src/content/store.js';
import { busyboxLayerFiles, makeImage, type FixtureImage } from '../fixtures/images.js';
import { openTestSystem } from '../helpers/berth.js';
import { berthOk, eventually, removeAll, startDaemon, storedEvents } from '../helpers/containers.js';
import { pushImage } from '../helpers/push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { withTempDir } from '../helpers/tmp.js';

let reg: RegistryHandle;
let imgA: FixtureImage;
let imgB: FixtureImage;
let refA: string;
let refB: string;

before(async () => {
  reg = await startRegistry();
  const base = await busyboxLayerFiles();
  imgA = await makeImage({ layers: [base, [{ path: 'a.txt', content: 'only in A\n' }]] });
  imgB = await makeImage({ layers: [base, [{ path: 'b.txt', content: 'only in B\n' }]] });
  await pushImage(reg.url, 'gc/a', '1', imgA);
  await pushImage(reg.url, 'gc/b', '1', imgB);
  refA = `${reg.host}/gc/a:1`;
  refB = `${reg.host}/gc/b:1`;
});
after(() => reg?.stop());

const blobsOf = (img: FixtureImage): Digest[] => [img.digest, img.config.digest, ...img.layers.map((l) => l.digest)];
const blobPath = (root: string, d: Digest): string => join(root, 'lib', 'content', 'blobs', 'sha256', d.slice('sha256:'.length));
const present = async (root: string, d: Digest): Promise<boolean> => stat(blobPath(root, d)).then(() => true, () => false);

/** Stores `text` as a blob; its digest. */
async function putText(content: ContentStore, text: string): Promise<Digest> {
  const data = Buffer.from(text);
  const digest = sha256(data);
  await content.put({ digest, size: data.length }, data);
  return digest;
}

async function committedSnapshots(root: string): Promise<string[]> {
  const t = await openTestSystem(root);
  try {
    return (await (await t.sys.snapshotter()).snapshotter.list()).filter((s) => s.kind === 'committed').map((s) => s.key).sort();
  } finally {
    await t.sys.close();
  }
}

describe('berth gc', () => {
  test('keeps what images and containers use, removes the rest; a shared layer goes with its last user', async () => {
    await withTempDir('berth-gc', async (root) => {
      const names = ['user'];
      try {
        await berthOk(root, ['image', 'pull', refA]);
        await berthOk(root, ['image', 'pull', refB]);
        const [base, topA] = chainIds(imgA.diffIds);
        const topB = chainIds(imgB.diffIds)[1]!;
        assert.deepEqual(await committedSnapshots(root), [base!, topA!, topB].sort());
        assert.match(await berthOk(root, ['gc']), /^removed 0 blobs, 0 snapshots, 0 partial downloads; 0 B of content$/m, 'both images are named');

        // A's name goes, but a container runs from it; B goes altogether.
        await berthOk(root, ['run', '-d', '--name', 'user', refA, '--', 'sleep', '600']);
        await berthOk(root, ['image', 'rm', refA, refB]);
        const onlyB = [imgB.digest, imgB.config.digest, imgB.layers[1]!.digest];
        const dry = JSON.parse(await berthOk(root, ['-o', 'json', 'gc', '--dry-run'])) as { blobs: Array<{ digest: string }>; snapshots: string[] };
        assert.deepEqual(dry.blobs.map((b) => b.digest).sort(), [...onlyB].sort(), 'B\'s manifest, config and own layer; not the shared base');
        assert.deepEqual(dry.snapshots, [topB]);
        for (const d of blobsOf(imgB)) assert.ok(await present(root, d), `a dry run removes nothing: ${d}`);

        const text = await berthOk(root, ['gc']);
        assert.match(text, /^removed 3 blobs, 1 snapshot, 0 partial downloads; /m, text);
        for (const d of onlyB) assert.equal(await present(root, d), false, `${d} removed`);
        for (const d of blobsOf(imgA)) assert.ok(await present(root, d), `${d} kept for the container`);
        assert.deepEqual(await committedSnapshots(root), [base!, topA!].sort());
        assert.match(await berthOk(root, ['content', 'verify']), /^4 blobs good, 0 corrupt$/m);
        assert.match(await berthOk(root, ['exec', 'user', '--', 'cat', '/a.txt']), /only in A/);

        // The container goes: so does everything of A.
        await berthOk(root, ['rm', '-f', 'user']);
        assert.match(await berthOk(root, ['gc']), /^removed 4 blobs, 2 snapshots, 0 partial downloads; /m);
        for (const d of blobsOf(imgA)) assert.equal(await present(root, d), false, `${d} removed`);
        assert.deepEqual(await committedSnapshots(root), []);

        // What is gone comes back with a pull.
        await berthOk(root, ['image', 'pull', refB]);
        assert.match(await berthOk(root, ['run', '--rm', refB, '--', 'cat', '/b.txt']), /only in B/);
      } finally {
        await removeAll(root, names);
      }
    });
  });

  test('a daemon collects garbage a while after a container it removes was the last user of an image', async () => {
    await withTempDir('berth-gc', async (root) => {
      const daemon = await startDaemon(root, 'info', ['--gc-delay', '500ms']);
      try {
        await berthOk(root, ['image', 'pull', refA]);
        await berthOk(root, ['run', '-d', '--name', 'last', refA, '--', 'sleep', '600']);
        await berthOk(root, ['image', 'rm', refA]);
        await new Promise((r) => setTimeout(r, 1500));
        for (const d of blobsOf(imgA)) assert.ok(await present(root, d), `${d} kept while the container runs`);
        await berthOk(root, ['rm', '-f', 'last']); // served by the daemon: its container.removed schedules a collection
        const done = await eventually('the daemon to collect', async () => {
          const e = (await storedEvents(root)).find((s) => s.event.type === 'gc.done')?.event;
          return e?.type === 'gc.done' ? e : undefined;
        }, 20_000, 200);
        const sizes = imgA.size + imgA.config.size + imgA.layers.reduce((n, l) => n + l.size, 0);
        assert.deepEqual([done.blobs, done.snapshots, done.ingests, done.bytes], [4, 2, 0, sizes]);
        for (const d of blobsOf(imgA)) assert.equal(await present(root, d), false, `${d} removed`);
        assert.deepEqual(await committedSnapshots(root), []);
        const metrics = await new Promise<string>((resolve, reject) =>
          execFile('curl', ['-sS', '--unix-socket', join(root, 'run', 'api.sock'), 'http://berth/metrics'], (err, out) => (err ? reject(err) : resolve(out))),
        );
        assert.match(metrics, /^berth_gc_runs_total 1$/m);
        assert.match(metrics, new RegExp(`^berth_gc_removed_bytes_total ${sizes}$`, 'm'));
      } finally {
        await removeAll(root, ['last']);
        const r = await daemon.stop();
        assert.equal(r.code, 0, r.stderr);
      }
    });
  });

  test('a pull in progress (a live lease) holds snapshot collection back; a failed one (its lease settled) only keeps its content', async () => {
    await withTempDir('berth-gc', async (root) => {
      await berthOk(root, ['image', 'pull', refB]);
      await berthOk(root, ['image', 'rm', refB]);
      const t = await openTestSystem(root);
      try {
        const { sys } = t;
        const { snapshotter, name } = await sys.snapshotter();
        const deps = { content: sys.content, metadata: sys.metadata, snapshotter, snapshotterName: name, logger: sys.logger };
        // What a pull stored before it failed (a config would keep its snapshots through its label).
        const fetched = await putText(sys.content, 'a manifest the failed pull stored\n');
        const lease = await sys.metadata.leases.create({ ttlMs: 3600_000 });
        await sys.metadata.leases.addResource(lease.id, { type: 'content', id: fetched });
        const busy = await collectGarbage(deps, { dryRun: true });
        assert.deepEqual(busy.snapshots, []);
        assert.deepEqual(busy.skipped.map((k) => k.what).sort(), chainIds(imgB.diffIds).map((c) => `snapshot ${c}`).sort());

        // Unsettled, but its holder is gone: killed (a pid that exited), or a boot ago (a power cut). This process holds.
        const exited = spawnSync('true').pid!;
        const withHolders = { ...deps, holderRunning: sys.holderRunning };
        const holds = async (holder: LeaseHolder): Promise<boolean> => {
          const l = await sys.metadata.leases.create({ ttlMs: 3600_000, holder });
          try {
            return (await collectGarbage(withHolders, { dryRun: true })).snapshots.length === 0;
          } finally {
            await sys.metadata.leases.delete(l.id);
          }
        };
        await sys.metadata.leases.settle(lease.id);
        assert.equal(await holds({ pid: exited, boot: sys.leaseHolder.boot }), false, 'a killed pull');
        assert.equal(await holds({ pid: process.pid, boot: 'another boot' }), false, 'a pull before a power cut');
        assert.equal(await holds(sys.leaseHolder), true, 'a pull of this process');

        const settled = await collectGarbage(deps);
        assert.deepEqual(settled.snapshots.sort(), [...chainIds(imgB.diffIds)].sort());
        assert.deepEqual(settled.blobs.map((b) => b.digest).sort(), blobsOf(imgB).sort());
        assert.ok(await sys.content.info(fetched), 'the settled lease still keeps its blob');
        assert.deepEqual(settled.leases, [], 'and is not expired');
      } finally {
        await t.sys.close();
      }
    });
  });

  test('a live lease keeps its content, an expired one does not; partial downloads go once a day old', async () => {
    await withTempDir('berth-gc', async (root) => {
      const t = await openTestSystem(root);
      try {
        const { sys } = t;
        const put = (text: string): Promise<Digest> => putText(sys.content, text);
        const leased = await put('a pull in progress wrote this\n');
        const expired = await put('a crashed pull wrote this\n');
        const live = await sys.metadata.leases.create({ ttlMs: 48 * 3600_000 });
        await sys.metadata.leases.addResource(live.id, { type: 'content', id: leased });
        const dead = await sys.metadata.leases.create({ ttlMs: 1 });
        await sys.metadata.leases.addResource(dead.id, { type: 'content', id: expired });
        for (const ref of ['pull-a', 'pull-b']) {
          const w = await sys.content.writer(ref, { digest: `sha256:${'0'.repeat(64)}` as Digest, size: 100 });
          await new Promise<void>((resolve, reject) => w.stream().end(Buffer.alloc(10), (err?: Error | null) => (err ? reject(err) : resolve())));
          await w.close();
        }
        assert.deepEqual((await sys.content.ingests()).map((i) => [i.ref, i.offset]).sort(), [['pull-a', 10], ['pull-b', 10]]);
        const later = new Date(Date.now() + 36 * 3600_000);
        const { snapshotter, name } = await sys.snapshotter();
        const deps = { content: sys.content, metadata: sys.metadata, snapshotter, snapshotterName: name, logger: sys.logger };
        // A day and a half on (the live lease has 48 h): the partial downloads are stale by then.
        const report = await collectGarbage({ ...deps, now: () => later }, { dryRun: true });
        assert.deepEqual(report.blobs.map((b) => b.digest), [expired]);
        assert.deepEqual(report.ingests.sort(), ['pull-a', 'pull-b']);
        assert.equal(report.bytes, 26 + 20);

        const now = await collectGarbage(deps);
        assert.deepEqual(now.blobs.map((b) => b.digest), [expired], 'the expired lease protects nothing');
        assert.deepEqual(now.leases, [dead.id], 'and goes');
        assert.equal(await sys.metadata.leases.get(dead.id), undefined);
        assert.deepEqual(now.ingests, [], 'partial downloads of the last day are kept for a later pull to resume');
        assert.ok(await sys.content.info(leased), 'the live lease keeps its blob');
        assert.equal(await sys.content.info(expired), undefined);
        assert.deepEqual(await sys.metadata.content.get(expired), {});

        await sys.metadata.leases.delete(live.id);
        const afterLease = await collectGarbage({ ...deps, now: () => later });
        assert.deepEqual(afterLease.blobs.map((b) => b.digest), [leased]);
        assert.deepEqual(afterLease.ingests.sort(), ['pull-a', 'pull-b']);
        assert.deepEqual(await sys.content.ingests(), []);

        // A pull that starts while the collection sweeps names a doomed blob in its lease: it gets the blob back.
        const wanted = await put('a pull is about to use this\n');
        let lists = 0;
        const leasesSeen = Object.create(sys.metadata.leases, {
          list: {
            value: async () => {
              if (++lists === 2) await sys.metadata.leases.addResource((await sys.metadata.leases.create({ ttlMs: 3600_000 })).id, { type: 'content', id: wanted });
              return sys.metadata.leases.list();
            },
          },
        }) as typeof sys.metadata.leases;
        const raced = await collectGarbage({ ...deps, metadata: Object.create(sys.metadata, { leases: { value: leasesSeen } }) as typeof sys.metadata });
        assert.equal(lists, 2, 'the leases are read for the roots, then once more with the blob aside');
        assert.deepEqual(raced.blobs, []);
        assert.deepEqual(raced.skipped.map((k) => k.what), [`blob ${wanted}`]);
        assert.equal((await sys.content.readBytes(wanted, 100)).toString(), 'a pull is about to use this\n', 'back, whole');
        assert.ok(await sys.content.verify(wanted));
      } finally {
        await t.sys.close();
      }
    });
  });
});
