/**
 * The OCI changeset rules, each checked on the resulting tree: types, modes,
 * owners, contents, link targets, hardlink inodes, xattrs, times.
 */
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { applyLayer } from '../../../src/archive/index.js';
import { isBerthError } from '../../../src/errors.js';
import { lgetxattr, llistxattr } from '../../../src/linux/index.js';
import { chunked, MTIME, sandbox, sha256hex, snapshot, tar, type Entry, type Sandbox } from './helpers.js';

/** security.capability v2, cap_setfcap (bit 31) + cap_net_raw (bit 13), effective: bytes >= 0x80 that UTF-8 would mangle. */
const CAP = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

let box: Sandbox;
const fresh = async (): Promise<Sandbox> => {
  await box?.cleanup();
  box = await sandbox();
  return box;
};
after(() => box?.cleanup());

const at = (...p: string[]): string => join(box.root, ...p);
const mode = (p: string): number => lstatSync(at(p)).mode & 0o7777;
const names = (p: string): string[] => readdirSync(at(p)).sort();

describe('applyLayer: entries of one layer', () => {
  before(async () => {
    await fresh();
    const layer = tar([
      { name: 'etc/', type: 'dir', mode: 0o755, mtime: MTIME - 100 },
      { name: 'etc/hostname', content: 'berth\n', mode: 0o644, uid: 1000, gid: 1001, mtime: MTIME - 200 },
      { name: 'bin/', type: 'dir', mode: 0o711, uid: 5, gid: 6, mtime: MTIME - 300 },
      { name: 'bin/su', content: 'su binary', mode: 0o4755, uid: 1234, gid: 2345 },
      { name: 'bin/sg', content: 'sg binary', mode: 0o2711, uid: 7, gid: 8 },
      { name: 'bin/link-su', type: 'link', linkname: 'bin/su' },
      { name: 'bin/ping', content: 'ping', mode: 0o755, xattrs: { 'security.capability': CAP } },
      { name: 'tmp/', type: 'dir', mode: 0o1777 },
      { name: 'data/x', content: Buffer.alloc(300_000, 7), mode: 0o600 },
      { name: 'rel', type: 'symlink', linkname: 'etc/hostname', uid: 11, gid: 12, mtime: MTIME - 400 },
      { name: 'abs', type: 'symlink', linkname: '/etc/hostname' },
      { name: 'dangling', type: 'symlink', linkname: '../nowhere/at/all' },
      { name: 'dev/', type: 'dir' },
      { name: 'dev/null', type: 'char', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'dev/sda1', type: 'block', mode: 0o660, gid: 6, devmajor: 8, devminor: 1 },
      { name: 'dev/big', type: 'block', mode: 0o600, devmajor: 259, devminor: 70000 },
      { name: 'run/fifo', type: 'fifo', mode: 0o620, uid: 3 },
      { name: 'x/', type: 'dir', xattrs: { 'user.note': 'a note', 'trusted.t': Buffer.from([0xff, 0x00, 0xfe]) } },
      { name: 'x/f', content: 'f', xattrs: { 'user.bin': Buffer.from([0x80, 0x81, 0x00, 0xc3]), 'trusted.overlay.opaque': 'y', 'security.selinux': 'system_u:object_r:bin_t:s0' } },
    ]);
    const res = await box.apply(layer);
    assert.equal(res.diffId, `sha256:${sha256hex(layer)}`);
    assert.equal(res.size, layer.length);
    assert.equal(res.entries, 19);
  });

  it('writes regular files with their content, mode, owner and mtime', () => {
    const st = lstatSync(at('etc/hostname'));
    assert.ok(st.isFile());
    assert.equal(readFileSync(at('etc/hostname'), 'utf8'), 'berth\n');
    assert.deepEqual([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs], [0o644, 1000, 1001, (MTIME - 200) * 1000]);
    assert.equal(mode('data/x'), 0o600);
    assert.ok(readFileSync(at('data/x')).equals(Buffer.alloc(300_000, 7)));
  });

  it('keeps setuid, setgid and sticky bits on owned files (chmod after chown)', () => {
    assert.equal(mode('bin/su'), 0o4755);
    assert.deepEqual([lstatSync(at('bin/su')).uid, lstatSync(at('bin/su')).gid], [1234, 2345]);
    assert.equal(mode('bin/sg'), 0o2711);
    assert.equal(mode('tmp'), 0o1777);
  });

  it('sets directory metadata, mtimes last (after children were written)', () => {
    const bin = lstatSync(at('bin'));
    assert.deepEqual([bin.mode & 0o7777, bin.uid, bin.gid, bin.mtimeMs], [0o711, 5, 6, (MTIME - 300) * 1000]);
    assert.equal(lstatSync(at('etc')).mtimeMs, (MTIME - 100) * 1000);
  });

  it('creates missing parent directories with mode 0755, owned by root', () => {
    const st = lstatSync(at('data'));
    assert.ok(st.isDirectory());
    assert.deepEqual([st.mode & 0o7777, st.uid, st.gid], [0o755, 0, 0]);
  });

  it('makes hardlinks share the inode, without touching its metadata', () => {
    const a = lstatSync(at('bin/su'));
    const b = lstatSync(at('bin/link-su'));
    assert.equal(a.ino, b.ino);
    assert.equal(a.nlink, 2);
    assert.equal(b.mode & 0o7777, 0o4755);
  });

  it('creates symlinks as written, never following them', () => {
    assert.equal(readlinkSync(at('rel')), 'etc/hostname');
    assert.equal(readlinkSync(at('abs')), '/etc/hostname');
    assert.equal(readlinkSync(at('dangling')), '../nowhere/at/all');
    const st = lstatSync(at('rel'));
    assert.deepEqual([st.uid, st.gid, st.mtimeMs], [11, 12, (MTIME - 400) * 1000]);
    assert.ok(!existsSync(join(box.dir, 'nowhere')));
  });

  it('creates device nodes and FIFOs', () => {
    const nul = lstatSync(at('dev/null'));
    assert.ok(nul.isCharacterDevice());
    assert.deepEqual([nul.mode & 0o7777, nul.rdev], [0o666, (1 << 8) | 3]);
    const sda = lstatSync(at('dev/sda1'));
    assert.ok(sda.isBlockDevice());
    assert.deepEqual([sda.mode & 0o7777, sda.gid, sda.rdev], [0o660, 6, (8 << 8) | 1]);
    // glibc's makedev for major 259, minor 70000.
    assert.equal(lstatSync(at('dev/big')).rdev, 0x11110370);
    const fifo = lstatSync(at('run/fifo'));
    assert.ok(fifo.isFIFO());
    assert.deepEqual([fifo.mode & 0o7777, fifo.uid], [0o620, 3]);
  });

  it('sets user.*, trusted.* and security.capability xattrs byte for byte', () => {
    assert.ok(lgetxattr(at('bin/ping'), 'security.capability')?.equals(CAP));
    assert.equal(lgetxattr(at('x'), 'user.note')?.toString(), 'a note');
    assert.ok(lgetxattr(at('x'), 'trusted.t')?.equals(Buffer.from([0xff, 0x00, 0xfe])));
    assert.ok(lgetxattr(at('x/f'), 'user.bin')?.equals(Buffer.from([0x80, 0x81, 0x00, 0xc3])));
  });

  it('refuses trusted.overlay.* and host labels such as security.selinux', () => {
    assert.deepEqual(llistxattr(at('x/f')), ['user.bin']);
  });
});

