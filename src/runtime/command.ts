import { spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../errors.js';

/**
 * Running the runtime's tools (runc, conmon) and finding them. This uses
 * node:child_process rather than execa: importing execa costs 200–300 ms,
 * which is most of the start-to-exit time of a short container, and these
 * calls need nothing beyond exit code and captured output.
 */

/** Where Debian installs runc and conmon, searched after the caller's PATH. */
const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * The absolute path of `tool`, or FAILED_PRECONDITION naming the Debian
 * package to install. `systemDirs` replaces the system list (tests).
 */
export async function findTool(tool: string, pkg: string, searchPath: readonly string[] = [], systemDirs: readonly string[] = SYSTEM_DIRS): Promise<string> {
  for (const dir of [...searchPath, ...systemDirs]) {
    const path = join(dir, tool);
    if (await access(path, constants.X_OK).then(() => true, () => false)) return path;
  }
  throw new BerthError('FAILED_PRECONDITION', `${tool} is not installed (looked in ${[...new Set([...searchPath, ...systemDirs])].join(':')})`, {
    hint: `install the Debian package ${pkg}: apt-get install -y ${pkg}`,
    details: { tool, package: pkg },
  });
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, capturing its output (bounded: runc prints little). */
export function runCommand(file: string, args: readonly string[], opts: { stdio?: [number | 'ignore', number | 'pipe' | 'ignore', number | 'pipe' | 'ignore'] } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const cap = (into: Buffer[]) => (b: Buffer) => {
      if (into.reduce((n, x) => n + x.length, 0) < 1 << 20) into.push(b);
    };
    child.stdout?.on('data', cap(out));
    child.stderr?.on('data', cap(err));
    child.on('error', (e) => reject(new BerthError('INTERNAL', `cannot run ${file}: ${e.message}`, { cause: e })));
    child.on('close', (code, signal) =>
      resolve({ code: code ?? 128 + signalNumber(signal), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
  });
}

function signalNumber(signal: NodeJS.Signals | null): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };
  return (signal && table[signal]) ?? 0;
}

/**
 * The message in runc's (logrus) error output: `msg="..."` when present,
 * else the last non-empty line.
 */
export function runcMessage(stderr: string): string {
  const msgs = [...stderr.matchAll(/msg="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!.replace(/\\(.)/g, '$1'));
  if (msgs.length) return msgs[msgs.length - 1]!;
  const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[lines.length - 1] ?? 'no output';
}
