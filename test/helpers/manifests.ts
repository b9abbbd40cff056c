/**
 * Manifest directories against a real registry: the fixture images pushed
 * under the name examples/ use (registry.demo/berth/busybox), a
 * registries.yaml mirror mapping registry.demo to the test registry (or to
 * a fault proxy in front of it), manifests written as YAML, and the CLI and
 * the daemon started with that registry config.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { busyboxImage, busyboxLayerFiles, makeImage } from '../fixtures/images.js';
import { runBerth, startBerth, type CliResult } from './berth.js';
import { describeResult, eventually, type DaemonHandle } from './containers.js';
import { pushImage } from './push.js';
import type { RegistryHandle } from './registry.js';

export const DEMO_REPO = 'registry.demo/berth/busybox';

export interface DemoImages {
  /** busybox, gzip. */
  v1: string;
  /** busybox and one more layer (the base layer shared with v1). */
  v2: string;
  /** busybox and 1.5 MB of incompressible bytes in one layer: nothing shared with v1, slow through a throttle. */
  big: string;
}

/** Pushes the demo images to `reg` as berth/busybox:1.0, :2.0 and :big. */
export async function pushDemoImages(reg: RegistryHandle): Promise<DemoImages> {
  await pushImage(reg.url, 'berth/busybox', '1.0', await busyboxImage());
  await pushImage(reg.url, 'berth/busybox', '2.0', await makeImage({ layers: [await busyboxLayerFiles(), [{ path: 'etc', type: 'dir' }, { path: 'etc/release', content: '2.0\n' }]] }));
  await pushImage(reg.url, 'berth/busybox', 'big', await makeImage({ layers: [[...(await busyboxLayerFiles()), { path: 'noise', content: noise(1_500_000) }]] }));
  return { v1: `${DEMO_REPO}:1.0`, v2: `${DEMO_REPO}:2.0`, big: `${DEMO_REPO}:big` };
}

/** `size` bytes that do not compress, the same every run (sha256 in counter mode). */
function noise(size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i * 32 < size; i++) createHash('sha256').update(`berth noise ${i}`).digest().copy(out, i * 32);
  return out;
}

/** Writes a registries.yaml at `file` sending registry.demo to http://`host`. */
export async function writeMirrorConfig(file: string, host: string): Promise<string> {
  await writeFile(file, `mirrors:\n  registry.demo:\n    endpoint:\n      - "http://${host}"\n`);
  return file;
}

/** A shell loop that runs until SIGTERM (exits 0 at once on it). */
export const SERVE = ['/bin/sh', '-c', "trap 'exit 0' TERM; while true; do sleep 1; done"];

/** One Container manifest as YAML; `spec` is merged over an image and the SERVE command. */
export function containerYaml(name: string, spec: Record<string, unknown>, metadata: Record<string, unknown> = {}): string {
  return stringify({ apiVersion: 'berth/v1', kind: 'Container', metadata: { name, ...metadata }, spec: { command: SERVE, ...spec } });
}

/** Writes name → YAML text files into dir. */
export async function writeManifests(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
}

/** The CLI with a registry config (global --registry-config) on the test root. */
export function berthWith(registryConfig: string): (root: string, args: string[]) => Promise<CliResult> {
  return (root, args) => runBerth(root, ['--registry-config', registryConfig, ...args]);
}

/** Starts `berth daemon ARGS` with a registry config and waits until it supervises (see containers.ts startDaemon). */
export async function startDaemonWith(root: string, registryConfig: string, args: string[]): Promise<DaemonHandle> {
  const { child, done } = startBerth(root, ['--registry-config', registryConfig, '--log-level', 'info', 'daemon', ...args]);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const live = (): boolean => child.exitCode === null && child.signalCode === null;
  const h: DaemonHandle = {
    child,
    done,
    stderr: () => err,
    async stop() {
      if (live()) child.kill('SIGTERM');
      return done;
    },
    async kill() {
      if (live()) child.kill('SIGKILL');
      return done;
    },
  };
  const ready = await Promise.race([eventually('the daemon to supervise', async () => (err.includes('daemon supervising') ? true : undefined), 30_000, 50), done]);
  if (ready !== true) throw new Error(`berth daemon exited before it was ready: ${describeResult(ready)}`);
  return h;
}