describe('applyLayer: layers over layers', () => {
  /** Applies `lower` then `upper` to a fresh sandbox. */
  async function stack(lower: Entry[], upper: Entry[]): Promise<void> {
    await fresh();
    await box.apply(tar(lower));
    await box.apply(tar(upper));
  }

  it('.wh.NAME removes a file, a whole tree, or a symlink (not its target)', async () => {
    await stack(
      [{ name: 'a', content: 'a' }, { name: 'd/e/f', content: 'f' }, { name: 'keep', content: 'k' }, { name: 'l', type: 'symlink', linkname: 'keep' }],
      [{ name: '.wh.a' }, { name: '.wh.d' }, { name: '.wh.l' }, { name: '.wh.never-existed' }, { name: 'nodir/.wh.x' }, { name: 'noopq/.wh..wh..opq' }],
    );
    // Whiteouts in missing directories create them (mode 0755), as containerd does.
    assert.deepEqual(names(''), ['keep', 'nodir', 'noopq']);
    assert.deepEqual([names('nodir'), names('noopq'), mode('nodir')], [[], [], 0o755]);
    assert.equal(readFileSync(at('keep'), 'utf8'), 'k');
  });

  it('a whiteout is not created, and whiteout then re-create in one layer leaves the new entry', async () => {
    await stack([{ name: 'd/old', content: 'old' }], [{ name: 'd/.wh.old' }, { name: 'd/old', content: 'new' }]);
    assert.deepEqual(names('d'), ['old']);
    assert.equal(readFileSync(at('d/old'), 'utf8'), 'new');
  });

  it('an opaque marker removes the lower entries of its directory, marker first', async () => {
    await stack(
      [{ name: 'd/a', content: 'a' }, { name: 'd/sub/x', content: 'x' }, { name: 'other', content: 'o' }],
      [{ name: 'd/', type: 'dir', mode: 0o750 }, { name: 'd/.wh..wh..opq' }, { name: 'd/c', content: 'c' }],
    );
    assert.deepEqual(names('d'), ['c']);
    assert.deepEqual(names(''), ['d', 'other']);
    assert.equal(mode('d'), 0o750);
  });

  it('an opaque marker spares entries of its own layer wherever it stands, down the tree', async () => {
    await stack(
      [{ name: 'd/a', content: 'a' }, { name: 'd/sub/x', content: 'x' }, { name: 'd/sub/deep/y', content: 'y' }, { name: 'd/gone/z', content: 'z' }],
      [
        { name: 'd/', type: 'dir' },
        { name: 'd/c', content: 'c' },
        { name: 'd/sub/', type: 'dir' },
        { name: 'd/sub/new', content: 'n' },
        { name: 'd/implicit/file', content: 'i' },
        { name: 'd/.wh..wh..opq' },
        { name: 'd/late', content: 'l' },
      ],
    );
    assert.deepEqual(names('d'), ['c', 'implicit', 'late', 'sub']);
    // d/sub came from this layer, but its lower children did not.
    assert.deepEqual(names('d/sub'), ['new']);
    assert.deepEqual(names('d/implicit'), ['file']);
  });

  it('an opaque marker at the top of the layer clears the lower root', async () => {
    await stack([{ name: 'a', content: 'a' }, { name: 'b/c', content: 'c' }], [{ name: 'n', content: 'n' }, { name: '.wh..wh..opq' }]);
    assert.deepEqual(names(''), ['n']);
  });

  it('replaces a directory by a file, and a file by a directory', async () => {
    await stack(
      [{ name: 'd/x/y', content: 'y' }, { name: 'f', content: 'f' }],
      [{ name: 'd', content: 'now a file', mode: 0o600 }, { name: 'f/', type: 'dir', mode: 0o700 }, { name: 'f/inner', content: 'i' }],
    );
    assert.ok(lstatSync(at('d')).isFile());
    assert.equal(readFileSync(at('d'), 'utf8'), 'now a file');
    assert.ok(lstatSync(at('f')).isDirectory());
    assert.equal(mode('f'), 0o700);
    assert.deepEqual(names('f'), ['inner']);
  });

  it('replaces a directory by a symlink and back, within one layer', async () => {
    await stack(
      [{ name: 'd/x', content: 'x' }, { name: 't/y', content: 'y' }],
      [{ name: 'd', type: 'symlink', linkname: 't' }, { name: 'e', type: 'symlink', linkname: 't' }, { name: 'e/', type: 'dir', mode: 0o701 }, { name: 'e/z', content: 'z' }],
    );
    assert.equal(readlinkSync(at('d')), 't');
    assert.ok(lstatSync(at('e')).isDirectory());
    assert.equal(mode('e'), 0o701);
    assert.deepEqual(names('e'), ['z']);
    assert.deepEqual(names('t'), ['y']);
  });

  it('a directory entry for an existing directory keeps its children and takes the new mode, owner and mtime', async () => {
    await stack(
      [{ name: 'd/', type: 'dir', mode: 0o755, mtime: MTIME - 50 }, { name: 'd/child', content: 'c' }],
      [{ name: 'd/', type: 'dir', mode: 0o2770, uid: 42, gid: 43, mtime: MTIME - 10, xattrs: { 'user.k': 'v' } }],
    );
    const st = lstatSync(at('d'));
    assert.deepEqual([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs], [0o2770, 42, 43, (MTIME - 10) * 1000]);
    assert.deepEqual(names('d'), ['child']);
    assert.equal(lgetxattr(at('d'), 'user.k')?.toString(), 'v');
  });

  it('a new file replaces a hardlinked lower file without changing its other links', async () => {
    await stack([{ name: 'a', content: 'old' }, { name: 'b', type: 'link', linkname: 'a' }], [{ name: 'a', content: 'new' }]);
    assert.equal(readFileSync(at('a'), 'utf8'), 'new');
    assert.equal(readFileSync(at('b'), 'utf8'), 'old');
    assert.notEqual(lstatSync(at('a')).ino, lstatSync(at('b')).ino);
  });

  it('hardlinks to a file of a lower layer, and replaces what is at the link path', async () => {
    await stack(
      [{ name: 'lib/libc.so', content: 'libc', mode: 0o755 }, { name: 'dup', content: 'something else' }],
      [{ name: 'usr/lib/libc.so', type: 'link', linkname: '/lib/libc.so' }, { name: 'dup', type: 'link', linkname: './lib/../lib/libc.so' }],
    );
    const ino = lstatSync(at('lib/libc.so')).ino;
    assert.equal(lstatSync(at('usr/lib/libc.so')).ino, ino);
    assert.equal(lstatSync(at('dup')).ino, ino);
    assert.equal(lstatSync(at('lib/libc.so')).nlink, 3);
  });

  it('a hardlink to a symlink links the symlink itself', async () => {
    await stack([{ name: 's', type: 'symlink', linkname: '/etc/passwd' }], [{ name: 'h', type: 'link', linkname: 's' }]);
    assert.equal(lstatSync(at('h')).ino, lstatSync(at('s')).ino);
    assert.equal(readlinkSync(at('h')), '/etc/passwd');
  });

  it('paths resolved through a symlink are resolved again once the symlink is removed or replaced', async () => {
    await stack(
      [{ name: 't/', type: 'dir' }, { name: 'd/l', type: 'symlink', linkname: '../t' }],
      [
        { name: 'a', type: 'symlink', linkname: 't' },
        { name: 'a/x', content: 'via a' },
        { name: '.wh.a' },
        { name: 'a/y', content: 'in a new a' },
        { name: 'b', type: 'symlink', linkname: 't' },
        { name: 'b/x2', content: 'via b' },
        { name: 'b', content: 'b is a file now' },
        { name: 'd/l/x3', content: 'via d/l' },
        { name: 'd/.wh..wh..opq' },
        { name: 'd/l/z', content: 'in a new d/l' },
      ],
    );
    assert.deepEqual(names('t'), ['x', 'x2', 'x3']);
    assert.ok(lstatSync(at('a')).isDirectory());
    assert.deepEqual(names('a'), ['y']);
    assert.equal(readFileSync(at('b'), 'utf8'), 'b is a file now');
    assert.ok(lstatSync(at('d/l')).isDirectory());
    assert.deepEqual(names('d/l'), ['z']);
  });

  it('a path through what became a file is refused', async () => {
    await fresh();
    await assert.rejects(box.apply(tar([{ name: 't/', type: 'dir' }, { name: 'b', type: 'symlink', linkname: 't' }, { name: 'b/x', content: 'x' }, { name: 'b', content: 'file' }, { name: 'b/y', content: 'y' }])), (err: unknown) => {
      assert.ok(isBerthError(err, 'CORRUPT'), String(err));
      return true;
    });
    assert.deepEqual(names('t'), ['x']);
  });

  it('a file replaces a file, a symlink and a device node', async () => {
    await stack(
      [{ name: 'f', content: 'old' }, { name: 's', type: 'symlink', linkname: 'f' }, { name: 'n', type: 'char', devmajor: 1, devminor: 3 }],
      [{ name: 'f', content: 'new' }, { name: 's', content: 'file now' }, { name: 'n', type: 'fifo' }, { name: 'n2', type: 'fifo' }, { name: 'n2', content: 'file' }],
    );
    assert.equal(readFileSync(at('f'), 'utf8'), 'new');
    assert.ok(lstatSync(at('s')).isFile());
    assert.equal(readFileSync(at('s'), 'utf8'), 'file now');
    assert.ok(lstatSync(at('n')).isFIFO());
    assert.ok(lstatSync(at('n2')).isFile());
  });
});

