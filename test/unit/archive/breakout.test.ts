/**
 * Hostile layers: the breakout patterns container engines test for (Docker's
 * archive breakout tests, containerd's, CVE-2018-15664 and friends). Each
 * layer is applied to `root` in a sandbox whose sibling `outside/` is a
 * sentinel; every test ends by checking that nothing outside the root
 * changed (every entry, inode, link count and mtime), and that what the
 * layer did is either contained inside the root or refused with CORRUPT.
 *
 * Containment, not refusal, is the rule for names (`../x`, `/x`) and
 * symlinks: that is what containerd does, and images in the wild rely on
 * absolute symlinks resolving inside the image. Refusal is for what cannot
 * be made safe or sensible: a hardlink whose target is not in the root, an
 * invalid whiteout name, a symlink loop, a path through a regular file.
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, readlinkSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { isBerthError } from '../../../src/errors.js';
import { sandbox, tar, type Entry, type Sandbox } from './helpers.js';

let box: Sandbox;
beforeEach(async () => {
  box = await sandbox('berth-breakout');
});
afterEach(async () => {
  try {
    box.assertOutsideUntouched();
  } finally {
    await box.cleanup();
  }
});

const at = (...p: string[]): string => join(box.root, ...p);
const apply = (...layers: Entry[][]): Promise<unknown> => layers.reduce<Promise<unknown>>((p, l) => p.then(() => box.apply(tar(l))), Promise.resolve());
/** The sentinel's absolute host path, as a hostile layer would name it. */
const outsideAbs = (): string => box.outside;
/** Where that absolute path lands when resolved inside the root. */
const inRoot = (abs: string): string => join(box.root, abs);

async function refused(layer: Entry[], code = 'CORRUPT'): Promise<void> {
  await assert.rejects(box.apply(tar(layer)), (err: unknown) => {
    assert.ok(isBerthError(err), `expected a BerthError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

describe('the sentinel', () => {
  it('notices a change outside the root', async () => {
    const other = await sandbox('berth-breakout');
    try {
      other.assertOutsideUntouched();
      writeFileSync(join(other.outside, 'sub', 'keep'), 'changed\n');
      assert.throws(() => other.assertOutsideUntouched(), /outside the root changed/);
    } finally {
      await other.cleanup();
    }
  });
});

describe('entry names that climb out', () => {
  it('clamps ../ entries at the root', async () => {
    await apply([
      { name: '../outside/evil', content: 'x' },
      { name: '../../../../../../../tmp/evil2', content: 'x' },
      { name: 'a/../../outside/sub/keep', content: 'overwritten?' },
      { name: '..', type: 'dir', mode: 0o777 },
      { name: '../', type: 'dir', mode: 0o777 },
    ]);
    assert.equal(readFileSync(at('outside/evil'), 'utf8'), 'x');
    assert.ok(existsSync(at('tmp/evil2')));
    assert.equal(readFileSync(at('outside/sub/keep'), 'utf8'), 'overwritten?');
    assert.ok(!existsSync(join(box.dir, 'evil')));
  });

  it('treats absolute names as relative to the root', async () => {
    const target = join(outsideAbs(), 'passwd');
    await apply([
      { name: target, content: 'evil' },
      { name: '/etc/evil-berth-test', content: 'x' },
      { name: `//${outsideAbs()}/sub/`, type: 'dir', mode: 0o777 },
    ]);
    assert.equal(readFileSync(inRoot(target), 'utf8'), 'evil');
    assert.ok(existsSync(at('etc/evil-berth-test')));
    assert.ok(!existsSync('/etc/evil-berth-test'));
    assert.equal(lstatSync(inRoot(join(outsideAbs(), 'sub'))).mode & 0o777, 0o777);
  });
});

