import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BerthError } from '../errors.js';
import { nullLogger, type Logger } from '../log.js';

/**
 * Where registry credentials come from. The store is asked by host (as the
 * endpoint is contacted, "127.0.0.1:5000", "registry-1.docker.io"); Docker
 * Hub's many names are one host here. Credentials never leave this module and
 * auth.ts except as an Authorization header on the wire.
 */

export interface Credentials {
  username: string;
  password: string;
}

export interface CredentialStore {
  get(host: string): Promise<Credentials | undefined>;
}

export const noCredentials: CredentialStore = { get: async () => undefined };

/** A fixed host → credentials map, for tests and for callers that already hold credentials. */
export class StaticCredentials implements CredentialStore {
  private readonly byHost: Map<string, Credentials>;
  constructor(entries: Record<string, Credentials>) {
    this.byHost = new Map(Object.entries(entries).map(([h, c]) => [normalizeCredentialHost(h), c]));
  }
  async get(host: string): Promise<Credentials | undefined> {
    return this.byHost.get(normalizeCredentialHost(host));
  }
}

const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com']);

/**
 * The key credentials are filed under: scheme and path dropped
 * ("https://index.docker.io/v1/" → "index.docker.io"), lowercased, and every
 * Docker Hub alias folded into "docker.io".
 */
export function normalizeCredentialHost(key: string): string {
  let host = key.trim().toLowerCase().replace(/^[a-z][a-z0-9+.-]*:\/\//, '');
  const slash = host.indexOf('/');
  if (slash >= 0) host = host.slice(0, slash);
  return DOCKER_HUB.has(host) ? 'docker.io' : host;
}

/**
 * Reads Docker's config.json from `dir` (the caller resolves $DOCKER_CONFIG or
 * ~/.docker). A missing file means no credentials. The file is read once, on
 * first use. Supported: `auths.<host>.auth` (base64 "user:pass") and
 * `auths.<host>.username`/`password`. Credential helpers and identity tokens
 * are not supported and are skipped with a debug log.
 */
export class DockerConfigCredentials implements CredentialStore {
  private loaded: Promise<Map<string, Credentials>> | undefined;
  private readonly log: Logger;
  readonly file: string;

  constructor(dir: string, opts: { logger?: Logger } = {}) {
    this.file = join(dir, 'config.json');
    this.log = opts.logger ?? nullLogger;
  }

  async get(host: string): Promise<Credentials | undefined> {
    this.loaded ??= this.load();
    return (await this.loaded).get(normalizeCredentialHost(host));
  }

  private async load(): Promise<Map<string, Credentials>> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
      throw new BerthError('INVALID_ARGUMENT', `cannot read Docker config ${this.file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
    }
    return parseDockerConfig(text, this.file, this.log);
  }
}

/** Parses config.json text. Errors name the file and the entry, never a value from it. */
export function parseDockerConfig(text: string, file: string, log: Logger = nullLogger): Map<string, Credentials> {
  const bad = (problem: string) =>
    new BerthError('INVALID_ARGUMENT', `Docker config ${file}: ${problem}`, { hint: 'fix the file or run `docker login` again' });
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    // The JSON error message quotes the text around the error; it may hold a password.
    throw bad('not valid JSON');
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw bad('not a JSON object');
  const cfg = doc as Record<string, unknown>;
  if (cfg.credsStore !== undefined || cfg.credHelpers !== undefined) {
    log.debug('docker credential helpers (credsStore, credHelpers) are not supported; entries served by a helper are skipped', { file });
  }
  const out = new Map<string, Credentials>();
  if (cfg.auths === undefined) return out;
  if (!cfg.auths || typeof cfg.auths !== 'object' || Array.isArray(cfg.auths)) throw bad('"auths" is not an object');
  for (const [key, value] of Object.entries(cfg.auths as Record<string, unknown>)) {
    if (!value || typeof value !== 'object') throw bad(`auths[${JSON.stringify(key)}] is not an object`);
    const entry = value as Record<string, unknown>;
    const host = normalizeCredentialHost(key);
    let creds: Credentials | undefined;
    if (typeof entry.auth === 'string' && entry.auth !== '') {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon <= 0) throw bad(`auths[${JSON.stringify(key)}].auth is not base64 of "user:password"`);
      creds = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    } else if (typeof entry.username === 'string' && typeof entry.password === 'string') {
      creds = { username: entry.username, password: entry.password };
    }
    if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '') {
      log.debug('docker identity tokens are not supported; ignoring the entry', { file, host });
      continue;
    }
    if (creds) out.set(host, creds);
  }
  return out;
}
