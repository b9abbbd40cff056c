import { watch } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';

/**
 * Reading container logs in the CRI format conmon writes: one record per
 * line, `<RFC 3339 time> <stdout|stderr> <P|F> <text>`, where P marks a
 * partial line continued by the next record and F the end of a line.
 * conmon rotates the file by renaming a new one over it when it would
 * exceed its size cap; a follower notices the new inode (or a shrunk file)
 * and starts again at its beginning.
 */

export interface LogLine {
  time: string;
  stream: 'stdout' | 'stderr';
  text: string;
}

const CHUNK = 64 * 1024;

/** Parses CRI records into whole lines, joining partial records. Keeps state across chunks. */
export class CriLogParser {
  private rest = '';
  private readonly decoder = new StringDecoder('utf8');
  private partial: { stdout: string; stderr: string } = { stdout: '', stderr: '' };

  /** Bytes in, whole lines out; a UTF-8 character split across chunks is kept for the next one. */
  push(chunk: Buffer): LogLine[] {
    const text = this.rest + this.decoder.write(chunk);
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    const out: LogLine[] = [];
    for (const rec of lines) {
      const m = /^(\S+) (stdout|stderr) ([PF]) ?(.*)$/.exec(rec);
      if (!m) continue;
      const stream = m[2] as 'stdout' | 'stderr';
      if (m[3] === 'P') {
        this.partial[stream] += m[4]!;
        continue;
      }
      out.push({ time: m[1]!, stream, text: this.partial[stream] + m[4]! });
      this.partial[stream] = '';
    }
    return out;
  }
}

export interface ReadLogOptions {
  /** Only the last n lines already in the file (then, when following, everything new). */
  tail?: number;
  /**
   * Keep reading as the file grows until `done()` resolves true after the
   * file was read to its end (the container exited). Without it, reading
   * stops at the current end.
   */
  follow?: { done: () => Promise<boolean>; signal?: AbortSignal };
}

/** The lines of a container log. A missing file yields nothing (the container never wrote). */
export async function* readLog(path: string, opts: ReadLogOptions = {}): AsyncGenerator<LogLine> {
  let fh = await open(path, 'r').catch(() => undefined);
  const parser = new CriLogParser();
  let offset = 0;
  let ino = fh ? (await fh.stat()).ino : 0;
  if (fh && opts.tail !== undefined) {
    const all = await drain(fh, parser, 0);
    offset = all.offset;
    yield* all.lines.slice(Math.max(0, all.lines.length - opts.tail));
  }
  /** Opens the file anew when it appeared, or was replaced (rotated) or truncated since it was opened; true when it did. */
  const reopenIfReplaced = async (): Promise<boolean> => {
    const now = await stat(path).catch(() => undefined);
    if (!now || (fh && now.ino === ino && now.size >= offset)) return false;
    await fh?.close();
    fh = await open(path, 'r').catch(() => undefined);
    ino = now.ino;
    offset = 0;
    return fh !== undefined;
  };
  const buf = Buffer.allocUnsafe(CHUNK);
  for (;;) {
    if (fh) {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, CHUNK, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
        yield* parser.push(buf.subarray(0, bytesRead));
      }
    }
    if (!opts.follow || opts.follow.signal?.aborted) break;
    // done() is asked before waiting: output written before the exit is already read.
    if (await opts.follow.done()) {
      // What was written before the exit is the rest of this file, or in a file rotated in since it was read.
      if (fh) {
        const { bytesRead } = await fh.read(buf, 0, CHUNK, offset);
        if (bytesRead > 0) {
          offset += bytesRead;
          yield* parser.push(buf.subarray(0, bytesRead));
          continue;
        }
      }
      if (await reopenIfReplaced()) continue;
      break;
    }
    await changed(path, opts.follow.signal);
    await reopenIfReplaced();
  }
  await fh?.close();
}

async function drain(fh: FileHandle, parser: CriLogParser, from: number): Promise<{ lines: LogLine[]; offset: number }> {
  const buf = Buffer.allocUnsafe(CHUNK);
  const lines: LogLine[] = [];
  let offset = from;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, CHUNK, offset);
    if (bytesRead === 0) return { lines, offset };
    offset += bytesRead;
    lines.push(...parser.push(buf.subarray(0, bytesRead)));
  }
}

/**
 * Resolves when the file (or its directory entry) changes, or after a
 * short wait: inotify does not see a file that does not exist yet, and a
 * rotation replaces the watched inode.
 */
function changed(path: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    let watcher: ReturnType<typeof watch> | undefined;
    const done = (): void => {
      clearTimeout(timer);
      watcher?.close();
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, 250);
    try {
      watcher = watch(path, done);
      watcher.on('error', done);
    } catch {
      // Not there yet: the timer retries.
    }
    signal?.addEventListener('abort', done);
  });
}
