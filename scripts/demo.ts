/**
 * The demo (until the reconciler exists): build images from busybox-static in
 * code, start Debian's docker-registry on a free loopback port, push the images,
 * then drive the real `berth` CLI: pull and unpack (with progress), pull another
 * platform from an index, list, write a bundle and run its busybox, export to
 * an OCI archive and import it into a second root (the air-gap path), verify.
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

function berthIn(lib: string, ...args: string[]): void {
  console.log(`\n$ berth ${args.join(' ')}`);
  execFileSync(process.execPath, [berthMain, '--root', join(root, lib), '--state', state, ...args], { stdio: 'inherit' });
}
const berth = (...args: string[]): void => berthIn('lib', ...args);

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
  const bundle = join(root, 'bundle');
  berth('bundle', 'create', '--image', `${registry.host}/demo/busybox:1.0`, bundle);
  console.log(`\n$ ${bundle}/rootfs/bin/busybox echo ...`);
  execFileSync(join(bundle, 'rootfs/bin/busybox'), ['echo', 'hello from the unpacked image'], { stdio: 'inherit' });
  const archive = join(root, 'busybox.oci.tar');
  berth('image', 'export', `${registry.host}/demo/busybox:1.0`, archive);
  console.log(`\n(a second, empty root: the device on the other side of the air gap)`);
  berthIn('device', 'image', 'import', archive);
  berthIn('device', 'image', 'ls');
  berth('content', 'verify');
} finally {
  await registry.stop();
  if (process.argv.includes('--keep')) console.log(`\ndemo state kept in ${root}`);
  else rmSync(root, { recursive: true, force: true });
}
