/**
 * The demo: the main job end to end, on a fresh machine, with no network
 * beyond loopback. It builds the example images from busybox-static in
 * code, starts Debian's docker-registry on a free loopback port (mapped to
 * `registry.demo`, the name examples/ use, by a registries.yaml mirror),
 * and then drives the real `berth` CLI over a copy of examples/:
 * validate, plan, apply, status, logs; a second apply that changes
 * nothing; an edit that replaces exactly one container, and why; a removed
 * file pruned; a broken file among good ones; the daemon keeping restart
 * policies; and the air-gap path (export, import into a second root).
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { busyboxImage, makeImage, busyboxLayerFiles } from '../test/fixtures/images.js';
import { pushImage } from '../test/helpers/push.js';
import { startRegistry } from '../test/helpers/registry.js';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// The command as installed (package.json's bin); npm run build made it.
const berthCommand = join(repo, 'dist', 'src', 'bin.cjs');
const root = mkdtempSync(join(tmpdir(), 'berth-demo-'));
const state = join(root, 'run');
const manifests = join(root, 'manifests');
const registriesYaml = join(root, 'registries.yaml');

function berthArgs(lib: string, args: string[]): string[] {
  return ['--root', join(root, lib), '--state', state, '--registry-config', registriesYaml, ...args];
}

/** Runs berth, showing the command line; returns its exit code, failing the demo unless it is one of `codes`. */
function berthIn(lib: string, args: string[], codes: number[] = [0]): number {
  console.log(`\n$ berth ${args.map((a) => (a.startsWith(root) ? a.replace(root, '$DEMO') : a)).join(' ')}`);
  let status = 0;
  try {
    execFileSync(berthCommand, berthArgs(lib, args), { stdio: 'inherit' });
  } catch (err) {
    status = (err as { status?: number }).status ?? -1;
  }
  if (!codes.includes(status)) throw new Error(`berth ${args.join(' ')} exited ${status}, expected ${codes.join(' or ')}`);
  if (status !== 0) console.log(`(exit code ${status}, as expected)`);
  return status;
}
const berth = (...args: string[]): number => berthIn('lib', args);
const say = (text: string): void => console.log(`\n# ${text}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const registry = await startRegistry();
let daemon: ReturnType<typeof spawn> | undefined;
try {
  say(`a local registry (Debian's docker-registry) on ${registry.host}, known to berth as registry.demo`);
  writeFileSync(registriesYaml, `mirrors:\n  registry.demo:\n    endpoint:\n      - "http://${registry.host}"\n`);
  await pushImage(registry.url, 'berth/busybox', '1.0', await busyboxImage({ extraLayers: 1 }));
  await pushImage(registry.url, 'berth/busybox', '2.0', await makeImage({ layers: [await busyboxLayerFiles(), [{ path: 'etc', type: 'dir' }, { path: 'etc/release', content: '2.0\n' }]] }));
  console.log('pushed registry.demo/berth/busybox:1.0 and :2.0, built in code from /bin/busybox');
  cpSync(join(repo, 'examples'), manifests, { recursive: true });
  const dir = (name: string): string => join(manifests, name);

  say('validate every example, then plan: exit code 2 means changes are pending');
  berth('validate', '-f', manifests);
  berthIn('lib', ['plan', '-f', dir('single-service'), '-f', dir('with-dependencies'), '-f', dir('device-prefetch')], [2]);

  say('apply: pulls first (in parallel), then containers in dependency order');
  berth('apply', '-f', dir('single-service'), '-f', dir('with-dependencies'), '-f', dir('device-prefetch'));
  berth('status');
  berth('ps');
  console.log('\n$ curl http://127.0.0.1:18080/');
  await sleep(300);
  console.log(execFileSync('curl', ['-s', '--retry', '5', '--retry-connrefused', '--retry-delay', '1', 'http://127.0.0.1:18080/'], { encoding: 'utf8' }).trim());
  berth('logs', 'db');

  say('a second apply is a no-op: nothing is restarted');
  berth('plan', '-f', dir('single-service'), '-f', dir('with-dependencies'), '-f', dir('device-prefetch'));

  say("an edit to api's env replaces exactly that container");
  const api = join(dir('with-dependencies'), 'api.yaml');
  writeFileSync(api, readFileSync(api, 'utf8').replace('LOG_LEVEL: info', 'LOG_LEVEL: debug'));
  berthIn('lib', ['plan', '-f', dir('single-service'), '-f', dir('with-dependencies'), '-f', dir('device-prefetch')], [2]);
  berth('apply', '-f', dir('single-service'), '-f', dir('with-dependencies'), '-f', dir('device-prefetch'));
  berth('explain', 'api');

  say('a removed file is pruned with --prune; a broken file among good ones is reported, the good ones still converge');
  unlinkSync(join(dir('with-dependencies'), 'worker.yaml'));
  writeFileSync(join(dir('with-dependencies'), 'broken.yaml'), 'apiVersion: berth/v1\nkind: Container\nmetadata: { name: broken }\nspec:\n  image: registry.demo/berth/busybox:1.0\n  restart: { policy: sometimes }\n');
  berthIn('lib', ['apply', '--prune', '-f', dir('single-service'), '-f', dir('with-dependencies'), '-f', dir('device-prefetch')], [1]);
  berth('ps');

  say('the daemon: watches the manifests, keeps restart policies, serves the API; containers outlive it');
  berth('rm', '-f', 'web', 'db', 'api');
  daemon = spawn(berthCommand, berthArgs('lib', ['daemon', '-f', dir('restart-policies')]), { stdio: 'inherit' });
  await sleep(7000);
  berth('ps');
  berth('status');
  console.log('\n$ berth events -o text   # its last 6 exits and restarts');
  const events = execFileSync(berthCommand, berthArgs('lib', ['events', '-o', 'text']), { encoding: 'utf8' });
  const kept = events.split('\n').filter((l) => /container\.(restart|gave-up|exited)/.test(l));
  if (!kept.length) throw new Error('berth events shows no exit or restart of the restart-policies containers');
  console.log(kept.slice(-6).join('\n'));
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon!.once('exit', r));
  daemon = undefined;
  berth('ps');

  say('the air-gap path: export to an OCI archive, import into a second, empty root');
  const archive = join(root, 'busybox.oci.tar');
  berth('image', 'export', 'registry.demo/berth/busybox:1.0', archive);
  berthIn('device', ['image', 'import', archive]);
  berthIn('device', ['image', 'ls']);
  berth('content', 'verify');
} finally {
  daemon?.kill('SIGKILL');
  // Remove the demo's containers before its root goes, whatever step failed.
  try {
    const names = JSON.parse(execFileSync(berthCommand, berthArgs('lib', ['ps', '-o', 'json']), { encoding: 'utf8' })) as Array<{ name: string }>;
    if (names.length) execFileSync(berthCommand, berthArgs('lib', ['rm', '-f', ...names.map((n) => n.name)]), { stdio: 'ignore' });
  } catch {
    // Nothing to remove, or berth itself failed: the error above says why.
  }
  await registry.stop();
  if (process.argv.includes('--keep')) console.log(`\ndemo state kept in ${root}`);
  else rmSync(root, { recursive: true, force: true });
}
