import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { nullLogger, type Logger } from '../log.js';
import { isMountPoint, mountAll, unmount } from './mount.js';

/**
 * Whether overlay snapshots can live in `dir`: the kernel has overlayfs and
 * the filesystem of `dir` can hold upper directories. Decided by doing it
 * (containerd's overlayutils.Supported does the same): a tiny overlay with
 * two lowers is mounted in a scratch directory under `dir`, a lower file is
 * deleted (a whiteout) and a lower directory replaced (an opaque directory)
 * through it, and the merged view is checked. Some filesystems refuse upper
 * directories (overlay itself, some tmpfs or ecryptfs setups) or whiteouts
 * and xattrs; /proc/filesystems alone cannot tell, and a missing entry there
 * only means the module is not loaded yet (mounting loads it). Why it is
 * not supported is logged at info.
 */
export async function overlaySupported(dir: string, opts: { logger?: Logger } = {}): Promise<boolean> {
  const logger = opts.logger ?? nullLogger;
  const no = async (why: string, err?: unknown) => {
    const listed = (await readFile('/proc/filesystems', 'utf8').catch(() => '')).split('\n').some((l) => l.trim().split(/\s+/).pop() === 'overlay');
    logger.info('overlay snapshots not supported here', { dir, why, kernelListsOverlay: listed, ...(err ? { error: String(err) } : {}) });
    return false;
  };
  const root = resolve(dir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const scratch = await mkdtemp(join(root, '.overlay-check-'));
  const merged = join(scratch, 'merged');
  try {
    const [lower1, lower2, upper, work] = ['lower1', 'lower2', 'upper', 'work'].map((d) => join(scratch, d)) as [string, string, string, string];
    for (const d of [lower1, lower2, upper, work, merged, join(lower2, 'dir')]) await mkdir(d);
    await writeFile(join(lower1, 'kept'), 'x');
    await writeFile(join(lower2, 'gone'), 'x');
    await writeFile(join(lower2, 'dir', 'old'), 'x');
    try {
      await mountAll([{ type: 'overlay', source: 'overlay', options: [`lowerdir=${lower1}:${lower2}`, `upperdir=${upper}`, `workdir=${work}`] }], merged);
    } catch (err) {
      return await no('the overlay mount failed', err);
    }
    try {
      await rm(join(merged, 'gone'));
      await rm(join(merged, 'dir'), { recursive: true });
      await mkdir(join(merged, 'dir'));
      const top = (await readdir(merged)).sort().join(',');
      const inDir = (await readdir(join(merged, 'dir'))).length;
      if (top !== 'dir,kept' || inDir !== 0) return await no(`the merged view shows [${top}] and ${inDir} entries in a replaced directory`);
      return true;
    } catch (err) {
      return await no('whiteouts or opaque directories cannot be written', err);
    } finally {
      await unmount(merged);
    }
  } finally {
    // Never recurse into a mount that could not be undone.
    if (!(await isMountPoint(merged))) await rm(scratch, { recursive: true, force: true });
  }
}
