/**
 * What the snapshotter tests share: a base directory on a filesystem that
 * can hold overlay upper directories, a harness factory, and the crash
 * test (a child process SIGKILLed while filling a snapshot).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { mountAll, overlaySupported, unmount } from '../../../src/mount/index.js';
import type { Snapshotter } from '../../../src/snapshots/snapshotter.js';
import { readTree, unmountUnder, type SnapshotterHarness } from '../../suites/snapshotter.js';

const INDEX_URL = new URL('../../../src/snapshots/index.js', import.meta.url).href;
const MOUNT_URL = new URL('../../../src/mount/index.js', import.meta.url).href;

export type Opener = (root: string) => Promise<Snapshotter>;

let base: Promise<string> | undefined;

/**
 * os.tmpdir() when overlay upper directories work there (ext4, xfs, btrfs,
 * tmpfs), else a tmpfs mounted for this test process (when /tmp is itself
 * an overlay, as in a container), unmounted when the tests end.
 */
export function testBase(): Promise<string> {
  return (base ??= (async () => {
    if (await overlaySupported(tmpdir())) return tmpdir();
    const dir = await mkdtemp(join(tmpdir(), 'berth-snap-tmpfs-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2g,mode=0700', 'tmpfs', dir]);
    after(async () => {
      await unmountUnder(dir);
      await rmdir(dir);
    });
    return dir;
  })());
}

/** A factory for snapshotterConformance: a fresh root under testBase(). */
export function harness(open: Opener): () => Promise<SnapshotterHarness> {
  return async () => {
    const dir = await mkdtemp(join(await testBase(), 'berth-snap-'));
    const root = join(dir, 'root');
    let current = await open(root);
    return {
      sn: current,
      root,
      async reopen() {
        await current.close();
        current = await open(root);
        return current;
      },
      async cleanup() {
        await current.close();
        await unmountUnder(dir);
        await rm(dir, { recursive: true, force: true });
      },
    };
  };
}

/**
 * A child opens the snapshotter `className` on `root`, prepares a snapshot
 * on L1, mounts it and writes files through the mount, then is SIGKILLed
 * before it commits. The snapshot must come back active (never committed),
 * with its files, and removable; nothing is left behind.
 */
export function crashTests(className: string, open: Opener): void {
  describe(`${className}: a process killed while filling a snapshot`, () => {
    it('leaves an active snapshot that reopens as active and is removable', async () => {
      const h = await harness(open)();
      try {
        const mnt = join(h.root, '..', 'mnt');
        await h.sn.prepare('a');
        await mountAll(await h.sn.mounts('a'), mnt);
        await writeFile(join(mnt, 'base'), 'L1');
        await unmount(mnt);
        await h.sn.commit('L1', 'a');

        const code = [
          `import * as s from ${JSON.stringify(INDEX_URL)};`,
          `import { mountAll } from ${JSON.stringify(MOUNT_URL)};`,
          `import { writeFile } from 'node:fs/promises';`,
          `const sn = await s.${className}.open({ root: ${JSON.stringify(h.root)} });`,
          `await mountAll(await sn.prepare('extract-L2', 'L1'), ${JSON.stringify(mnt)});`,
          `for (let i = 0; i < 200; i++) await writeFile(${JSON.stringify(mnt)} + '/f' + i, 'x'.repeat(i));`,
          `process.stdout.write('ready\\n');`,
          `for (let i = 200; ; i++) await writeFile(${JSON.stringify(mnt)} + '/f' + i, 'x'.repeat(i % 1000));`,
        ].join('\n');
        const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
        let stderr = '';
        child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
        const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
        await new Promise<void>((resolve, reject) => {
          child.stdout.setEncoding('utf8').on('data', (s: string) => s.includes('ready') && resolve());
          child.on('exit', () => reject(new Error(`child exited before it was ready: ${stderr}`)));
        });
        child.kill('SIGKILL');
        assert.equal(await exited, 'SIGKILL');
        await unmount(mnt); // the dead writer's mount stays in our namespace

        const sn = await h.reopen();
        const st = await sn.stat('extract-L2');
        assert.equal(st.kind, 'active', 'a snapshot killed before commit is active, never committed');
        assert.equal(st.parent, 'L1');
        assert.deepEqual((await sn.list()).map((i) => [i.key, i.kind]), [['L1', 'committed'], ['extract-L2', 'active']]);
        await mountAll(await sn.mounts('extract-L2'), mnt);
        const tree = await readTree(mnt);
        await unmount(mnt);
        assert.equal(tree['base'], 'file:L1');
        for (let i = 0; i < 200; i++) assert.equal(tree[`f${i}`], `file:${'x'.repeat(i)}`, `f${i}, written before "ready"`);
        await sn.remove('extract-L2');
        await rejectsNotFound(sn, 'extract-L2');
        assert.equal(await sn.cleanup(), 0);
        assert.equal((await readdir(join(h.root, 'snapshots'))).length, 1, 'only L1 is left');
      } finally {
        await h.cleanup();
      }
    });
  });
}

async function rejectsNotFound(sn: Snapshotter, key: string): Promise<void> {
  await assert.rejects(sn.stat(key), (err: { code?: string }) => err.code === 'NOT_FOUND');
}
