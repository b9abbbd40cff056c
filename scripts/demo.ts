/**
 * The demo (until the reconciler exists): build images from busybox-static in
 * code, start Debian's docker-registry on a free loopback port, push the images,
 * then drive the real `berth` CLI: pull and unpack (with progress), pull another
 * platform from an index, list, write a bundle, run containers (one-off with
 * its exit code, a detached service with logs, exec, stop, rm), export to an
 * OCI archive and import it into a second root (the air-gap path), verify.
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
/** Runs berth expecting a failure exit code, and shows it. */
function berthExpecting(code: number, ...args: string[]): void {
  console.log(`\n$ berth ${args.join(' ')}`);
  try {
    execFileSync(process.execPath, [berthMain, '--root', join(root, 'lib'), '--state', state, ...args], { stdio: 'inherit' });
  } catch (err) {
    const status = (err as { status?: number }).status;
    if (status !== code) throw err;
    console.log(`(exit code ${status}, as expected)`);
    return;
  }
  throw new Error(`berth ${args.join(' ')} exited 0, expected ${code}`);
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
  const ref = `${registry.host}/demo/busybox:1.0`;
  berth('bundle', 'create', '--image', ref, join(root, 'bundle'));
  berth('run', '--rm', ref, '--', 'sh', '-c', 'echo hello from a container on $(hostname); id');
  berthExpecting(7, 'run', '--rm', ref, '--', 'sh', '-c', 'echo exiting with 7 >&2; exit 7');
  berth('run', '-d', '--name', 'ticker', '--memory', '32Mi', ref, '--', 'sh', '-c', 'trap "echo bye; exit 0" TERM; while true; do date; sleep 0.2; done');
  execFileSync('sleep', ['1']);
  berth('ps');
  berth('logs', '--tail', '2', 'ticker');
  berth('exec', 'ticker', '--', 'sh', '-c', 'echo inside ticker: pid 1 is $(cat /proc/1/comm)');
  berth('stop', 'ticker');
  berth('ps');
  berth('rm', 'ticker');
  const archive = join(root, 'busybox.oci.tar');
  berth('image', 'export', `${registry.host}/demo/busybox:1.0`, archive);
  console.log(`\n(a second, empty root: the device on the other side of the air gap)`);
  berthIn('device', 'image', 'import', archive);
  berthIn('device', 'image', 'ls');
  berth('content', 'verify');
} finally {
  // A failed step may leave the demo container running; remove it before its root goes.
  try {
    execFileSync(process.execPath, [berthMain, '--root', join(root, 'lib'), '--state', state, 'rm', '-f', 'ticker'], { stdio: 'ignore' });
  } catch {
    // Already removed.
  }
  await registry.stop();
  if (process.argv.includes('--keep')) console.log(`\ndemo state kept in ${root}`);
  else rmSync(root, { recursive: true, force: true });
}
