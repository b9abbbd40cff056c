#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS BERTH_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node
/**
 * berth's entry point: hands argv, the environment and the streams to the
 * CLI and turns its result into the exit code. The only place besides cli/
 * that touches `process`.
 *
 * The `berth` command is bin.cts: it asks a running daemon first (through
 * cli/remote.ts alone, bundled on its own), then runs `runLocally` from the
 * bundle. Run directly (`node dist/src/main.js`), this module does the same
 * itself, and its first line does what bin.cts's does (see there).
 */
import { realpathSync } from 'node:fs';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onProcessSignal, serveFromDaemon } from './cli/remote.js';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs the line in this process: the full CLI, loaded now. */
export async function runLocally(argv: string[]): Promise<number> {
  const [{ runCli }, { hostPlatform }] = await Promise.all([import('./cli/run.js'), import('./oci/platform.js')]);
  return runCli(argv, {
    env: process.env,
    stdout: process.stdout,
    stderr: process.stderr,
    home: homedir(),
    pid: process.pid,
    isAlive,
    hostPlatform: hostPlatform(process.platform, process.arch),
    stdio: [0, 1, 2],
    onSignal: onProcessSignal,
    ...(process.argv[1] ? { self: [process.execPath, resolve(process.argv[1])] } : {}),
  });
}

/** Whether node was started on this file (not on bin.cts, which imports it). No top-level await: the bundle is CommonJS. */
function startedHere(): boolean {
  try {
    return process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
  } catch {
    return false;
  }
}

if (startedHere()) {
  const argv = process.argv.slice(2);
  void serveFromDaemon(argv)
    .then(async (served) => served ?? (await runLocally(argv)))
    .then((code) => {
      process.exitCode = code;
    });
}
