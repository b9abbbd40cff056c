/**
 * The demo (until the reconciler exists): build images from busybox-static in
 * code, start Debian's docker-registry on a free loopback port, push the images,
 * then drive the real `berth` CLI: pull (with progress), pull another platform
 * from an index, list, inspect and verify.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { busyboxImage, multiPlatformIndex } from '../test/fixtures/images.js';
import { pushImage } from '../test/helpers/push.js';
import { startRegistry } from '../test/helpers/registry.js';

const berthMain = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'main.js');
const root = mkdtempSync(join(tmpdir(), 'berth-demo-'));
const state = join(root, 'run');

function berth(...args: string[]): void {
  console.log(`\n$ berth ${args.join(' ')}`);
  execFileSync(process.execPath, [berthMain, '--root', join(root, 'lib'), '--state', state, ...args], { stdio: 'inherit' });
}

const registry = await startRegistry();
try {
  console.log(`registry: Debian docker-registry on ${registry.host}`);
  const image = await busyboxImage({ extraLayers: 2 });
  await pushImage(registry.url, 'demo/busybox', '1.0', image);
  const index = await multiPlatformIndex();
  await pushImage(registry.url, 'demo/multi', '1.0', index);
  console.log(`pushed ${registry.host}/demo/busybox:1.0 (${image.layers.length} layers) and ${registry.host}/demo/multi:1.0 (linux/amd64 + linux/arm64/v8)`);

  berth('image', 'pull', `${registry.host}/demo/busybox:1.0`);
  berth('image', 'pull', '--platform', 'linux/arm64', `${registry.host}/demo/multi:1.0`);
  berth('image', 'pull', `${registry.host}/demo/busybox:1.0`);
  berth('image', 'ls');
  berth('content', 'verify');
} finally {
  await registry.stop();
  if (process.argv.includes('--keep')) console.log(`\ndemo state kept in ${root}`);
  else rmSync(root, { recursive: true, force: true });
}
