import assert from 'node:assert/strict';
import { access, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { isMountPoint, mountAll, mountPoints, overlaySupported, unmount, withMounts } from '../../../src/mount/index.js';
import type { Mount } from '../../../src/oci/mount.js';
import { rejectsWith } from '../../suites/content.js';
import { unmountUnder } from '../../suites/snapshotter.js';

const inMountinfo = async (path: string) => (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').some((l) => l.split(' ')[4] === path);
const exists = (p: string) => access(p).then(() => true, () => false);

async function assertErrno(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: NodeJS.ErrnoException) => err.code === code || assert.fail(`expected ${code}, got ${String(err)}`));
}

describe('mount', () => {
  let dir: string;
  let src: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-mount-'));
    src = join(dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 'f'), 'source');
  });
  after(async () => {
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  });

  it('bind-mounts read-write and read-only; ro refuses writes with EROFS', async () => {
    const rw = join(dir, 'rw');
    const ro = join(dir, 'ro');
    await mountAll([{ type: 'bind', source: src, options: ['rw', 'rbind'] }], rw);
    await mountAll([{ type: 'bind', source: src, options: ['ro', 'rbind'] }], ro);
    assert.ok(await isMountPoint(rw));
    assert.ok(await inMountinfo(ro));
    await writeFile(join(rw, 'written'), 'through the bind');
    assert.equal(await readFile(join(src, 'written'), 'utf8'), 'through the bind');
    assert.equal(await readFile(join(ro, 'written'), 'utf8'), 'through the bind');
    await assertErrno(writeFile(join(ro, 'no'), 'x'), 'EROFS');
    await assertErrno(rm(join(ro, 'f')), 'EROFS');
    await unmount(rw);
    await unmount(ro);
    assert.equal(await isMountPoint(rw), false);
    assert.equal(await inMountinfo(ro), false);
    assert.equal(await readFile(join(src, 'f'), 'utf8'), 'source');
  });

  it('turns flag options into mount(2) flags and passes the rest to the filesystem', async () => {
    /** The per-mount options field (6th) of target's mountinfo line. */
    const flagsOf = async (path: string) => (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').find((l) => l.split(' ')[4] === path)?.split(' ')[5]?.split(',') ?? [];
    const bound = join(dir, 'flags-bind');
    await mountAll([{ type: 'bind', source: src, options: ['rbind', 'ro', 'nosuid', 'nodev', 'noexec'] }], bound);
    assert.deepEqual((await flagsOf(bound)).filter((f) => ['ro', 'nosuid', 'nodev', 'noexec'].includes(f)).sort(), ['nodev', 'noexec', 'nosuid', 'ro']);
    await unmount(bound);

    const [lower, upper, work, merged] = ['fl-lower', 'fl-upper', 'fl-work', 'fl-merged'].map((n) => join(dir, n)) as [string, string, string, string];
    for (const d of [lower, upper, work]) await mkdir(d);
    await writeFile(join(lower, 'l'), 'lower');
    // "ro" and "nodev" are flags; lowerdir, upperdir and workdir are overlay's data: a ro overlay with an upper mounts and refuses writes.
    await mountAll([{ type: 'overlay', source: 'overlay', options: ['ro', 'nodev', `lowerdir=${lower}`, `upperdir=${upper}`, `workdir=${work}`] }], merged);
    assert.ok((await flagsOf(merged)).includes('ro') && (await flagsOf(merged)).includes('nodev'));
    assert.equal(await readFile(join(merged, 'l'), 'utf8'), 'lower');
    await assertErrno(writeFile(join(merged, 'new'), 'x'), 'EROFS');
    await unmount(merged);
    assert.equal(await inMountinfo(merged), false);
  });

  it('unmounts a directory that is not mounted, or does not exist, without complaint', async () => {
    const plain = join(dir, 'plain');
    await mkdir(plain);
    await unmount(plain);
    await unmount(join(dir, 'never-existed'));
    await unmount(plain, { lazy: true });
    assert.equal(await isMountPoint(plain), false);
  });

  it('unmounts everything stacked on a target', async () => {
    const other = join(dir, 'other');
    await mkdir(other, { recursive: true });
    await writeFile(join(other, 'g'), 'other');
    const target = join(dir, 'stacked');
    await mountAll([{ type: 'bind', source: src, options: ['rbind'] }, { type: 'bind', source: other, options: ['ro', 'rbind'] }], target);
    assert.deepEqual(await readdir(target), ['g'], 'the last mount is on top');
    assert.equal((await mountPoints()).filter((p) => p === target).length, 2);
    await unmount(target);
    assert.equal(await inMountinfo(target), false);
    assert.deepEqual(await readdir(target), []);
  });

  it('withMounts unmounts and removes its directory after fn, also when fn throws', async () => {
    const parent = join(dir, 'with');
    let seen = '';
    const value = await withMounts([{ type: 'bind', source: src, options: ['ro', 'rbind'] }], parent, async (d) => {
      seen = d;
      assert.ok(await inMountinfo(d));
      return readFile(join(d, 'f'), 'utf8');
    });
    assert.equal(value, 'source');
    assert.equal(await inMountinfo(seen), false);
    assert.equal(await exists(seen), false);

    await assert.rejects(
      withMounts([{ type: 'bind', source: src, options: ['rbind'] }], parent, async (d) => {
        seen = d;
        throw new Error('fn failed');
      }),
      /fn failed/,
    );
    assert.equal(await inMountinfo(seen), false, 'unmounted after a throw');
    assert.equal(await exists(seen), false);
    assert.equal(await readFile(join(src, 'f'), 'utf8'), 'source', 'the mounted files survive the cleanup');
    assert.deepEqual(await readdir(parent), []);
  });

  it('withMounts detaches a mount that fn left busy', async () => {
    const parent = join(dir, 'busy');
    let seen = '';
    let fh: Awaited<ReturnType<typeof import('node:fs/promises').open>> | undefined;
    await withMounts([{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }], parent, async (d) => {
      seen = d;
      fh = await (await import('node:fs/promises')).open(join(d, 'open-file'), 'w');
    });
    try {
      assert.equal(await inMountinfo(seen), false);
      assert.equal(await exists(seen), false);
    } finally {
      await fh?.close();
    }
  });

  it('mounts tmpfs with its options', async () => {
    const target = join(dir, 'tmpfs');
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m', 'mode=0750'] }], target);
    assert.equal(((await stat(target)).mode & 0o777).toString(8), '750');
    await assert.rejects(writeFile(join(target, 'big'), Buffer.alloc(2 << 20)), (err: NodeJS.ErrnoException) => err.code === 'ENOSPC');
    await unmount(target);
  });

  it('fails with FAILED_PRECONDITION naming type, target and what the kernel said; mounts nothing', async () => {
    const target = join(dir, 'bad-overlay');
    const bad: Mount = { type: 'overlay', source: 'overlay', options: [`lowerdir=${join(dir, 'missing-a')}:${join(dir, 'missing-b')}`] };
    await rejectsWith(mountAll([bad], target), 'FAILED_PRECONDITION', (err) => {
      assert.ok(err.message.includes('overlay') && err.message.includes(target), err.message);
      const kernel = err.details['kernel'] as string[];
      assert.ok(kernel.length > 0 && kernel.some((l) => l.includes('missing-a')), `the kernel's own reason: ${JSON.stringify(kernel)}`);
      assert.ok(kernel.some((l) => err.message.includes(l)), err.message);
      assert.equal(err.details['target'], target);
    });
    assert.equal(await inMountinfo(target), false);

    const rolled = join(dir, 'rolled-back');
    await rejectsWith(mountAll([{ type: 'bind', source: src, options: ['rbind'] }, bad], rolled), 'FAILED_PRECONDITION');
    assert.equal(await inMountinfo(rolled), false, 'the mounts before the failing one are undone');

    await rejectsWith(mountAll([{ type: 'bind', source: join(dir, 'no-such-source'), options: ['rbind'] }], join(dir, 'b')), 'FAILED_PRECONDITION', (err) =>
      assert.ok(err.message.includes('no-such-source'), err.message),
    );
    await rejectsWith(mountAll([{ type: 'bind', source: src, options: ['a,b'] }], join(dir, 'c')), 'INVALID_ARGUMENT');
    await rejectsWith(mountAll([], 'relative/target'), 'INVALID_ARGUMENT');
  });

  it('mounts an overlay of 200 lowerdirs whose absolute options are twice a page, with relative paths', async () => {
    const layers = join(dir, 'a-long-directory-name-so-that-absolute-lowerdirs-overflow-the-page', 'snapshots');
    const lowers: string[] = [];
    for (let i = 0; i < 200; i++) {
      const l = join(layers, String(i), 'fs');
      await mkdir(l, { recursive: true });
      await writeFile(join(l, `f${i}`), String(i));
      await writeFile(join(l, 'top'), String(i));
      lowers.unshift(l);
    }
    const m: Mount = { type: 'overlay', source: 'overlay', options: [`lowerdir=${lowers.join(':')}`] };
    assert.ok(m.options[0]!.length > 8192, `${m.options[0]!.length} bytes`);
    await withMounts([m], join(dir, 'ov'), async (d) => {
      assert.equal((await readdir(d)).length, 201);
      assert.equal(await readFile(join(d, 'top'), 'utf8'), '199', 'the first lowerdir is on top');
      assert.equal(await readFile(join(d, 'f0'), 'utf8'), '0');
    });
  });

  it('reads mount points with spaces in their path', async () => {
    const target = join(dir, 'with space');
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['size=1m'] }], target);
    assert.ok(await isMountPoint(target));
    assert.ok((await mountPoints()).includes(target));
    await unmount(target);
    assert.equal(await isMountPoint(target), false);
  });
});

