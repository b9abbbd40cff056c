import { BerthError } from '../errors.js';

/**
 * A pull-based tar reader for layer streams: ustar, GNU (long names, base-256
 * numbers) and PAX (per-entry records), the formats Docker, containerd,
 * BuildKit, Go's archive/tar and GNU tar write.
 *
 * It exists instead of tar-stream's extractor because layers need what that
 * one loses or costs: PAX values are kept as bytes (tar-stream decodes them
 * as UTF-8, which corrupts binary xattrs such as security.capability), file
 * content is handed out as views of the decompressed chunks (no stream object
 * per entry: a layer may hold 100,000 files), and the caller sees where the
 * archive ends so it can read the stream to EOF for the diffID.
 *
 * Semantics follow Go's archive/tar, which containerd uses: header-only types
 * (links, directories, devices, FIFOs) carry no content whatever their size
 * field says; a typeflag NUL with a trailing slash is a directory; global PAX
 * headers are skipped. Errors are BerthErrors: CORRUPT for malformed or
 * truncated input, UNSUPPORTED for entry types berth cannot apply.
 */

export type EntryKind = 'file' | 'link' | 'symlink' | 'char' | 'block' | 'directory' | 'fifo';

export interface TarEntry {
  /** The path as written in the archive (PAX path and GNU long names applied); not cleaned. */
  name: string;
  kind: EntryKind;
  mode: number;
  uid: number;
  gid: number;
  /** Bytes of content that follow; 0 for everything but regular files. */
  size: number;
  /** Nanoseconds since the epoch (PAX times carry nanoseconds, others whole seconds). */
  mtime: bigint;
  atime: bigint | undefined;
  /** Target of a symlink (as written) or hardlink (a path in the archive). */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** SCHILY.xattr.* records, values as bytes. */
  xattrs: Array<[string, Buffer]> | undefined;
  /** Offset of the entry's first header in the tar stream, for messages. */
  offset: number;
}

const BLOCK = 512;
/** PAX and GNU long-name headers larger than this are refused (Go's archive/tar allows 1 MiB). */
const MAX_META = 1 << 20;

const KINDS: Record<string, EntryKind> = { '0': 'file', '\0': 'file', '7': 'file', '1': 'link', '2': 'symlink', '3': 'char', '4': 'block', '5': 'directory', '6': 'fifo' };

function corrupt(message: string, offset: number): BerthError {
  return new BerthError('CORRUPT', `layer tar: ${message} (at byte ${offset})`, { details: { offset } });
}

