import { statSync, type Stats } from 'node:fs';
import { resolve } from 'node:path';
import { BerthError } from '../errors.js';
import { cleanPath, RootScope } from './scope.js';

/**
 * Looking up paths inside a root as a container would see them: symlinks
 * (the last component's too) evaluated relative to the root, never out of it.
 */

/**
 * The host path of what `path` names inside `root`, every symlink evaluated
 * in scope, or undefined when something on the way is missing, a path runs
 * through a file, or links loop. The path is inside the root.
 */
export function resolveInRoot(root: string, path: string): string | undefined {
  const scope = new RootScope(resolve(root));
  try {
    const real = scope.follow(cleanPath(path));
    return real === undefined ? undefined : scope.abs(real);
  } catch (err) {
    if (err instanceof BerthError && err.code === 'CORRUPT') return undefined;
    throw err;
  }
}

/** The stat of what `path` names inside `root`, or undefined when it does not resolve (resolveInRoot). */
export function statInRoot(root: string, path: string): Stats | undefined {
  const abs = resolveInRoot(root, path);
  return abs === undefined ? undefined : statSync(abs, { throwIfNoEntry: false });
}

/**
 * Where `command` resolves inside `root`, as execve in the container would
 * find it: a name with a slash is taken as it is (relative to `cwd`),
 * otherwise each directory of the container's PATH is tried. Returns the
 * in-container path of an executable regular file, or undefined.
 */
export function findExecutableInRoot(root: string, command: string, pathEnv: string, cwd = '/'): string | undefined {
  const candidates = command.includes('/')
    ? [command.startsWith('/') ? command : `${cwd.replace(/\/$/, '')}/${command}`]
    : pathEnv.split(':').filter(Boolean).map((dir) => `${dir.replace(/\/$/, '')}/${command}`);
  for (const c of candidates) {
    const st = statInRoot(root, c);
    if (st?.isFile() && (st.mode & 0o111) !== 0) return c;
  }
  return undefined;
}
