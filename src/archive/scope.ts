import { lstatSync, mkdirSync, readlinkSync } from 'node:fs';
import { BerthError } from '../errors.js';

/**
 * Paths inside a root directory, resolved as if the root were "/": the
 * semantics of containerd's fs.RootPath and Docker's FollowSymlinkInScope.
 * A symlink `a -> /etc` in the root makes `a/x` mean `<root>/etc/x`; `..`
 * never climbs above the root. Every path handed out is "real": relative to
 * the root, with no `.`, `..` or symlink in it, so joining it to the root
 * names a place inside the root.
 *
 * Nothing else may change the tree while a RootScope is in use, except
 * through its owner, which calls invalidate() whenever it removes or
 * replaces a directory or a symlink.
 */

/** The most symlinks one resolution follows before giving up (Linux's MAXSYMLINKS). */
const MAX_LINKS = 40;

/**
 * `name` cleaned to a path relative to the root: empty and `.` components
 * dropped, `..` applied lexically and clamped at the root, leading and
 * trailing slashes removed. "" is the root itself.
 */
export function cleanPath(name: string): string {
  // The common case — "usr/bin/env", "etc/" — needs no rewriting.
  if (!/(^|\/)\.\.?(\/|$)|\/\/|^\//.test(name)) return name.endsWith('/') ? name.slice(0, -1) : name;
  const out: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') out.pop();
    else out.push(part);
  }
  return out.join('/');
}

export function joinPath(dir: string, base: string): string {
  return dir === '' ? base : `${dir}/${base}`;
}

/** [parent, base] of a cleaned, non-root path. */
export function splitPath(path: string): [string, string] {
  const slash = path.lastIndexOf('/');
  return slash < 0 ? ['', path] : [path.slice(0, slash), path.slice(slash + 1)];
}

export class RootScope {
  /** Cleaned directory path as asked → its real path. */
  private readonly dirs = new Map<string, string>();

  /**
   * @param root absolute path of the root directory
   * @param onCreate told of every directory this scope creates (real path)
   */
  constructor(
    readonly root: string,
    private readonly onCreate: (real: string) => void = () => {},
  ) {}

  abs(real: string): string {
    return real === '' ? this.root : `${this.root}/${real}`;
  }

  /**
   * The real path of directory `path` (cleaned), every component evaluated
   * in scope. Missing directories are created (mode 0755, like containerd)
   * when `create` is set; otherwise a missing one gives undefined. A
   * component that exists and is not a directory (nor a symlink to one) is
   * CORRUPT, as is a symlink loop.
   */
  dir(path: string, create: boolean): string | undefined {
    return this.resolveDir(path, create, { n: 0 });
  }

  /**
   * The real path that `path` (cleaned) names, following symlinks in every
   * component including the last; undefined when something on the way is
   * missing.
   */
  follow(path: string): string | undefined {
    const links = { n: 0 };
    for (;;) {
      if (path === '') return '';
      const [parent, base] = splitPath(path);
      const dir = this.resolveDir(parent, false, links);
      if (dir === undefined) return undefined;
      const real = joinPath(dir, base);
      const st = lstatSync(this.abs(real), { throwIfNoEntry: false });
      if (!st) return undefined;
      if (!st.isSymbolicLink()) return real;
      path = this.linkTarget(dir, real, path, links);
    }
  }

  /** Records that `path` (cleaned) is the directory at `real`, which the caller just created or checked. */
  remember(path: string, real: string): void {
    this.dirs.set(path, real);
  }

  /** Forgets every resolution: a directory or symlink was removed or replaced. */
  invalidate(): void {
    this.dirs.clear();
  }

  private resolveDir(path: string, create: boolean, links: { n: number }): string | undefined {
    if (path === '') return '';
    const known = this.dirs.get(path);
    if (known !== undefined) return known;
    const [parent, base] = splitPath(path);
    const dir = this.resolveDir(parent, create, links);
    if (dir === undefined) return undefined;
    const real = joinPath(dir, base);
    const st = lstatSync(this.abs(real), { throwIfNoEntry: false });
    let out: string | undefined;
    if (!st) {
      if (!create) return undefined;
      mkdirSync(this.abs(real), 0o755);
      this.onCreate(real);
      out = real;
    } else if (st.isDirectory()) {
      out = real;
    } else if (st.isSymbolicLink()) {
      out = this.resolveDir(this.linkTarget(dir, real, path, links), create, links);
      if (out === undefined) return undefined;
    } else {
      throw new BerthError('CORRUPT', `layer path ${JSON.stringify(path)}: ${JSON.stringify(real)} is not a directory`, { details: { path, real } });
    }
    this.dirs.set(path, out);
    return out;
  }

  /** Where the symlink at `real` (in real directory `dir`) points, as a cleaned path in scope. */
  private linkTarget(dir: string, real: string, path: string, links: { n: number }): string {
    if (++links.n > MAX_LINKS) {
      throw new BerthError('CORRUPT', `layer path ${JSON.stringify(path)}: more than ${MAX_LINKS} symlinks (a loop?)`, { details: { path } });
    }
    const target = readlinkSync(this.abs(real));
    // `dir` holds no symlink, so applying ".." to it lexically is exact.
    return cleanPath(target.startsWith('/') ? target : `${dir}/${target}`);
  }
}