export class TarReader {
  private chunks: Buffer[] = [];
  /** Read position inside chunks[0]. */
  private head = 0;
  private buffered = 0;
  private sourceDone = false;
  /** Content bytes of the current entry not yet read, then its padding. */
  private remaining = 0;
  private padding = 0;
  private finished = false;
  /** Bytes of the stream consumed so far. */
  private position = 0;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /**
   * The next entry, or undefined at the end of the archive. Skips what is
   * left of the previous entry's content.
   */
  async next(): Promise<TarEntry | undefined> {
    if (this.finished) return undefined;
    if (this.remaining + this.padding > 0) await this.skip(this.remaining + this.padding, 'inside an entry');
    this.remaining = 0;
    this.padding = 0;

    let pax: Map<string, Buffer> | undefined;
    let longName: string | undefined;
    let longLink: string | undefined;
    let first: number | undefined;
    for (;;) {
      const offset = this.position;
      if (!(await this.fill(BLOCK))) {
        if (this.buffered === 0 && first === undefined) {
          // A stream that stops at a header boundary without the end-of-archive blocks is accepted, as Go's reader does.
          this.finished = true;
          return undefined;
        }
        throw corrupt(first === undefined ? 'stream ends inside a header' : 'stream ends after an extended header, before its entry', offset);
      }
      const block = this.take(BLOCK);
      // The end of the archive. What follows (a second zero block, padding to a record size) is left for drain().
      if (isZero(block)) {
        if (first !== undefined) throw corrupt('end-of-archive marker right after an extended header', offset);
        this.finished = true;
        return undefined;
      }
      first ??= offset;
      verifyChecksum(block, offset);
      const flag = String.fromCharCode(block[156]!);
      const size = readNumber(block, 124, 12, offset);
      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        if (size > MAX_META) throw corrupt(`extended header of ${size} bytes is larger than ${MAX_META}`, offset);
        if (!(await this.fill(size))) throw corrupt('stream ends inside an extended header', offset);
        const data = Buffer.from(this.take(size));
        await this.skip(pad(size), 'inside an extended header');
        if (flag === 'x') pax = parsePax(data, offset, pax);
        else if (flag === 'L') longName = cString(data, 0, data.length, offset);
        else if (flag === 'K') longLink = cString(data, 0, data.length, offset);
        // 'g' (global records, e.g. git archive's commit id) is skipped, as containerd does.
        continue;
      }
      const entry = decodeHeader(block, flag, size, first);
      if (longName !== undefined) entry.name = longName;
      if (longLink !== undefined) entry.linkname = longLink;
      if (pax) applyPax(entry, pax);
      if (entry.kind !== 'file') entry.size = 0;
      this.remaining = entry.size;
      this.padding = pad(entry.size);
      return entry;
    }
  }

  /**
   * The next piece of the current entry's content (as much as one
   * decompressed chunk holds), or undefined when all of it was read. A piece
   * is a view of the decompressed stream: use it before the next call.
   */
  async read(): Promise<Buffer | undefined> {
    if (this.remaining === 0) return undefined;
    if (this.buffered === 0 && !(await this.pull())) throw corrupt(`stream ends ${this.remaining} bytes before the end of a file`, this.position);
    const chunk = this.chunks[0]!;
    const n = Math.min(chunk.length - this.head, this.remaining);
    const piece = chunk.subarray(this.head, this.head + n);
    this.advance(n);
    this.remaining -= n;
    return piece;
  }

  /** Reads the source to its end: after the archive's end marker, padding and anything else still count for the diffID. */
  async drain(): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    this.head = 0;
    while (await this.pull()) {
      this.chunks = [];
      this.buffered = 0;
    }
  }

  private async pull(): Promise<boolean> {
    if (this.sourceDone) return false;
    for (;;) {
      const r = await this.source.next();
      if (r.done) {
        this.sourceDone = true;
        return false;
      }
      if (r.value.length === 0) continue;
      this.chunks.push(r.value);
      this.buffered += r.value.length;
      return true;
    }
  }

  /** Makes `n` bytes available; false if the stream ends first. */
  private async fill(n: number): Promise<boolean> {
    while (this.buffered < n) if (!(await this.pull())) return false;
    return true;
  }

  private advance(n: number): void {
    this.buffered -= n;
    this.position += n;
    this.head += n;
    while (this.chunks.length > 0 && this.head >= this.chunks[0]!.length) {
      this.head -= this.chunks[0]!.length;
      this.chunks.shift();
    }
  }

  /** `n` buffered bytes, as a view when they lie in one chunk. */
  private take(n: number): Buffer {
    const chunk = this.chunks[0]!;
    if (chunk.length - this.head >= n) {
      const out = chunk.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length - this.head, n - filled);
      c.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.advance(k);
    }
    return out;
  }

  private async skip(n: number, where: string): Promise<void> {
    while (n > 0) {
      if (this.buffered === 0 && !(await this.pull())) throw corrupt(`stream ends ${where}`, this.position);
      const k = Math.min(n, this.buffered);
      let left = k;
      while (left > 0) {
        const step = Math.min(left, this.chunks[0]!.length - this.head);
        this.advance(step);
        left -= step;
      }
      n -= k;
    }
  }
}

function pad(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

function verifyChecksum(block: Buffer, offset: number): void {
  let stored: number;
  try {
    stored = readNumber(block, 148, 8, offset);
  } catch {
    stored = -1;
  }
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i >= 148 && i < 156) continue;
    const b = block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  // Some old tars summed signed bytes; Go and GNU tar accept both.
  if (stored !== unsigned && stored !== signed) throw corrupt('header checksum mismatch: not a tar stream, or a corrupt one', offset);
}

/** Octal (ustar) or base-256 (GNU, first byte >= 0x80) numeric field. */
function readNumber(b: Buffer, start: number, len: number, offset: number): number {
  const first = b[start]!;
  if (first & 0x80) {
    const negative = first === 0xff;
    let v = first & 0x7f;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + b[i]!;
    if (negative) v -= 2 ** (8 * len - 1);
    if (!Number.isSafeInteger(v)) throw corrupt('numeric field out of range', offset);
    return v;
  }
  let i = start;
  const end = start + len;
  while (i < end && (b[i] === 0x20 || b[i] === 0)) i++;
  let v = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw corrupt(`invalid octal digit in the numeric field at header byte ${start}`, offset);
    v = v * 8 + (c - 0x30);
    digits++;
  }
  for (; i < end; i++) if (b[i] !== 0x20 && b[i] !== 0) throw corrupt('garbage after a numeric field', offset);
  return digits === 0 ? 0 : v;
}

/**
 * A NUL-terminated field as a string. Names must be UTF-8: a path that is not
 * cannot be created under the same bytes through Node's string paths, so it
 * is refused rather than renamed.
 */
function cString(b: Buffer, start: number, len: number, offset: number): string {
  let end = start;
  const max = start + len;
  let ascii = true;
  while (end < max && b[end] !== 0) {
    if (b[end]! >= 0x80) ascii = false;
    end++;
  }
  if (ascii) return b.toString('latin1', start, end);
  const s = b.toString('utf8', start, end);
  if (!Buffer.from(s, 'utf8').equals(b.subarray(start, end))) {
    throw new BerthError('UNSUPPORTED', `layer tar: a path is not valid UTF-8 (at byte ${offset})`, { details: { offset, bytes: b.subarray(start, end).toString('hex') } });
  }
  return s;
}

