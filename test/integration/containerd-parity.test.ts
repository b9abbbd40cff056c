/**
 * Root filesystems compared entry by entry with containerd 1.6: each
 * edge-case image (test/fixtures/edge-images.ts) and the busybox fixture is
 * pushed to a real registry, pulled by a private containerd with the
 * overlayfs snapshotter and mounted read-only (`ctr images mount`), and
 * pulled by berth, whose trees are read twice: `berth image unpack REF DIR`
 * (a plain directory) and a read-only view of the image's top snapshot,
 * mounted from the mounts berth's snapshotter returns. Every tree is
 * described by test/helpers/tree.ts (type, mode with special bits, uid:gid,
 * size, sha256, link target, device numbers, hardlink groups, xattrs,
 * mtimes of non-directories) and compared; a mismatch prints the
 * differences line by line. Each fixture's own expectations (paths present
 * and absent, hardlink groups) are checked against containerd's tree too,
 * so a fixture that stopped meaning what its name says is caught.
 *
 * Images containerd cannot pull (EdgeImage.containerdFails) are checked
 * against their expectations, and berth's two trees against each other.
 */
import assert from 'node:assert/strict';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chainIds } from '../../src/oci/chainid.js';
import type { Digest } from '../../src/oci/digest.js';
import { mountImage, startContainerd, type Containerd } from '../bench/common/containerd.js';
import { edgeImages, type EdgeImage } from '../fixtures/edge-images.js';
import { busyboxImage } from '../fixtures/images.js';
import { runBerth } from '../helpers/berth.js';
import { pushImage } from '../helpers/push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { withSnapshotView } from '../helpers/snapshot-view.js';
import { tempDir } from '../helpers/tmp.js';
import { describeTree, diffTrees, overlayLeaks, type TreeEntry } from '../helpers/tree.js';

const MAX_DIFF_LINES = 80;

let work: { path: string; cleanup(): Promise<void> };
let registry: RegistryHandle;
let containerd: Containerd;
let berthRoot: string;
const images: EdgeImage[] = [];

function refOf(name: string): string {
  return `${registry.host}/edge/${name}:v1`;
}

async function containerdTree(name: string): Promise<TreeEntry[]> {
  const ref = refOf(name);
  await containerd.ctr(['images', 'pull', '--plain-http', ref]);
  const dir = join(work.path, 'ctr-mnt', name);
  const unmount = await mountImage(containerd, ref, dir);
  try {
    return await describeTree(dir);
  } finally {
    await unmount();
  }
}

async function berthPull(name: string): Promise<void> {
  const res = await runBerth(berthRoot, ['image', 'pull', refOf(name)]);
  assert.equal(res.code, 0, `berth image pull ${refOf(name)} failed:\n${res.stderr}`);
}

