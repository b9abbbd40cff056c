/**
 * Pull with unpack, `image unpack`, `bundle create`, end to end: real
 * registry, real snapshotter (overlayfs here), real mounts. Bad layers never
 * commit a snapshot nor leave a directory behind; a SIGKILL mid-unpack is
 * redone on the next pull.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { MediaType, chainIds, sha256, type Digest } from '../../src/oci/index.js';
import { assembleImage, busyboxImage, makeImage, makeLayer, rawBlob, type FixtureImage } from '../fixtures/images.js';
import { openTestSystem, runBerth, startBerth } from '../helpers/berth.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultproxy.js';
import { pushImage } from '../helpers/push.js';
import { withSnapshotView } from '../helpers/snapshot-view.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { withTempDir } from '../helpers/tmp.js';
import { seededBytes } from '../fixtures/edge-images.js';

const withRoot = <T>(fn: (root: string) => Promise<T>): Promise<T> => withTempDir('berth-unpack-', fn);

async function snapshots(root: string): Promise<Array<{ key: string; kind: string }>> {
  const { sys } = await openTestSystem(root);
  try {
    return (await (await sys.snapshotter()).snapshotter.list()).map((s) => ({ key: s.key, kind: s.kind }));
  } finally {
    await sys.close();
  }
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('pull with unpack', () => {
  let reg: RegistryHandle;
  let proxy: FaultProxy;
  let busybox: FixtureImage;
  let layered: FixtureImage;

  before(async () => {
    reg = await startRegistry();
    proxy = await startFaultProxy(reg.host);
    busybox = await busyboxImage({ extraLayers: 2 });
    // Layer 1 deletes, replaces and hardlinks into layer 0's files.
    layered = await makeImage({
      layers: [
        [
          { path: 'etc/', type: 'dir', mode: 0o755 },
          { path: 'etc/keep', content: 'keep\n' },
          { path: 'etc/gone', content: 'gone\n' },
          { path: 'opq/', type: 'dir' },
          { path: 'opq/old', content: 'old\n' },
          { path: 'swap', type: 'dir' },
          { path: 'swap/child', content: 'c\n' },
        ],
        [
          { path: 'etc/.wh.gone', content: '' },
          { path: 'opq/.wh..wh..opq', content: '' },
          { path: 'opq/new', content: 'new\n' },
          { path: 'swap', type: 'symlink', linkname: 'etc' },
          { path: 'etc/keep-link', type: 'hardlink', linkname: 'etc/keep' },
        ],
      ],
    });
    await pushImage(reg.url, 'unpack/busybox', 'v1', busybox);
    await pushImage(reg.url, 'unpack/layered', 'v1', layered);
  });
  after(async () => {
    await proxy.stop();
    await reg.stop();
  });

  test('every chain ID is committed; image unpack writes the merged tree', () =>
    withRoot(async (root) => {
      const ref = `${reg.host}/unpack/layered:v1`;
      const pull = await runBerth(root, ['image', 'pull', ref]);
      assert.equal(pull.code, 0, pull.stderr);
      const committed = (await snapshots(root)).filter((s) => s.kind === 'committed').map((s) => s.key).sort();
      assert.deepEqual(committed, chainIds(layered.diffIds).sort());
      assert.ok(!(await snapshots(root)).some((s) => s.kind === 'active'), 'no extraction snapshot left');

      const out = join(root, 'rootfs');
      const unpack = await runBerth(root, ['image', 'unpack', ref, out]);
      assert.equal(unpack.code, 0, unpack.stderr);
      assert.equal(await readFile(join(out, 'etc/keep'), 'utf8'), 'keep\n');
      await assert.rejects(lstat(join(out, 'etc/gone')), /ENOENT/);
      assert.deepEqual((await readdir(join(out, 'opq'))).sort(), ['new']);
      assert.equal(await readlink(join(out, 'swap')), 'etc');
      assert.equal((await stat(join(out, 'etc/keep'))).ino, (await stat(join(out, 'etc/keep-link'))).ino, 'hardlink to a lower file');
      for (const name of await readdir(out)) assert.ok(!name.startsWith('.wh.'), `whiteout ${name} leaked into the rootfs`);
    }));

  test('a hardlink to a lower file with other names: the overlay snapshot copies up one name, a plain directory keeps the group', () =>
    withRoot(async (root) => {
      // See applyLayer's contract: link(2) through an overlay copies the target up,
      // so grp/c joins the copied-up grp/a while grp/b keeps the lower inode.
      const img = await makeImage({
        layers: [
          [
            { path: 'grp/', type: 'dir' },
            { path: 'grp/a', content: 'shared\n', mode: 0o640 },
            { path: 'grp/b', type: 'hardlink', linkname: 'grp/a' },
          ],
          [{ path: 'grp/c', type: 'hardlink', linkname: 'grp/a' }],
        ],
      });
      await pushImage(reg.url, 'unpack/copy-up', 'v1', img);
      const ref = `${reg.host}/unpack/copy-up:v1`;
      const pull = await runBerth(root, ['image', 'pull', ref]);
      assert.equal(pull.code, 0, pull.stderr);
      const [lower, top] = chainIds(img.diffIds) as [Digest, Digest];
      const inodes = async (dir: string) => {
        const out: Record<string, number> = {};
        for (const n of ['a', 'b', 'c']) {
          const st = await lstat(join(dir, 'grp', n)).catch(() => undefined);
          if (!st) continue;
          assert.equal(await readFile(join(dir, 'grp', n), 'utf8'), 'shared\n', n);
          assert.equal(st.mode & 0o7777, 0o640, n);
          out[n] = st.ino;
        }
        return out;
      };
      const merged = await withSnapshotView(root, top, join(root, 'view-top'), inodes);
      assert.deepEqual(Object.keys(merged).sort(), ['a', 'b', 'c']);
      assert.equal(merged.a, merged.c, 'the new name shares the copied-up inode');
      assert.notEqual(merged.a, merged.b, "the lower name keeps the lower layer's inode: the group splits");
      const below = await withSnapshotView(root, lower, join(root, 'view-lower'), inodes);
      assert.deepEqual(Object.keys(below).sort(), ['a', 'b'], 'the lower snapshot is untouched by the copy-up');
      assert.equal(below.a, below.b);

      const out = join(root, 'rootfs');
      const unpack = await runBerth(root, ['image', 'unpack', ref, out]);
      assert.equal(unpack.code, 0, unpack.stderr);
      const plain = await inodes(out);
      assert.ok(plain.a === plain.b && plain.b === plain.c, `one group in a plain directory: ${JSON.stringify(plain)}`);
    }));

  test('busybox: rootfs binary is bit-identical, bundle has config.json and rootfs', () =>
    withRoot(async (root) => {
      const ref = `${reg.host}/unpack/busybox:v1`;
      assert.equal((await runBerth(root, ['image', 'pull', ref])).code, 0);
      const bundle = join(root, 'bundle');
      const res = await runBerth(root, ['bundle', 'create', '--image', ref, bundle]);
      assert.equal(res.code, 0, res.stderr);
      assert.equal(sha(await readFile(join(bundle, 'rootfs/bin/busybox'))), sha(await readFile('/bin/busybox')));
      assert.equal(await readlink(join(bundle, 'rootfs/bin/sh')), 'busybox');
      const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: { args: string[]; env: string[] }; root: { path: string } };
      assert.deepEqual(spec.process.args, ['/bin/sh']);
      assert.equal(spec.root.path, 'rootfs');
      assert.ok(spec.process.env.some((e) => e.startsWith('PATH=')));
      const again = await runBerth(root, ['bundle', 'create', '--image', ref, bundle]);
      assert.equal(again.code, 1, 'refuses a non-empty target');
    }));

  test('a second pull applies nothing; committed chains are not downloaded again', () =>
    withRoot(async (root) => {
      const ref = `${proxy.host}/unpack/busybox:v1`;
      assert.equal((await runBerth(root, ['image', 'pull', ref])).code, 0);
      const { sys, logs } = await openTestSystem(root);
      try {
        // Drop the name and the layer blobs: the snapshots alone must satisfy the next pull.
        await sys.images.remove(ref);
        for (const l of busybox.layers) await sys.content.delete(l.digest);
        const before = proxy.requests.length;
        const res = await (await sys.puller()).pull(ref, { unpack: true });
        assert.equal(res.snapshot, chainIds(busybox.diffIds).at(-1));
        const layerGets = proxy.requests.slice(before).filter((r) => busybox.layers.some((l) => r.path.endsWith(l.digest)));
        assert.deepEqual(layerGets, [], 'layers of committed chains were fetched');
        assert.ok(!logs.some((l) => l.msg === 'layer applied'), 'a layer was applied again');
        // What export's hint says: a pull without unpacking fetches the blobs the snapshots stood in for.
        await (await sys.puller()).pull(ref, { unpack: false });
        for (const l of busybox.layers) assert.ok(await sys.content.info(l.digest), `${l.digest} fetched again`);
      } finally {
        await sys.close();
      }
    }));

  test('faults while a layer is applied as it downloads: the committed tree is still right', () =>
    withRoot(async (root) => {
      const noise = seededBytes('unpack.test.ts', 3 << 20); // incompressible
      const img = await makeImage({
        layers: [[{ path: 'keep', content: 'k\n' }, { path: 'drop', content: 'd\n' }], [{ path: '.wh.drop', content: '' }, { path: 'noise.bin', content: noise }]],
        compression: 'none',
      });
      await pushImage(reg.url, 'unpack/stream', 'v1', img);
      const big = img.layers[1]!.digest;
      for (const faults of [
        [{ kind: 'cut' as const, afterBytes: 1 << 20 }],
        [{ kind: 'cut' as const, afterBytes: 1 << 20 }, { kind: 'ignoreRange' as const }],
      ]) {
        proxy.clearFaults();
        for (const f of faults) proxy.addFault({ ...f, path: new RegExp(`/blobs/${big}$`), times: 1 });
        const dir = join(root, `r${faults.length}`);
        const res = await runBerth(dir, ['image', 'pull', `${proxy.host}/unpack/stream:v1`]);
        proxy.clearFaults();
        assert.equal(res.code, 0, res.stderr);
        assert.ok(!(await snapshots(dir)).some((s) => s.kind === 'active'));
        // The committed snapshot itself, not a fresh unpack from the verified blobs.
        await withSnapshotView(dir, chainIds(img.diffIds).at(-1)!, join(dir, 'view'), async (view) => {
          assert.equal(sha(await readFile(join(view, 'noise.bin'))), sha(noise));
          assert.equal(await readFile(join(view, 'keep'), 'utf8'), 'k\n');
          await assert.rejects(lstat(join(view, 'drop')), /ENOENT/);
        });
      }
    }));

  test('SIGKILL mid-unpack, then a rerun converges to the right tree', () =>
    withRoot(async (root) => {
      // Many files make the unpack long enough to be killed in the middle.
      const files = Array.from({ length: 4000 }, (_, i) => ({ path: `many/d${i % 40}/f${i}`, content: `file ${i}\n` }));
      const big = await makeImage({ layers: [[{ path: 'base', content: 'b\n' }], files] });
      await pushImage(reg.url, 'unpack/many', 'v1', big);
      const ref = `${reg.host}/unpack/many:v1`;
      const { child, done } = startBerth(root, ['image', 'pull', ref]);
      const mounts = join(root, 'run', 'mounts');
      const deadline = Date.now() + 30_000;
      for (;;) {
        const mi = await readFile('/proc/self/mountinfo', 'utf8');
        if (mi.includes(mounts)) break;
        if (Date.now() > deadline) throw new Error('unpack never mounted an extraction snapshot');
        await new Promise((r) => setTimeout(r, 2));
      }
      child.kill('SIGKILL');
      await done;
      const rerun = await runBerth(root, ['image', 'pull', ref]);
      assert.equal(rerun.code, 0, rerun.stderr);
      const list = await snapshots(root);
      assert.ok(!list.some((s) => s.kind === 'active'), `stale extraction left: ${JSON.stringify(list)}`);
      const out = join(root, 'out');
      assert.equal((await runBerth(root, ['image', 'unpack', ref, out])).code, 0);
      let count = 0;
      for (const d of await readdir(join(out, 'many'))) count += (await readdir(join(out, 'many', d))).length;
      assert.equal(count, 4000);
      assert.equal(await readFile(join(out, 'many/d7/f1007'), 'utf8'), 'file 1007\n');
    }));

  describe('bad layers: clear error, exit 1, no snapshot committed, no directory left', () => {
    const cases: Array<[string, () => Promise<FixtureImage>, RegExp]> = [
      [
        'corrupt gzip',
        async () => {
          const good = await makeLayer([{ path: 'a', content: 'a' }], 'gzip', 'oci');
          const bad = Buffer.from(good.blob.data);
          bad.fill(0x55, 20, 60);
          return assembleImage([rawBlob(MediaType.ociLayerGzip, bad)], [good.diffId]);
        },
        /gzip|invalid|corrupt|header|check/i,
      ],
      [
        'diffID mismatch',
        async () => {
          const l = await makeLayer([{ path: 'a', content: 'a' }], 'gzip', 'oci');
          return assembleImage([l.blob], [sha256('not this layer')]);
        },
        /diff ?id|digest/i,
      ],
      [
        'truncated tar',
        async () => {
          const l = await makeLayer([{ path: 'a', content: Buffer.alloc(100_000, 1) }], 'none', 'oci');
          const cut = l.blob.data.subarray(0, 50_000);
          return assembleImage([rawBlob(MediaType.ociLayerGzip, gzipSync(cut))], [sha256(cut)]);
        },
        /truncat|unexpected end|premature/i,
      ],
      [
        'layer count does not match diff_ids',
        async () => {
          const l = await makeLayer([{ path: 'a', content: 'a' }], 'gzip', 'oci');
          return assembleImage([l.blob, l.blob], [l.diffId]);
        },
        /diff_ids/,
      ],
      [
        'unknown layer media type',
        async () => {
          const l = await makeLayer([{ path: 'a', content: 'a' }], 'gzip', 'oci');
          return assembleImage([rawBlob('application/x-not-a-layer', l.blob.data)], [l.diffId]);
        },
        /media type/,
      ],
    ];
    for (const [label, make, pattern] of cases) {
      test(label, () =>
        withRoot(async (root) => {
          const img = await make();
          const repo = `bad/${label.replace(/[^a-z]+/g, '-')}`;
          await pushImage(reg.url, repo, 'v1', img);
          const ref = `${reg.host}/${repo}:v1`;
          const res = await runBerth(root, ['image', 'pull', ref]);
          assert.equal(res.code, 1, `${label}: ${res.stdout}${res.stderr}`);
          assert.match(res.stderr, pattern);
          assert.doesNotMatch(res.stderr, /\n\s+at /);
          assert.deepEqual(await snapshots(root), [], 'a snapshot was left behind');
          const noUnpack = await runBerth(root, ['image', 'pull', '--no-unpack', ref]);
          if (noUnpack.code === 0) {
            const out = join(root, 'out');
            const unpack = await runBerth(root, ['image', 'unpack', ref, out]);
            assert.equal(unpack.code, 1);
            await assert.rejects(lstat(out), /ENOENT/, 'a partial directory was left behind');
            assert.deepEqual((await readdir(root)).filter((n) => n.startsWith('.out')), [], 'temporary directory left behind');
          }
        }));
    }
  });
});
