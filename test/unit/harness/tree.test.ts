import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, chown, link, mkdir, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../../helpers/tmp.js';
import { describeTree, diffTrees, overlayLeaks, type TreeEntry } from '../../helpers/tree.js';

/** A small tree with one entry of each kind (xattrs are tested apart). */
async function sample(root: string): Promise<void> {
  await mkdir(join(root, 'd'), { mode: 0o755 });
  await writeFile(join(root, 'd', 'f'), 'hello\n');
  await chown(join(root, 'd', 'f'), 1000, 1001); // before chmod: chown clears setuid
  await chmod(join(root, 'd', 'f'), 0o4750);
  await link(join(root, 'd', 'f'), join(root, 'hard'));
  await symlink('../nowhere', join(root, 'd', 'dangling'));
  execFileSync('mknod', [join(root, 'null'), 'c', '1', '3']);
  execFileSync('mkfifo', [join(root, 'fifo')]);
  await utimes(join(root, 'fifo'), 1_000_000_000, 1_000_000_000.5);
}

const byPath = (t: TreeEntry[], p: string): TreeEntry => {
  const e = t.find((x) => x.path === p);
  assert.ok(e, `no entry ${p}`);
  return e;
};

test('describeTree: types, modes with special bits, owners, content hashes, links, devices, mtimes', async () => {
  const dir = await tempDir('berth-tree-');
  try {
    await sample(dir.path);
    const t = await describeTree(dir.path);
    assert.deepEqual(t.map((e) => e.path), ['.', 'd', 'd/dangling', 'd/f', 'fifo', 'hard', 'null']);
    const f = byPath(t, 'd/f');
    assert.equal(f.type, 'file');
    assert.equal(f.mode, 0o4750);
    assert.equal(`${f.uid}:${f.gid}`, '1000:1001');
    assert.equal(f.size, 6);
    assert.equal(f.sha256, 'sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03');
    assert.deepEqual(f.links, ['d/f', 'hard']);
    assert.deepEqual(byPath(t, 'hard').links, ['d/f', 'hard']);
    assert.equal(byPath(t, 'd/dangling').target, '../nowhere');
    assert.equal(byPath(t, 'null').rdev, '1:3');
    assert.equal(byPath(t, 'fifo').type, 'fifo');
    assert.equal(byPath(t, 'fifo').mtimeNs, '1000000000500000000');
    assert.equal(byPath(t, 'd').mtimeNs, undefined, 'directory mtimes are not recorded');
  } finally {
    await dir.cleanup();
  }
});

test('describeTree reads xattrs, binary values as hex', async () => {
  const dir = await tempDir('berth-tree-');
  try {
    // GNU tar sets xattrs from PAX SCHILY.xattr records: a way to make them without attr(1).
    const src = join(dir.path, 'src');
    await mkdir(src);
    const { encodeTar } = await import('../../fixtures/edge-images.js');
    await writeFile(join(dir.path, 'x.tar'), encodeTar([{ path: 'f', content: 'x', xattrs: { 'user.text': 'hi', 'user.bin': Buffer.from([0, 255]) } }]));
    execFileSync('tar', ['--xattrs', "--xattrs-include=*", '-xf', join(dir.path, 'x.tar'), '-C', src]);
    const f = byPath(await describeTree(src), 'f');
    assert.deepEqual(f.xattrs, { 'user.bin': 'hex:00ff', 'user.text': 'hi' });
  } finally {
    await dir.cleanup();
  }
});

test('diffTrees names every difference, and nothing when trees match', async () => {
  const a = await tempDir('berth-tree-a-');
  const b = await tempDir('berth-tree-b-');
  try {
    await sample(a.path);
    await sample(b.path);
    // The two samples were made a few ms apart.
    const opts = { ignore: ['mtimeNs' as const] };
    assert.deepEqual(diffTrees(await describeTree(a.path), await describeTree(b.path), ['a', 'b'], opts), []);
    await chmod(join(b.path, 'd', 'f'), 0o750);
    await writeFile(join(b.path, 'extra'), '');
    const diff = diffTrees(await describeTree(a.path), await describeTree(b.path), ['a', 'b'], opts);
    assert.equal(diff.length, 3, diff.join('\n'));
    assert.match(diff.join('\n'), /^only in b: extra file/m);
    assert.match(diff.join('\n'), /^d\/f: mode a=4750 b=0750$/m);
    assert.match(diff.join('\n'), /^hard: mode a=4750 b=0750$/m, 'every name of the inode');
  } finally {
    await a.cleanup();
    await b.cleanup();
  }
});

test('overlayLeaks flags whiteout devices, .wh. names and overlay xattrs', () => {
  const base = { mode: 0, uid: 0, gid: 0, xattrs: {} };
  const leaks = overlayLeaks([
    { ...base, path: 'gone', type: 'char', rdev: '0:0' },
    { ...base, path: 'd/.wh.x', type: 'file' },
    { ...base, path: 'o', type: 'dir', xattrs: { 'trusted.overlay.opaque': 'y' } },
    { ...base, path: 'dev/null', type: 'char', rdev: '1:3' },
  ]);
  assert.equal(leaks.length, 3, leaks.join('\n'));
});
