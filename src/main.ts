#!/usr/bin/env node
/**
 * berth's entry point: hands argv, the environment and the streams to the
 * CLI and turns its result into the exit code. The only place besides cli/
 * that touches `process`.
 */
import { constants as osConstants, homedir } from 'node:os';
import { remoteSocket, runRemote } from './cli/remote.js';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function onSignal(fn: (signal: number) => void): () => void {
  const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((name) => {
    const h = (): void => fn(osConstants.signals[name]);
    process.on(name, h);
    return [name, h] as const;
  });
  return () => handlers.forEach(([name, h]) => process.off(name, h));
}

const argv = process.argv.slice(2);
// A container command goes to the running daemon when there is one (cli/remote.ts): only that module is loaded for it.
const socket = remoteSocket(argv, process.env, process.cwd());
const served =
  socket === undefined
    ? undefined
    : await runRemote(argv, socket, { env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: process.stderr, onSignal, die: (signal) => process.kill(process.pid, signal) });
process.exitCode = served ?? (await runLocally());

async function runLocally(): Promise<number> {
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
    onSignal,
  });
}
