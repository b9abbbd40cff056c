/**
 * Conformance tests every Snapshotter must pass. An implementation's test
 * file calls snapshotterConformance with a factory that opens a fresh,
 * empty snapshotter on `root`; reopen() closes the current one and opens
 * the same root again (the new one replaces it); cleanup() closes whatever
 * is open, unmounts anything left mounted under root, and removes it.
 *
 * Files are written the way an unpacker writes them: through the mounts the
 * snapshotter returns, mounted by mount/. So for overlay the kernel makes
 * the whiteouts and opaque directories, and a view of the top layer shows
 * whether they were made right.
 *
 * cleanup() is checked against the layout both local snapshotters share:
 * <root>/snapshots/<id>, ids of 8 hex digits.
 */
import assert from 'node:assert/strict';
import { lstat, mkdir, readdir, readFile, readlink, rm, symlink, writeFile, link, unlink } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { mountPoints, unmount, withMounts } from '../../src/mount/index.js';
import type { Snapshotter } from '../../src/snapshots/snapshotter.js';
import { tempDir } from '../helpers/tmp.js';
import { rejectsWith } from './content.js';

export interface SnapshotterHarness {
  sn: Snapshotter;
  root: string;
  reopen(): Promise<Snapshotter>;
  cleanup(): Promise<void>;
}

/** Unmounts every mount point at or under `dir`, deepest first. */
export async function unmountUnder(dir: string): Promise<void> {
  const under = (await mountPoints()).filter((p) => p === dir || p.startsWith(dir + '/'));
  for (const p of under.reverse()) await unmount(p, { lazy: true });
}

/** The tree under `dir` as path → "dir", "file:<content>" or "link:<target>", sorted. */
export async function readTree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const st = await lstat(p);
      const rel = relative(dir, p);
      if (st.isDirectory()) {
        out[rel] = 'dir';
        await walk(p);
      } else if (st.isSymbolicLink()) out[rel] = `link:${await readlink(p)}`;
      else if (st.isFile()) out[rel] = `file:${await readFile(p, 'utf8')}`;
      else out[rel] = `other:${st.mode.toString(8)}`;
    }
  };
  await walk(dir);
  return out;
}

/** The entries of <root>/snapshots. */
async function snapshotDirs(root: string): Promise<string[]> {
  return (await readdir(join(root, 'snapshots'))).sort();
}

async function assertErrno(p: Promise<unknown>, code: string, what: string): Promise<void> {
  await assert.rejects(p, (err: NodeJS.ErrnoException) => {
    assert.equal(err.code, code, `${what}: expected ${code}, got ${String(err)}`);
    return true;
  });
}