describe('symlinks, then entries written through them', () => {
  it('a relative symlink out of the root, then a file through it, in the same layer', async () => {
    await apply([
      { name: 'up', type: 'symlink', linkname: '../outside' },
      { name: 'up/evil', content: 'x' },
      { name: 'up/passwd', content: 'pwned' },
    ]);
    assert.equal(readlinkSync(at('up')), '../outside');
    assert.equal(readFileSync(at('outside/evil'), 'utf8'), 'x');
    assert.equal(readFileSync(at('outside/passwd'), 'utf8'), 'pwned');
  });

  it('an absolute symlink to the outside, then a file through it, in a later layer', async () => {
    await apply([{ name: 'abs', type: 'symlink', linkname: outsideAbs() }], [{ name: 'abs/passwd', content: 'pwned' }, { name: 'abs/sub/keep', content: 'pwned' }]);
    assert.equal(readFileSync(inRoot(join(outsideAbs(), 'passwd')), 'utf8'), 'pwned');
    assert.equal(readFileSync(inRoot(join(outsideAbs(), 'sub/keep')), 'utf8'), 'pwned');
  });

  it('a chain of symlinks that climbs with .. is clamped at the root', async () => {
    await apply([
      { name: 'a', type: 'symlink', linkname: 'b/c' },
      { name: 'b', type: 'symlink', linkname: '../../../../..' },
      { name: 'a/d/evil', content: 'x' },
      { name: 'dots', type: 'symlink', linkname: '/../../../outside' },
      { name: 'dots/evil', content: 'y' },
    ]);
    assert.equal(readFileSync(at('c/d/evil'), 'utf8'), 'x');
    assert.equal(readFileSync(at('outside/evil'), 'utf8'), 'y');
  });

  it('directories that escape via a symlinked parent are created, chmodded and chowned inside the root', async () => {
    await apply([{ name: 'p', type: 'symlink', linkname: outsideAbs() }], [{ name: 'p/sub/', type: 'dir', mode: 0o777, uid: 4242 }, { name: 'p/newdir/', type: 'dir', mode: 0o1777 }]);
    const sub = lstatSync(inRoot(join(outsideAbs(), 'sub')));
    assert.deepEqual([sub.mode & 0o7777, sub.uid], [0o777, 4242]);
    assert.ok(lstatSync(inRoot(join(outsideAbs(), 'newdir'))).isDirectory());
  });

  it('never follows the last component: entries replace a symlink to the outside instead of writing through it', async () => {
    await apply(
      [
        { name: 'f', type: 'symlink', linkname: join(outsideAbs(), 'passwd') },
        { name: 'd', type: 'symlink', linkname: join(outsideAbs(), 'sub') },
        { name: 'n', type: 'symlink', linkname: join(outsideAbs(), 'passwd') },
        { name: 'h', type: 'symlink', linkname: '../outside/passwd' },
      ],
      [
        { name: 'f', content: 'pwned', mode: 0o4777, uid: 666 },
        { name: 'd/', type: 'dir', mode: 0o777, uid: 666 },
        { name: 'n', type: 'fifo', mode: 0o666 },
        { name: 'real', content: 'r' },
        { name: 'h', type: 'link', linkname: 'real' },
      ],
    );
    assert.ok(lstatSync(at('f')).isFile());
    assert.ok(lstatSync(at('d')).isDirectory());
    assert.ok(lstatSync(at('n')).isFIFO());
    assert.equal(lstatSync(at('h')).ino, lstatSync(at('real')).ino);
  });

  it('a symlink entry owned by someone else changes only the link (lchown)', async () => {
    await apply([{ name: 's', type: 'symlink', linkname: join(outsideAbs(), 'passwd'), uid: 777, gid: 778, mode: 0o777 }]);
    assert.deepEqual([lstatSync(at('s')).uid, lstatSync(at('s')).gid], [777, 778]);
  });

  it('refuses a symlink loop and a path through a regular file', async () => {
    await refused([{ name: 'loop', type: 'symlink', linkname: 'loop' }, { name: 'loop/x', content: 'x' }]);
    await refused([{ name: 'f', content: 'file' }, { name: 'l', type: 'symlink', linkname: 'f' }, { name: 'l/x', content: 'x' }]);
  });
});