function decodeHeader(b: Buffer, flag: string, size: number, offset: number): TarEntry {
  const magic = b.toString('latin1', 257, 263);
  const posix = magic === 'ustar\0';
  const gnu = magic === 'ustar ';
  let name = cString(b, 0, 100, offset);
  // The ustar prefix field; GNU tar keeps atime and ctime at that place instead.
  if (posix && b[345] !== 0) name = `${cString(b, 345, 155, offset)}/${name}`;
  let kind = KINDS[flag];
  if (kind === undefined) {
    const what = flag === 'S' ? 'a GNU sparse file' : flag === 'D' ? 'a GNU dump directory' : flag === 'V' ? 'a volume label' : `entry type ${JSON.stringify(flag)}`;
    throw new BerthError('UNSUPPORTED', `layer tar: ${what} (${JSON.stringify(name)} at byte ${offset}) cannot be applied`, { details: { offset, typeflag: flag, name } });
  }
  if (flag === '\0' && name.endsWith('/')) kind = 'directory';
  const atime = gnu ? readNumber(b, 345, 12, offset) : 0;
  const NS = 1_000_000_000n;
  return {
    name,
    kind,
    mode: readNumber(b, 100, 8, offset),
    uid: readNumber(b, 108, 8, offset),
    gid: readNumber(b, 116, 8, offset),
    size,
    mtime: BigInt(readNumber(b, 136, 12, offset)) * NS,
    atime: atime > 0 ? BigInt(atime) * NS : undefined,
    linkname: cString(b, 157, 100, offset),
    devmajor: posix || gnu ? readNumber(b, 329, 8, offset) : 0,
    devminor: posix || gnu ? readNumber(b, 337, 8, offset) : 0,
    xattrs: undefined,
    offset,
  };
}

/** PAX records ("%d %s=%s\n"), values kept as bytes. Later records of the same key win. */
function parsePax(buf: Buffer, offset: number, into?: Map<string, Buffer>): Map<string, Buffer> {
  const records = into ?? new Map<string, Buffer>();
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] === 0) break; // NUL padding some writers leave
    const space = buf.indexOf(0x20, pos);
    const lenText = space < 0 ? '' : buf.toString('latin1', pos, space);
    const len = /^[0-9]{1,8}$/.test(lenText) ? Number(lenText) : NaN;
    if (!(len > space - pos + 1) || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) throw corrupt('malformed PAX record', offset);
    const rec = buf.subarray(space + 1, pos + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw corrupt('PAX record without a key', offset);
    records.set(rec.toString('utf8', 0, eq), rec.subarray(eq + 1));
    pos += len;
  }
  return records;
}

const XATTR = 'SCHILY.xattr.';

function applyPax(e: TarEntry, pax: Map<string, Buffer>): void {
  for (const [key, value] of pax) {
    switch (key) {
      case 'path':
        e.name = paxString(value, e.offset);
        break;
      case 'linkpath':
        e.linkname = paxString(value, e.offset);
        break;
      case 'size':
        e.size = paxInteger(value, key, e.offset);
        break;
      case 'uid':
        e.uid = paxInteger(value, key, e.offset);
        break;
      case 'gid':
        e.gid = paxInteger(value, key, e.offset);
        break;
      case 'mtime':
        e.mtime = paxTime(value, e.offset);
        break;
      case 'atime':
        e.atime = paxTime(value, e.offset);
        break;
      default:
        if (key.startsWith(XATTR)) (e.xattrs ??= []).push([key.slice(XATTR.length), value]);
        else if (key.startsWith('GNU.sparse.')) {
          throw new BerthError('UNSUPPORTED', `layer tar: ${JSON.stringify(e.name)} is a PAX sparse file, which berth cannot apply (at byte ${e.offset})`, { details: { offset: e.offset } });
        }
    }
  }
}

function paxString(v: Buffer, offset: number): string {
  return cString(v, 0, v.length, offset);
}

function paxInteger(v: Buffer, key: string, offset: number): number {
  const s = v.toString('latin1', 0, v.length);
  if (!/^[0-9]{1,16}$/.test(s) || !Number.isSafeInteger(Number(s))) throw corrupt(`PAX ${key} ${JSON.stringify(s)} is not a non-negative integer`, offset);
  return Number(s);
}

/** A PAX time ("1700000000.123456789", "-86400") in nanoseconds, truncated past the ninth decimal as Go does. */
function paxTime(v: Buffer, offset: number): bigint {
  const s = v.toString('latin1', 0, v.length);
  const m = /^(-?)([0-9]{1,19})(?:\.([0-9]*))?$/.exec(s);
  if (!m) throw corrupt(`PAX time ${JSON.stringify(s)} is malformed`, offset);
  const ns = BigInt(m[2]!) * 1_000_000_000n + BigInt((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
  return m[1] ? -ns : ns;
}