export function snapshotterConformance(name: string, make: () => Promise<SnapshotterHarness>): void {
  describe(`Snapshotter conformance: ${name}`, () => {
    let h: SnapshotterHarness;
    let sn: Snapshotter;
    let mnt: { path: string; cleanup(): Promise<void> };
    const reopen = async () => (sn = await h.reopen());
    /** Runs fn with the snapshot `key` mounted, the way an unpacker writes a layer. */
    const through = async <T>(key: string, fn: (dir: string) => Promise<T>): Promise<T> => withMounts(await sn.mounts(key), mnt.path, fn);
    const treeOf = (key: string) => through(key, readTree);
    /** Prepares `key` on `parent`, lets fn write through its mounts, and commits it as `name`. */
    const layer = async (name: string, parent: string | undefined, fn: (dir: string) => Promise<void>) => {
      await sn.prepare(`extract-${name}`, parent);
      await through(`extract-${name}`, fn);
      await sn.commit(name, `extract-${name}`);
    };

    beforeEach(async () => {
      h = await make();
      sn = h.sn;
      mnt = await tempDir('berth-snap-mnt');
    });
    afterEach(async () => {
      await unmountUnder(mnt.path);
      await mnt.cleanup();
      await h.cleanup();
    });

    it('prepares, stats, commits and lists', async () => {
      const before = Date.now();
      const mounts = await sn.prepare('a', undefined, { labels: { purpose: 'test' } });
      assert.ok(mounts.length >= 1, JSON.stringify(mounts));
      assert.deepEqual(await sn.mounts('a'), mounts);
      const a = await sn.stat('a');
      assert.deepEqual({ ...a, createdAt: '', updatedAt: '' }, { key: 'a', kind: 'active', labels: { purpose: 'test' }, createdAt: '', updatedAt: '' });
      assert.ok(Date.parse(a.createdAt) >= before - 1000 && Date.parse(a.createdAt) <= Date.now() + 1000, a.createdAt);

      await through('a', (d) => writeFile(join(d, 'hello'), 'world'));
      await sn.commit('L1', 'a');
      await rejectsWith(sn.stat('a'), 'NOT_FOUND', (err) => assert.match(err.message, /"a"/));
      const l1 = await sn.stat('L1');
      assert.equal(l1.kind, 'committed');
      assert.equal(l1.parent, undefined);
      assert.deepEqual(l1.labels, { purpose: 'test' }, 'commit keeps the labels when given none');

      await sn.prepare('b', 'L1');
      await sn.commit('L2', 'b', { labels: { 'containerd.io/snapshot.ref': 'x' } });
      const l2 = await sn.stat('L2');
      assert.deepEqual([l2.kind, l2.parent, l2.labels], ['committed', 'L1', { 'containerd.io/snapshot.ref': 'x' }], 'labels given to commit replace the active ones');
      await sn.prepare('c', 'L2');
      await sn.view('v', 'L1');
      const listed = await sn.list();
      assert.deepEqual(
        listed.map((i) => [i.key, i.kind, i.parent ?? null]),
        [
          ['L1', 'committed', null],
          ['L2', 'committed', 'L1'],
          ['c', 'active', 'L2'],
          ['v', 'view', 'L1'],
        ],
      );
      assert.deepEqual(await treeOf('c'), { hello: 'file:world' }, 'an active snapshot shows its parent\'s files');
      assert.deepEqual(await treeOf('v'), { hello: 'file:world' });
    });

    it('stacks three layers written through their mounts: changes, deletions, replaced directories', async () => {
      await layer('L1', undefined, async (d) => {
        await writeFile(join(d, 'a'), 'a1');
        await writeFile(join(d, 'gone'), 'x');
        await writeFile(join(d, 'keep'), 'k');
        await mkdir(join(d, 'dir', 'sub'), { recursive: true });
        await writeFile(join(d, 'dir', 'x'), 'x');
        await writeFile(join(d, 'dir', 'sub', 'y'), 'y');
        await mkdir(join(d, 'tofile'));
        await writeFile(join(d, 'tofile', 'inside'), 'i');
        await symlink('a', join(d, 'link'));
      });
      await layer('L2', 'L1', async (d) => {
        await writeFile(join(d, 'a'), 'a2');
        await unlink(join(d, 'gone'));
        await rm(join(d, 'dir'), { recursive: true });
        await mkdir(join(d, 'dir'));
        await writeFile(join(d, 'dir', 'z'), 'z');
        await rm(join(d, 'tofile'), { recursive: true });
        await writeFile(join(d, 'tofile'), 'now a file');
        await writeFile(join(d, 'new2'), 'n');
      });
      await layer('L3', 'L2', async (d) => {
        assert.equal(await readFile(join(d, 'a'), 'utf8'), 'a2', 'the active snapshot shows the layers below');
        await unlink(join(d, 'new2'));
        await mkdir(join(d, 'dir', 'deeper'));
        await writeFile(join(d, 'dir', 'deeper', 'w'), 'w');
        await unlink(join(d, 'tofile'));
        await mkdir(join(d, 'tofile'));
        await writeFile(join(d, 'l3'), '3');
      });
      await sn.view('top', 'L3');
      assert.deepEqual(await treeOf('top'), {
        a: 'file:a2',
        dir: 'dir',
        'dir/deeper': 'dir',
        'dir/deeper/w': 'file:w',
        'dir/z': 'file:z',
        keep: 'file:k',
        l3: 'file:3',
        link: 'link:a',
        tofile: 'dir',
      });
      await sn.view('bottom', 'L1');
      assert.deepEqual(await treeOf('bottom'), {
        a: 'file:a1',
        dir: 'dir',
        'dir/sub': 'dir',
        'dir/sub/y': 'file:y',
        'dir/x': 'file:x',
        gone: 'file:x',
        keep: 'file:k',
        link: 'link:a',
        tofile: 'dir',
        'tofile/inside': 'file:i',
      }, 'the layers above leave a lower layer as it was');
      await sn.view('middle', 'L2');
      assert.deepEqual(await treeOf('middle'), {
        a: 'file:a2',
        dir: 'dir',
        'dir/z': 'file:z',
        keep: 'file:k',
        link: 'link:a',
        new2: 'file:n',
        tofile: 'file:now a file',
      });
    });

    it('keeps views read-only (EROFS), of nothing, one layer and several', async () => {
      await layer('L1', undefined, (d) => writeFile(join(d, 'f'), '1'));
      await layer('L2', 'L1', (d) => writeFile(join(d, 'g'), '2'));
      await sn.view('v0');
      await sn.view('v1', 'L1');
      await sn.view('v2', 'L2');
      for (const key of ['v0', 'v1', 'v2']) {
        await through(key, async (d) => {
          await assertErrno(writeFile(join(d, 'new'), 'x'), 'EROFS', `create in ${key}`);
          await assertErrno(mkdir(join(d, 'newdir')), 'EROFS', `mkdir in ${key}`);
          if (key !== 'v0') await assertErrno(unlink(join(d, 'f')), 'EROFS', `unlink in ${key}`);
          if (key !== 'v0') await assertErrno(writeFile(join(d, 'f'), 'changed'), 'EROFS', `overwrite in ${key}`);
        });
      }
      assert.deepEqual(await treeOf('v2'), { f: 'file:1', g: 'file:2' });
      await rejectsWith(sn.commit('V', 'v1'), 'INVALID_ARGUMENT', (err) => assert.match(err.message, /view/));
    });

    it('refuses what the tree does not allow, with the codes of the contract', async () => {
      await sn.prepare('a');
      await rejectsWith(sn.prepare('a'), 'ALREADY_EXISTS', (err) => assert.match(err.message, /"a"/));
      await rejectsWith(sn.view('a'), 'ALREADY_EXISTS');
      await rejectsWith(sn.prepare('b', 'a'), 'INVALID_ARGUMENT', (err) => assert.match(err.message, /must be committed/));
      await rejectsWith(sn.prepare('b', 'no-such-parent'), 'NOT_FOUND', (err) => assert.match(err.message, /no-such-parent/));
      await sn.commit('L1', 'a');
      await rejectsWith(sn.commit('L1-again', 'a'), 'NOT_FOUND', (err) => assert.match(err.message, /"a"/));
      await rejectsWith(sn.prepare('L1'), 'ALREADY_EXISTS', (err) => assert.match(err.message, /L1/));
      await sn.prepare('b', 'L1');
      await rejectsWith(sn.commit('L1', 'b'), 'ALREADY_EXISTS', (err) => assert.match(err.message, /L1/));
      assert.equal((await sn.stat('b')).kind, 'active', 'a refused commit leaves the snapshot active');
      await rejectsWith(sn.commit('X', 'L1'), 'INVALID_ARGUMENT', (err) => assert.match(err.message, /committed/));
      await rejectsWith(sn.mounts('L1'), 'INVALID_ARGUMENT');
      for (const op of [() => sn.stat('nope'), () => sn.mounts('nope'), () => sn.remove('nope'), () => sn.usage('nope'), () => sn.commit('n', 'nope')]) await rejectsWith(op(), 'NOT_FOUND');
      await rejectsWith(sn.prepare(''), 'INVALID_ARGUMENT');
      await rejectsWith(sn.prepare('x', undefined, { labels: { '': 'v' } }), 'INVALID_ARGUMENT');

      const dirs = await snapshotDirs(h.root);
      await rejectsWith(sn.prepare('b', 'L1'), 'ALREADY_EXISTS');
      await rejectsWith(sn.prepare('c', 'b'), 'INVALID_ARGUMENT');
      assert.deepEqual(await snapshotDirs(h.root), dirs, 'a refused prepare leaves no directory');
    });

    it('refuses to remove a snapshot with children, naming them; removes it once they are gone', async () => {
      await layer('L1', undefined, (d) => writeFile(join(d, 'f'), '1'));
      await sn.prepare('child-active', 'L1');
      await sn.view('child-view', 'L1');
      await sn.prepare('b', 'L1');
      await sn.commit('L2', 'b');
      await rejectsWith(sn.remove('L1'), 'FAILED_PRECONDITION', (err) => {
        for (const c of ['child-active', 'child-view', 'L2']) assert.ok(err.message.includes(c), err.message);
        assert.deepEqual([...(err.details['children'] as string[])].sort(), ['L2', 'child-active', 'child-view']);
      });
      assert.deepEqual(await treeOf('child-view'), { f: 'file:1' }, 'a refused remove changes nothing');
      const dirs = (await snapshotDirs(h.root)).length;
      for (const k of ['child-active', 'child-view', 'L2']) await sn.remove(k);
      await sn.remove('L1');
      assert.deepEqual(await sn.list(), []);
      for (const k of ['child-active', 'child-view', 'L2', 'L1']) await rejectsWith(sn.stat(k), 'NOT_FOUND');
      assert.equal(dirs, 4);
      assert.deepEqual(await snapshotDirs(h.root), [], 'removal deletes the directories');
    });

    it('keeps everything across close and reopen', async () => {
      await layer('L1', undefined, (d) => writeFile(join(d, 'f'), '1'));
      await layer('L2', 'L1', (d) => writeFile(join(d, 'g'), '2'));
      await sn.view('v', 'L2', { labels: { k: 'v' } });
      await sn.prepare('act', 'L2');
      await through('act', (d) => writeFile(join(d, 'h'), '3'));
      const before = await sn.list();
      const mountsBefore = await sn.mounts('v');
      await reopen();
      assert.deepEqual(await sn.list(), before);
      assert.deepEqual(await sn.mounts('v'), mountsBefore);
      assert.deepEqual(await treeOf('v'), { f: 'file:1', g: 'file:2' });
      assert.deepEqual(await treeOf('act'), { f: 'file:1', g: 'file:2', h: 'file:3' });
      await sn.commit('L3', 'act');
      await reopen();
      assert.equal((await sn.stat('L3')).parent, 'L2');
      assert.equal(await sn.cleanup(), 0, 'nothing is garbage after a clean reopen');
    });

    it('keeps a snapshot that was never committed active across reopen, and removable', async () => {
      await layer('L1', undefined, (d) => writeFile(join(d, 'f'), '1'));
      await sn.prepare('extract-L2', 'L1', { labels: { 'berth.io/extract.pid': '12345' } });
      await through('extract-L2', (d) => writeFile(join(d, 'half'), 'written'));
      await reopen();
      const st = await sn.stat('extract-L2');
      assert.equal(st.kind, 'active');
      assert.deepEqual(st.labels, { 'berth.io/extract.pid': '12345' });
      assert.deepEqual((await sn.list()).map((i) => [i.key, i.kind]), [['L1', 'committed'], ['extract-L2', 'active']]);
      assert.deepEqual(await treeOf('extract-L2'), { f: 'file:1', half: 'file:written' });
      await sn.remove('extract-L2');
      await rejectsWith(sn.stat('extract-L2'), 'NOT_FOUND');
      assert.equal((await snapshotDirs(h.root)).length, 1);
    });

    it('cleanup removes directories no record owns and leaves the rest', async () => {
      await layer('L1', undefined, (d) => writeFile(join(d, 'f'), '1'));
      await sn.view('v', 'L1');
      const owned = await snapshotDirs(h.root);
      const snaps = join(h.root, 'snapshots');
      await mkdir(join(snaps, 'deadbeef', 'fs', 'deep'), { recursive: true });
      await writeFile(join(snaps, 'deadbeef', 'fs', 'deep', 'file'), 'orphan');
      await mkdir(join(snaps, 'removing-0badf00d', 'fs'), { recursive: true });
      await writeFile(join(snaps, 'removing-0badf00d', 'fs', 'half'), 'half deleted');
      await writeFile(join(snaps, 'README'), 'not ours to delete');
      assert.equal(await sn.cleanup(), 2);
      assert.deepEqual(await snapshotDirs(h.root), [...owned, 'README'].sort());
      assert.deepEqual(await treeOf('v'), { f: 'file:1' });
      assert.equal(await sn.cleanup(), 0);
    });

    it('reports usage of a snapshot\'s own files: allocated bytes, inodes, hardlinks once', async () => {
      await sn.prepare('u');
      const empty = await sn.usage('u');
      assert.equal(empty.inodes, 1, 'an empty snapshot holds only its root directory');
      await through('u', async (d) => {
        await writeFile(join(d, 'big'), Buffer.alloc(100_000, 7));
        await link(join(d, 'big'), join(d, 'big-link'));
        await mkdir(join(d, 'dir'));
        for (const n of ['e1', 'e2', 'e3']) await writeFile(join(d, 'dir', n), '');
        await symlink('big', join(d, 'sym'));
      });
      const u = await sn.usage('u');
      assert.equal(u.inodes, 7, `root, big (twice linked), dir, 3 empty files, a symlink: ${JSON.stringify(u)}`);
      assert.ok(u.size >= 100_000 && u.size < 200_000, `the hardlinked 100 kB file counts once: ${u.size}`);
      await sn.commit('U', 'u');
      assert.deepEqual(await sn.usage('U'), u);
    });

    it('reuses a removed key afresh', async () => {
      await sn.prepare('a');
      await through('a', (d) => writeFile(join(d, 'old'), 'x'));
      await sn.remove('a');
      await sn.prepare('a');
      assert.deepEqual(await treeOf('a'), {});
      assert.equal((await snapshotDirs(h.root)).length, 1);
    });
  });
}