describe('overlaySupported', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-ovl-check-'));
  });
  after(async () => {
    await unmountUnder(dir);
    await rm(dir, { recursive: true, force: true });
  });

  it('is true on a filesystem that holds upper directories (tmpfs), and leaves nothing behind', async () => {
    const t = join(dir, 'tmpfs');
    await mountAll([{ type: 'tmpfs', source: 'tmpfs', options: ['size=8m'] }], t);
    assert.equal(await overlaySupported(t), true);
    assert.deepEqual(await readdir(t), []);
    assert.equal((await mountPoints()).filter((p) => p.startsWith(t + '/')).length, 0);
    await unmount(t);
  });

  it('is false inside an overlay (overlay cannot be an upper filesystem), and leaves nothing behind', async () => {
    const parts = ['lower', 'upper', 'work'].map((p) => join(dir, 'ovl', p));
    for (const p of parts) await mkdir(p, { recursive: true });
    const merged = join(dir, 'ovl', 'merged');
    await mountAll([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${parts[0]}`, `upperdir=${parts[1]}`, `workdir=${parts[2]}`] }], merged);
    const logged: string[] = [];
    const logger = { debug() {}, warn() {}, error() {}, info: (msg: string, f?: Record<string, unknown>) => void logged.push(`${msg} ${JSON.stringify(f)}`), child() { return logger; } };
    assert.equal(await overlaySupported(join(merged, 'snapshots'), { logger }), false);
    assert.equal(logged.length, 1);
    assert.match(logged[0]!, /not supported as upperdir|overlay mount failed/);
    assert.deepEqual(await readdir(join(merged, 'snapshots')), []);
    await unmount(merged);
  });
});
