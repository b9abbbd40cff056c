/**
 * Running berth in tests: in-process through openSystem (with a capturing
 * logger and event bus), or as the real CLI in a child process (exit codes,
 * output, signals).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LocalEventBus, type BerthEvent } from '../../src/events.js';
import { createLogger, type LogRecord } from '../../src/log.js';
import { hostPlatform } from '../../src/oci/platform.js';
import { openSystem, type System, type SystemOptions } from '../../src/system.js';

export const berthMain = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'main.js');

/**
 * The `berth` command as users start it (package.json's bin): bin.cjs run as
 * a program, through its first line (`env -S`, which moves
 * NODE_EXTRA_CA_CERTS aside before node starts), running the bundle that
 * `npm run build` made with its code cache. `node main.js` would skip all of
 * that. The build makes it executable.
 */
export const berthCommand = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'bin.cjs');

export interface TestSystem {
  sys: System;
  logs: LogRecord[];
  events: BerthEvent[];
}

export async function openTestSystem(root: string, opts: Partial<SystemOptions> = {}): Promise<TestSystem> {
  const logs: LogRecord[] = [];
  const events: BerthEvent[] = [];
  const bus = new LocalEventBus();
  bus.subscribe((e) => events.push(e));
  const sys = await openSystem({
    root: join(root, 'lib'),
    state: join(root, 'run'),
    logger: createLogger((r) => logs.push(r), 'debug'),
    events: bus,
    hostPlatform: hostPlatform(),
    pid: process.pid,
    isAlive: (pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    },
    ...opts,
  });
  return { sys, logs, events };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI; `done` resolves when it exits. */
export function startBerth(root: string, args: string[], env: Record<string, string> = {}, cwd?: string): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(berthCommand, ['--root', join(root, 'lib'), '--state', join(root, 'run'), ...args], {
    env: { ...process.env, DOCKER_CONFIG: join(root, 'docker'), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(cwd ? { cwd } : {}),
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done };
}

export function runBerth(root: string, args: string[], env: Record<string, string> = {}, cwd?: string): Promise<CliResult> {
  return startBerth(root, args, env, cwd).done;
}
