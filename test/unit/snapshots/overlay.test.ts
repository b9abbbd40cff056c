import assert from 'node:assert/strict';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { lgetxattr } from '../../../src/linux/index.js';
import { withMounts } from '../../../src/mount/index.js';
import { NativeSnapshotter, OverlaySnapshotter } from '../../../src/snapshots/index.js';
import { rejectsWith } from '../../suites/content.js';
import { snapshotterConformance, unmountUnder } from '../../suites/snapshotter.js';
import { crashTests, harness, testBase } from './common.js';

const open = (root: string) => OverlaySnapshotter.open({ root });

snapshotterConformance('OverlaySnapshotter', harness(open));
crashTests('OverlaySnapshotter', open);

describe('OverlaySnapshotter', () => {
  let dir: string;
  let root: string;
  let mnt: string;
  let sn: OverlaySnapshotter;
  const fsOf = (m: { source: string; options: string[] }) => m.options.find((o) => o.startsWith('upperdir='))?.slice('upperdir='.length) ?? m.source;

  before(async () => {
    dir = await mkdtemp(join(await testBase(), 'berth-overlay-'));
    root = join(dir, 'root');
    mnt = join(dir, 'mnt');
    sn = await open(root);
  });
  after(async () => {
    await sn.close();
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  });

  it('returns the mounts of containerd\'s overlay snapshotter', async () => {
    const snaps = join(root, 'snapshots');
    const [bind] = await sn.prepare('s-a');
    assert.equal(bind?.type, 'bind');
    assert.deepEqual(bind?.options, ['rw', 'rbind']);
    const idA = bind!.source.slice(snaps.length + 1, -'/fs'.length);
    assert.match(idA, /^[0-9a-f]{8}$/);
    assert.equal(bind!.source, join(snaps, idA, 'fs'));
    await sn.commit('s-L1', 's-a');

    const [ov] = await sn.prepare('s-b', 's-L1');
    const idB = fsOf(ov!).slice(snaps.length + 1, -'/fs'.length);
    assert.deepEqual(ov, {
      type: 'overlay',
      source: 'overlay',
      options: [...ov!.options.filter((o) => o === 'index=off'), `workdir=${join(snaps, idB, 'work')}`, `upperdir=${join(snaps, idB, 'fs')}`, `lowerdir=${join(snaps, idA, 'fs')}`],
    });
    await sn.commit('s-L2', 's-b');

    assert.deepEqual(await sn.view('s-v1', 's-L1'), [{ type: 'bind', source: join(snaps, idA, 'fs'), options: ['ro', 'rbind'] }]);
    const [v2] = await sn.view('s-v2', 's-L2');
    assert.equal(v2?.type, 'overlay');
    assert.deepEqual(v2?.options.filter((o) => o !== 'index=off'), [`lowerdir=${join(snaps, idB, 'fs')}:${join(snaps, idA, 'fs')}`], 'lowerdirs nearest parent first');
    const [v0] = await sn.view('s-v0');
    assert.deepEqual(v0?.options, ['ro', 'rbind']);
  });

  it('has the kernel write a whiteout into the upper directory, and counts only the layer\'s own files', async () => {
    await sn.prepare('w-a');
    await withMounts(await sn.mounts('w-a'), mnt, async (d) => {
      await writeFile(join(d, 'gone'), 'x'.repeat(50_000));
      await mkdir(join(d, 'dir'));
      await writeFile(join(d, 'dir', 'f'), 'f');
    });
    await sn.commit('w-L1', 'w-a');
    const [m] = await sn.prepare('w-b', 'w-L1');
    await withMounts([m!], mnt, async (d) => {
      await unlink(join(d, 'gone'));
      await writeFile(join(d, 'new'), 'n');
      await rm(join(d, 'dir'), { recursive: true });
      await mkdir(join(d, 'dir'));
    });
    assert.equal(lgetxattr(join(fsOf(m!), 'dir'), 'trusted.overlay.opaque')?.toString(), 'y', 'a replaced lower directory is opaque in the upper directory');
    const wh = await lstat(join(fsOf(m!), 'gone'));
    assert.ok(wh.isCharacterDevice() && wh.rdev === 0, `a deleted lower file is a 0:0 character device in the upper directory (mode ${wh.mode.toString(8)}, rdev ${wh.rdev})`);
    assert.deepEqual((await readdir(fsOf(m!))).sort(), ['dir', 'gone', 'new'], 'the upper directory holds only the changes');
    const u = await sn.usage('w-b');
    assert.equal(u.inodes, 4, `root, the whiteout, the new file and the opaque directory: ${JSON.stringify(u)}`);
    assert.ok(u.size < 50_000, `the lower 50 kB file is not this layer's: ${u.size}`);
  });

  it('gives an active snapshot the owner and mode of the root below it', async () => {
    await sn.prepare('r-a');
    await withMounts(await sn.mounts('r-a'), mnt, (d) => chmod(d, 0o711));
    await sn.commit('r-L1', 'r-a');
    await sn.prepare('r-b', 'r-L1');
    const mode = await withMounts(await sn.mounts('r-b'), mnt, async (d) => (await stat(d)).mode & 0o7777);
    assert.equal(mode.toString(8), '711');
  });

  it('mounts a view of 128 layers, whose absolute lowerdirs exceed a page', async () => {
    let parent: string | undefined;
    for (let i = 0; i < 128; i++) {
      // Written straight into the layer's own directory (what a mount would put there, minus ~30 ms of mount and umount per layer).
      const [m] = await sn.prepare(`deep-${i}`, parent);
      const own = fsOf(m!);
      await writeFile(join(own, `layer-${i}`), String(i));
      await writeFile(join(own, 'which'), `layer ${i}`);
      if (i === 0) await writeFile(join(own, 'bottom'), 'from the bottom layer');
      await sn.commit(`deep-L${i}`, `deep-${i}`);
      parent = `deep-L${i}`;
    }
    const mounts = await sn.view('deep-view', parent);
    assert.equal(mounts.length, 1);
    const lowers = mounts[0]!.options.find((o) => o.startsWith('lowerdir='))!;
    assert.equal(lowers.split(':').length, 128);
    assert.ok(mounts[0]!.options.join(',').length > 4096, `absolute options are ${mounts[0]!.options.join(',').length} bytes`);
    await withMounts(mounts, mnt, async (d) => {
      const names = await readdir(d);
      assert.equal(names.filter((n) => n.startsWith('layer-')).length, 128);
      assert.equal(await readFile(join(d, 'bottom'), 'utf8'), 'from the bottom layer');
      assert.equal(await readFile(join(d, 'which'), 'utf8'), 'layer 127', 'the top layer wins');
      assert.equal(await readFile(join(d, 'layer-0'), 'utf8'), '0');
    });
    // An active snapshot on top of all 128 (upperdir + workdir + 128 lowerdirs) mounts too.
    await sn.prepare('deep-top', parent);
    await withMounts(await sn.mounts('deep-top'), mnt, async (d) => {
      await writeFile(join(d, 'top'), 't');
      assert.equal(await readFile(join(d, 'bottom'), 'utf8'), 'from the bottom layer');
    });
  });

  it('refuses a root whose path overlay options cannot carry', async () => {
    for (const bad of [join(dir, 'a:b'), join(dir, 'a,b')]) await rejectsWith(OverlaySnapshotter.open({ root: bad }), 'INVALID_ARGUMENT');
  });

  it('refuses a root made by the native snapshotter, and the other way round', async () => {
    const nativeRoot = join(dir, 'native');
    await (await NativeSnapshotter.open({ root: nativeRoot })).close();
    await rejectsWith(OverlaySnapshotter.open({ root: nativeRoot }), 'FAILED_PRECONDITION', (err) => assert.match(err.message, /native/));
    await rejectsWith(NativeSnapshotter.open({ root }), 'FAILED_PRECONDITION', (err) => assert.match(err.message, /overlay/));
  });
});