describe('applyLayer: names and odd entries', () => {
  it('applies PAX long names and link targets, and GNU long names', async () => {
    await fresh();
    const deep = `${'a'.repeat(90)}/${'b'.repeat(90)}/${'c'.repeat(90)}`;
    const target = `/${'t'.repeat(200)}/${'u'.repeat(150)}`;
    await box.apply(
      tar([
        { name: `${deep}/file-with-a-pax-name`, content: 'pax' },
        { name: `${deep}/gnu-${'g'.repeat(120)}`, content: 'gnu', gnu: true },
        { name: 'long-link', type: 'symlink', linkname: target },
        { name: 'gnu-link', type: 'symlink', linkname: target, gnu: true },
        { name: 'hard', type: 'link', linkname: `${deep}/gnu-${'g'.repeat(120)}`, gnu: true },
      ]),
    );
    assert.equal(readFileSync(at(deep, 'file-with-a-pax-name'), 'utf8'), 'pax');
    assert.equal(readFileSync(at(deep, `gnu-${'g'.repeat(120)}`), 'utf8'), 'gnu');
    assert.equal(readlinkSync(at('long-link')), target);
    assert.equal(readlinkSync(at('gnu-link')), target);
    assert.equal(lstatSync(at('hard')).ino, lstatSync(at(deep, `gnu-${'g'.repeat(120)}`)).ino);
  });

  it('applies UTF-8 names, PAX uid/gid beyond the octal field, and fractional mtimes', async () => {
    await fresh();
    await box.apply(
      tar([
        { name: 'ünïcødé/日本語.txt', content: 'u' },
        { name: 'big-ids', content: 'b', pax: { uid: '3000000', gid: '4000000' } },
        { name: 'frac', content: 'f', pax: { mtime: '1700000000.123456789', atime: '1800000000.5' } },
        { name: 'pre-epoch', content: 'p', pax: { mtime: '-86400.5' } },
      ]),
    );
    assert.equal(readFileSync(at('ünïcødé/日本語.txt'), 'utf8'), 'u');
    assert.deepEqual([lstatSync(at('big-ids')).uid, lstatSync(at('big-ids')).gid], [3000000, 4000000]);
    const frac = lstatSync(at('frac'), { bigint: true });
    assert.deepEqual([frac.mtimeNs, frac.atimeNs], [1700000000123456789n, 1800000000500000000n]);
    // Before the epoch becomes the epoch, as in containerd.
    assert.equal(lstatSync(at('pre-epoch'), { bigint: true }).mtimeNs, 0n);
  });

  it('skips the entry for the root itself and AUFS metadata, and counts them', async () => {
    await fresh();
    const before = statSync(box.root);
    const res = await box.apply(
      tar([
        { name: './', type: 'dir', mode: 0o700, uid: 99, mtime: 1 },
        { name: '.wh..wh.plnk/', type: 'dir' },
        { name: '.wh..wh.plnk/123', content: 'x' },
        { name: 'd/.wh..wh.aufs', content: '' },
        { name: 'f', content: 'f' },
      ]),
    );
    const after = statSync(box.root);
    assert.deepEqual([after.mode, after.uid], [before.mode, before.uid]);
    assert.deepEqual(names(''), ['d', 'f']);
    assert.deepEqual(names('d'), []);
    assert.equal(res.entries, 5);
  });

  it('the last of two entries for one path wins', async () => {
    await fresh();
    await box.apply(tar([{ name: 'p', content: 'first' }, { name: 'p', content: 'second', mode: 0o640 }, { name: 'q/', type: 'dir' }, { name: 'q', content: 'file' }]));
    assert.equal(readFileSync(at('p'), 'utf8'), 'second');
    assert.equal(mode('p'), 0o640);
    assert.ok(lstatSync(at('q')).isFile());
  });

  it('a later directory entry does not disturb the times of directories written earlier', async () => {
    await fresh();
    mkdirSync(at('pre'));
    writeFileSync(at('pre/old'), 'o');
    await box.apply(tar([{ name: 'pre/', type: 'dir', mtime: MTIME - 7 }, { name: 'pre/a/', type: 'dir', mtime: MTIME - 8 }, { name: 'pre/a/b', content: 'b' }, { name: 'pre/c', content: 'c' }]));
    assert.equal(lstatSync(at('pre')).mtimeMs, (MTIME - 7) * 1000);
    assert.equal(lstatSync(at('pre/a')).mtimeMs, (MTIME - 8) * 1000);
  });

  it('leaves the tree the same however the stream is chunked', async () => {
    const entries: Entry[] = [
      { name: 'd/', type: 'dir', mode: 0o751 },
      { name: 'd/one', content: Buffer.alloc(1000, 1) },
      { name: `d/${'l'.repeat(150)}`, content: 'long', xattrs: { 'user.x': Buffer.from([0x80]) } },
      { name: 'd/two', content: Buffer.alloc(513, 2) },
      { name: 'd/s', type: 'symlink', linkname: 'one' },
    ];
    const trees = [];
    for (const chunk of [1, 511, 512, 513, 1 << 20]) {
      await fresh();
      await applyLayer(box.root, chunked(tar(entries), chunk), { compression: 'none' });
      const t = snapshot(box.root);
      t.delete('.');
      trees.push(JSON.stringify([...t].map(([k, v]) => [k, { ...v, ino: 0 }])));
    }
    for (const t of trees) assert.equal(t, trees[0]);
    assert.ok(trees[0]!.includes('"user.x":"80"'));
  });
});
