import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/**
 * A cache of what the yaml library made of a manifest file's text: each
 * object's plain value and its own position, keyed by a digest of the text
 * and of the yaml release that parsed it. Nothing berth decides is stored:
 * schema checks, defaults and the spec hash run on every read, so a berth
 * upgrade cannot meet stale results, and a yaml upgrade changes every key.
 *
 * Only files that parsed and checked without an error are stored, and only
 * values JSON keeps exactly (no Infinity, NaN or -0). A miss, or anything
 * wrong with the cache (unreadable, corrupt, full disk), only means the text
 * is parsed again.
 */

export interface CachedItem {
  value: unknown;
  /** "" for a document, "/N" for the item N of a list document. */
  base: string;
  line: number;
  col: number;
}

export interface ParseCache {
  get(text: string): Promise<CachedItem[] | undefined>;
  put(text: string, items: CachedItem[]): Promise<void>;
}

/** Bumped when what an entry holds changes. */
const FORMAT = 1;

let parser: string | undefined;

/** "yaml@2.9.1": the parser an entry was made by. */
function parserId(): string {
  if (parser === undefined) {
    const { version } = JSON.parse(readFileSync(createRequire(import.meta.url).resolve('yaml/package.json'), 'utf8')) as { version: string };
    parser = `yaml@${version}`;
  }
  return parser;
}

export function cacheKey(text: string): string {
  return createHash('sha256').update(`berth-parse-cache ${FORMAT} ${parserId()}\n`).update(text).digest('hex');
}

/** Whether JSON round-trips the value unchanged. */
export function jsonExact(value: unknown): boolean {
  if (typeof value === 'number') return Number.isFinite(value) && !Object.is(value, -0);
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true;
  if (Array.isArray(value)) return value.every(jsonExact);
  if (typeof value === 'object') return Object.getPrototypeOf(value) === Object.prototype && Object.values(value as object).every(jsonExact);
  return false;
}

function isItems(v: unknown): v is CachedItem[] {
  return Array.isArray(v) && v.every((i: Partial<CachedItem> | null) => i !== null && typeof i === 'object' && 'value' in i && typeof i.base === 'string' && Number.isInteger(i.line) && Number.isInteger(i.col));
}

/** Entries as files `<key>.json` in one directory (owner-only), the oldest removed past `maxEntries`. */
export class DirectoryParseCache implements ParseCache {
  constructor(
    private readonly dir: string,
    private readonly maxEntries = 512,
  ) {}

  async get(text: string): Promise<CachedItem[] | undefined> {
    try {
      const entry = JSON.parse(await readFile(join(this.dir, `${cacheKey(text)}.json`), 'utf8')) as unknown;
      return isItems(entry) ? entry : undefined;
    } catch {
      return undefined;
    }
  }

  async put(text: string, items: CachedItem[]): Promise<void> {
    if (!items.every((i) => jsonExact(i.value))) return;
    const key = cacheKey(text);
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      // Written whole under a temporary name, then renamed: a reader sees all of an entry or none.
      const temp = join(this.dir, `.${key}.${randomBytes(6).toString('hex')}.tmp`);
      await writeFile(temp, JSON.stringify(items), { mode: 0o600 });
      await rename(temp, join(this.dir, `${key}.json`));
      await this.trim();
    } catch {
      // A cache that cannot be written is a cache that misses.
    }
  }

  private async trim(): Promise<void> {
    const names = (await readdir(this.dir)).filter((n) => n.endsWith('.json'));
    if (names.length <= this.maxEntries) return;
    const aged = await Promise.all(names.map(async (n) => ({ n, t: (await stat(join(this.dir, n)).catch(() => undefined))?.mtimeMs ?? 0 })));
    aged.sort((a, b) => a.t - b.t);
    await Promise.all(aged.slice(0, names.length - this.maxEntries).map(({ n }) => rm(join(this.dir, n), { force: true })));
  }
}