describe('hardlinks', () => {
  it('refuses a hardlink to ../../etc/passwd, to the outside sentinel by absolute path, and to ../outside', async () => {
    await refused([{ name: 'h', type: 'link', linkname: '../../etc/passwd' }]);
    await refused([{ name: 'h', type: 'link', linkname: join(outsideAbs(), 'passwd') }]);
    await refused([{ name: 'h', type: 'link', linkname: '../outside/passwd' }]);
    assert.ok(!existsSync(at('h')));
  });

  it('links to the root\'s own /etc/passwd when the name climbs but the file is in the root', async () => {
    await apply([{ name: 'etc/passwd', content: 'root:x:0:0' }, { name: 'h', type: 'link', linkname: '../../../etc/passwd' }, { name: 'h2', type: 'link', linkname: '/etc/passwd' }]);
    const ino = lstatSync(at('etc/passwd')).ino;
    assert.equal(lstatSync(at('h')).ino, ino);
    assert.equal(lstatSync(at('h2')).ino, ino);
  });

  it('a symlink to the outside followed by a hardlink through it resolves inside the root', async () => {
    await refused([{ name: 'ln', type: 'symlink', linkname: outsideAbs() }, { name: 'h', type: 'link', linkname: 'ln/passwd' }]);
    await refused([{ name: 'ln', type: 'symlink', linkname: '../outside' }, { name: 'h', type: 'link', linkname: 'ln/passwd' }]);
    // When the path exists inside the root, that is what gets linked.
    await apply([{ name: 'ln2', type: 'symlink', linkname: '/outside' }, { name: 'outside/passwd', content: 'mine' }, { name: 'h2', type: 'link', linkname: 'ln2/passwd' }]);
    assert.equal(lstatSync(at('h2')).ino, lstatSync(at('outside/passwd')).ino);
  });

  it('a hardlink to a symlink that points out links the symlink, not its target', async () => {
    await apply([{ name: 's', type: 'symlink', linkname: join(outsideAbs(), 'passwd') }, { name: 'h', type: 'link', linkname: 's' }]);
    assert.ok(lstatSync(at('h')).isSymbolicLink());
    assert.equal(lstatSync(at('h')).ino, lstatSync(at('s')).ino);
  });

  it('refuses hardlinks to directories, to the root and to nothing', async () => {
    await refused([{ name: 'd/', type: 'dir' }, { name: 'h', type: 'link', linkname: 'd' }]);
    await refused([{ name: 'h', type: 'link', linkname: '/' }]);
    await refused([{ name: 'h', type: 'link', linkname: '' }]);
    await refused([{ name: 'h', type: 'link', linkname: 'missing/file' }]);
  });
});

describe('whiteouts that climb out', () => {
  it('../.wh.NAME and /../.wh.NAME are clamped: they remove inside the root only', async () => {
    await apply([{ name: 'outside/passwd', content: 'in root' }, { name: 'x', content: 'x' }], [{ name: '../.wh.outside' }, { name: '/../../.wh.x' }]);
    assert.deepEqual(readdirSync(box.root), []);
  });

  it('a whiteout through a symlink to the outside removes inside the root only', async () => {
    await apply(
      [{ name: 'up', type: 'symlink', linkname: '../outside' }, { name: 'abs', type: 'symlink', linkname: outsideAbs() }, { name: 'outside/passwd', content: 'in root' }],
      [{ name: 'up/.wh.passwd' }, { name: 'abs/.wh.passwd' }, { name: 'abs/.wh.sub' }, { name: 'up/.wh.sub' }],
    );
    assert.deepEqual(readdirSync(at('outside')), []);
  });

  it('an opaque marker through a symlink to the outside clears inside the root only', async () => {
    await apply([{ name: 'outside/a', content: 'a' }, { name: 'up', type: 'symlink', linkname: '../outside' }], [{ name: 'up/.wh..wh..opq' }]);
    assert.deepEqual(readdirSync(at('outside')), []);
    assert.ok(lstatSync(at('up')).isSymbolicLink());
  });

  it('a whiteout of a symlink to the outside removes the symlink, not what it points to', async () => {
    await apply([{ name: 's', type: 'symlink', linkname: join(outsideAbs(), 'sub') }, { name: 'f', type: 'symlink', linkname: join(outsideAbs(), 'passwd') }], [{ name: '.wh.s' }, { name: '.wh.f' }]);
    assert.deepEqual(readdirSync(box.root), []);
  });

  it('removing a tree that holds symlinks to the outside removes the links only', async () => {
    const tree: Entry[] = [
      { name: 'd/abs', type: 'symlink', linkname: outsideAbs() },
      { name: 'd/rel', type: 'symlink', linkname: '../../outside/sub' },
      { name: 'd/deep/f', type: 'symlink', linkname: join(outsideAbs(), 'passwd') },
    ];
    await apply([...tree, { name: 'e/x', content: 'x' }, ...tree.map((e) => ({ ...e, name: e.name.replace(/^d/, 'f') }))], [
      { name: '.wh.d' },
      { name: 'e/.wh..wh..opq' },
      { name: 'f', content: 'replaces the tree' },
    ]);
    assert.deepEqual(readdirSync(box.root).sort(), ['e', 'f']);
    assert.deepEqual(readdirSync(at('e')), []);
  });

  it('refuses whiteouts named .wh.., .wh... and .wh.', async () => {
    await refused([{ name: 'd/x', content: 'x' }, { name: 'd/.wh..' }]);
    await refused([{ name: 'd/x', content: 'x' }, { name: 'd/.wh...' }]);
    await refused([{ name: '.wh.' }]);
    assert.ok(existsSync(at('d/x')));
  });
});
