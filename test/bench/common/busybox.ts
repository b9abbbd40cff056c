import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxImage } from '../../fixtures/images.js';
import { pushImage } from '../../helpers/push.js';
import { startRegistry } from '../../helpers/registry.js';
import type { Cleanup } from './cleanup.js';

/**
 * What the container benchmarks start from: a scratch directory, and
 * docker-registry on 127.0.0.1 holding the busybox fixture as `repo:tag`;
 * `cleanup` stops and removes both.
 */
export async function busyboxRegistry(cleanup: Cleanup, name: string, repo: string, tag: string): Promise<{ scratch: string; ref: string; digest: string }> {
  const scratch = await mkdtemp(join(tmpdir(), `berth-bench-${name}-`));
  cleanup.defer(`remove ${scratch}`, () => rm(scratch, { recursive: true, force: true }));
  const registry = await startRegistry();
  cleanup.defer('stop registry', () => registry.stop());
  const image = await busyboxImage();
  await pushImage(registry.url, repo, tag, image);
  const ref = `${registry.host}/${repo}:${tag}`;
  console.error(`pushed ${ref} (${image.digest})`);
  return { scratch, ref, digest: image.digest };
}
