import { access, constants } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../errors.js';

/** Finding the runtime's tools (runc, conmon), and reading runc's errors. */

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
