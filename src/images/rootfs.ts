import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { applyLayer, readFileInRoot } from '../archive/index.js';
import type { ContentStore } from '../content/store.js';
import { BerthError, isBerthError } from '../errors.js';
import type { Logger } from '../log.js';
import { layerCompression } from '../oci/index.js';
import { generateSpec } from '../runtime/spec.js';
import type { ImageDetail } from './inventory.js';

/**
 * An image's root filesystem as a plain directory, and bundles (config.json
 * + rootfs/) built from it. Layers are applied in order into a temporary
 * sibling directory that is renamed into place only when every layer applied
 * and verified, so a failure or a crash never leaves a partial directory
 * under the requested name.
 */

/** Refuses a target that exists and is not an empty directory. */
async function checkTarget(dir: string): Promise<void> {
  try {
    const entries = await readdir(dir);
    if (entries.length > 0) throw new BerthError('ALREADY_EXISTS', `${dir} exists and is not empty`, { hint: 'choose a new directory or remove it first' });
    await rm(dir, { recursive: true });
  } catch (err) {
    if (isBerthError(err)) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new BerthError('ALREADY_EXISTS', `${dir} exists and is not a directory`);
    if (code !== 'ENOENT') throw new BerthError('INTERNAL', `cannot use ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

/** Builds in a temporary sibling of `dir`, then renames it into place. */
async function buildAtomically(dir: string, build: (tmp: string) => Promise<void>): Promise<void> {
  await checkTarget(dir);
  const tmp = join(dirname(dir), `.${basename(dir)}.berth-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp, { mode: 0o755 });
  try {
    await build(tmp);
    await rename(tmp, dir);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

export async function writeRootfs(content: ContentStore, image: ImageDetail, dir: string, logger: Logger): Promise<void> {
  const { manifest, config } = image;
  if (!manifest || !config) {
    throw new BerthError('NOT_FOUND', `${image.record.name}: its manifest or config is not in the content store`, { hint: `pull it again: berth image pull ${image.record.name}` });
  }
  await buildAtomically(dir, async (tmp) => {
    for (const [i, layer] of manifest.layers.entries()) {
      const compression = layerCompression(layer.mediaType);
      const diffId = config.rootfs.diff_ids[i];
      if (!compression || !diffId) throw new BerthError('UNSUPPORTED', `${image.record.name}: layer ${i} (${layer.digest}) cannot be applied`);
      if (!(await content.info(layer.digest))) {
        throw new BerthError('NOT_FOUND', `${image.record.name}: layer ${layer.digest} is not in the content store`, { hint: `pull it again: berth image pull ${image.record.name}` });
      }
      await applyLayer(tmp, await content.reader(layer.digest), { compression, diffId, logger });
    }
  });
}

/** DIR/config.json from the image config, DIR/rootfs/ from its layers. */
export async function createBundle(content: ContentStore, image: ImageDetail, dir: string, logger: Logger): Promise<void> {
  if (!image.config) throw new BerthError('NOT_FOUND', `${image.record.name}: its config is not in the content store`);
  const config = image.config;
  await buildAtomically(dir, async (tmp) => {
    const rootfs = join(tmp, 'rootfs');
    await writeRootfs(content, image, rootfs, logger);
    const files = {
      passwd: (await readFileInRoot(rootfs, '/etc/passwd', 1 << 20))?.toString('utf8'),
      group: (await readFileInRoot(rootfs, '/etc/group', 1 << 20))?.toString('utf8'),
    };
    const spec = generateSpec(config, {}, { files });
    await writeFile(join(tmp, 'config.json'), JSON.stringify(spec, null, 2) + '\n', { mode: 0o644 });
  });
}
