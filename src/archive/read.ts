import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { BerthError } from '../errors.js';
import { errnoOf } from '../linux/index.js';
import { resolveInRoot } from './lookup.js';

/**
 * The content of the regular file at `path` inside `root`, with symlinks
 * (the last component's too) evaluated relative to the root, as a container
 * would see it: how the runtime reads an image's /etc/passwd without
 * following its links out to the host. undefined when the file is missing
 * or not a regular file; TOO_LARGE above `maxBytes`.
 */
export async function readFileInRoot(root: string, path: string, maxBytes: number): Promise<Buffer | undefined> {
  // A path through a file, or a symlink loop, resolves to nothing: there is no such file to read.
  const abs = resolveInRoot(root, path);
  if (abs === undefined) return undefined;
  let fd: number;
  try {
    fd = openSync(abs, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    if (errnoOf(err) === 'ENOENT' || errnoOf(err) === 'ELOOP') return undefined;
    throw new BerthError('INTERNAL', `reading ${path} in ${root}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    if (st.size > maxBytes) throw new BerthError('TOO_LARGE', `${path} in ${root} is ${st.size} bytes, more than the ${maxBytes} allowed`, { details: { path, size: st.size, max: maxBytes } });
    const buf = Buffer.alloc(st.size);
    let n = 0;
    while (n < buf.length) {
      const k = readSync(fd, buf, n, buf.length - n, n);
      if (k === 0) break;
      n += k;
    }
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}