async function berthUnpackTree(name: string): Promise<TreeEntry[]> {
  const dir = join(work.path, 'berth-unpack', name);
  await mkdir(join(work.path, 'berth-unpack'), { recursive: true });
  const res = await runBerth(berthRoot, ['image', 'unpack', refOf(name), dir]);
  assert.equal(res.code, 0, `berth image unpack ${refOf(name)} ${dir} failed:\n${res.stderr}`);
  try {
    return await describeTree(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A read-only view of the image's top snapshot (its last chain ID), mounted and described. */
async function berthSnapshotTree(name: string, diffIds: readonly Digest[]): Promise<TreeEntry[]> {
  const top = chainIds(diffIds).at(-1)!;
  return withSnapshotView(berthRoot, top, join(work.path, 'berth-mnt', name), (dir) => describeTree(dir));
}

function assertSame(expected: TreeEntry[], actual: TreeEntry[], labels: [string, string]): void {
  const diff = diffTrees(expected, actual, labels);
  const shown = diff.length > MAX_DIFF_LINES ? [...diff.slice(0, MAX_DIFF_LINES), `… and ${diff.length - MAX_DIFF_LINES} more`] : diff;
  assert.deepEqual(shown, [], `${labels[1]} differs from ${labels[0]} (${diff.length} difference(s)):\n  ${shown.join('\n  ')}\n`);
}

function assertNoLeaks(tree: TreeEntry[], what: string): void {
  const leaks = overlayLeaks(tree);
  assert.deepEqual(leaks, [], `${what} shows overlay internals:\n  ${leaks.join('\n  ')}`);
}

/** The fixture's own claims: paths present and absent, and (when given) the exact hardlink groups. */
function assertExpectations(img: EdgeImage, tree: TreeEntry[], what: string): void {
  const paths = new Set(tree.map((e) => e.path));
  assert.deepEqual(img.present.filter((p) => !paths.has(p)), [], `${what}: paths that ${img.name} must have are missing`);
  assert.deepEqual(img.absent.filter((p) => paths.has(p)), [], `${what}: paths that ${img.name} must not have exist`);
  if (img.hardlinkGroups) {
    const groups = [...new Set(tree.filter((e) => e.links).map((e) => JSON.stringify(e.links)))].map((g) => JSON.parse(g) as string[]).sort((a, b) => (a[0]! < b[0]! ? -1 : 1));
    assert.deepEqual(groups, img.hardlinkGroups, `${what}: hardlink groups`);
  }
}

describe('root filesystems match containerd 1.6 (overlayfs snapshotter)', () => {
  before(async () => {
    work = await tempDir('berth-parity-');
    berthRoot = join(work.path, 'berth');
    registry = await startRegistry();
    containerd = await startContainerd(join(work.path, 'containerd'));
    images.push(...(await edgeImages()));
    images.push({
      name: 'busybox',
      about: 'the busybox fixture (3 layers)',
      image: await busyboxImage({ extraLayers: 2 }),
      present: ['bin/busybox', 'bin/sh', 'etc/passwd', 'etc/layer-2', 'tmp'],
      absent: [],
    });
    for (const img of images) await pushImage(registry.url, `edge/${img.name}`, 'v1', img.image);
  });

  after(async () => {
    await containerd?.stop();
    await registry?.stop();
    await work?.cleanup();
  });

  // The list is built in before(); node:test needs the test names now, so they come from the fixture names.
  const names = [
    'whiteouts', 'opaque', 'replace', 'hardlinks', 'hardlinks-to-lower', 'symlinks', 'devices', 'owners-modes', 'xattrs', 'mtimes',
    'long-names-pax', 'long-names-gnu', 'sizes-zstd', 'mixed-compression', 'docker-format', 'busybox',
  ];

  test('the test list names every fixture image', () => {
    assert.deepEqual(images.map((i) => i.name).sort(), [...names].sort());
  });

  for (const name of names) {
    test(name, async (t) => {
      const img = images.find((i) => i.name === name);
      assert.ok(img, `no fixture image named ${name}`);
      t.diagnostic(img.about);

      let ctrTree: TreeEntry[] | undefined;
      if (img.containerdFails) {
        t.diagnostic(`containerd not compared: ${img.containerdFails}`);
      } else {
        ctrTree = await containerdTree(name);
        assertNoLeaks(ctrTree, 'containerd');
        assertExpectations(img, ctrTree, 'containerd');
      }

      let unpacked: TreeEntry[] | undefined;
      await t.test('berth image pull', () => berthPull(name));

      await t.test('berth image unpack', async () => {
        unpacked = await berthUnpackTree(name);
        assertNoLeaks(unpacked, 'berth image unpack');
        if (ctrTree) assertSame(ctrTree, unpacked, ['containerd', 'berth image unpack']);
        else assertExpectations(img, unpacked, 'berth image unpack');
      });

      await t.test('berth snapshot view', async () => {
        const view = await berthSnapshotTree(name, img.image.diffIds);
        assertNoLeaks(view, 'berth snapshot view');
        if (ctrTree) assertSame(ctrTree, view, ['containerd', 'berth snapshot view']);
        else {
          assertExpectations(img, view, 'berth snapshot view');
          if (unpacked) assertSame(unpacked, view, ['berth image unpack', 'berth snapshot view']);
        }
      });
    });
  }
});
