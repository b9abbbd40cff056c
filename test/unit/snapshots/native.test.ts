import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, chown, lstat, mkdtemp, link, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { lgetxattr, lsetxattr } from '../../../src/linux/index.js';
import { withMounts } from '../../../src/mount/index.js';
import { NativeSnapshotter } from '../../../src/snapshots/index.js';
import { snapshotterConformance, unmountUnder } from '../../suites/snapshotter.js';
import { crashTests, harness, testBase } from './common.js';

const open = (root: string) => NativeSnapshotter.open({ root });

/** A VFS_CAP_REVISION_2 security.capability value granting cap_net_bind_service (bit 10), permitted and effective. */
const CAP_NET_BIND_SERVICE = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

snapshotterConformance('NativeSnapshotter', harness(open));
crashTests('NativeSnapshotter', open);

describe('NativeSnapshotter', () => {
  let dir: string;
  let mnt: string;
  let sn: NativeSnapshotter;

  before(async () => {
    dir = await mkdtemp(join(await testBase(), 'berth-native-'));
    mnt = join(dir, 'mnt');
    sn = await open(join(dir, 'root'));
  });
  after(async () => {
    await sn.close();
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  });

  it('copies the parent\'s tree whole: hardlinks, symlinks, devices, FIFOs, owners, modes, times', async () => {
    const mtime = new Date('2001-02-03T04:05:06Z');
    await sn.prepare('a');
    await withMounts(await sn.mounts('a'), mnt, async (d) => {
      await writeFile(join(d, 'file'), 'content');
      await link(join(d, 'file'), join(d, 'hardlink'));
      await symlink('../dangling/target', join(d, 'sym'));
      execFileSync('mknod', [join(d, 'null'), 'c', '1', '3']);
      execFileSync('mkfifo', [join(d, 'fifo')]);
      await writeFile(join(d, 'suid'), '#!/bin/sh\n');
      await chown(join(d, 'suid'), 1234, 5678);
      await chmod(join(d, 'suid'), 0o4755);
      lsetxattr(join(d, 'file'), 'user.berth', Buffer.from('kept'));
      lsetxattr(join(d, 'suid'), 'security.capability', CAP_NET_BIND_SERVICE);
      await utimes(join(d, 'file'), mtime, mtime);
    });
    await sn.commit('L1', 'a');
    await sn.prepare('b', 'L1');
    await withMounts(await sn.mounts('b'), mnt, async (d) => {
      const [f, h] = [await lstat(join(d, 'file')), await lstat(join(d, 'hardlink'))];
      assert.equal(f.ino, h.ino, 'a hardlink pair stays one inode');
      assert.equal(f.mtime.toISOString(), mtime.toISOString());
      assert.equal(await readFile(join(d, 'file'), 'utf8'), 'content');
      assert.ok((await lstat(join(d, 'sym'))).isSymbolicLink());
      const dev = await lstat(join(d, 'null'));
      assert.ok(dev.isCharacterDevice() && dev.rdev === 0x103, `char device 1:3, rdev ${dev.rdev.toString(16)}`);
      assert.ok((await lstat(join(d, 'fifo'))).isFIFO());
      const s = await lstat(join(d, 'suid'));
      assert.deepEqual([s.uid, s.gid, (s.mode & 0o7777).toString(8)], [1234, 5678, '4755']);
      assert.equal(lgetxattr(join(d, 'file'), 'user.berth')?.toString(), 'kept');
      assert.deepEqual(lgetxattr(join(d, 'suid'), 'security.capability'), CAP_NET_BIND_SERVICE);
      await writeFile(join(d, 'file'), 'changed in the child');
    });
    await sn.view('v', 'L1');
    await withMounts(await sn.mounts('v'), mnt, async (d) => {
      assert.equal(await readFile(join(d, 'file'), 'utf8'), 'content', 'the child\'s copy is its own');
    });
  });

  it('makes a view without copying: a read-only bind of the committed parent', async () => {
    await sn.prepare('big');
    await withMounts(await sn.mounts('big'), mnt, (d) => writeFile(join(d, 'data'), Buffer.alloc(200_000, 1)));
    await sn.commit('BIG', 'big');
    const [m] = await sn.view('big-view', 'BIG');
    assert.deepEqual(m?.options, ['ro', 'rbind']);
    assert.equal((await sn.usage('big-view')).inodes, 1, 'the view holds no files of its own');
    assert.ok((await sn.usage('BIG')).size >= 200_000);
  });
});
