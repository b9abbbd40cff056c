import { readFile } from 'node:fs/promises';
import { dirname, resolve as resolvePath } from 'node:path';
import { rootCertificates } from 'node:tls';
import { BerthError } from '../errors.js';
import { registryHost } from '../oci/reference.js';
import type { Credentials } from './credentials.js';

/**
 * Which endpoints serve a registry domain, in the order to try them: the
 * configured mirrors first, then the registry itself (docker.io →
 * registry-1.docker.io), as containerd does with its "default endpoint".
 * Read from a k3s-style registries.yaml:
 *
 *   mirrors:
 *     docker.io:                          # or "*" for every domain without an entry
 *       endpoint: ["http://127.0.0.1:5000", "https://mirror.example/prefix"]
 *       rewrite: { "^library/(.*)": "hub/$1" }   # applied to mirrors only
 *   configs:
 *     "127.0.0.1:5000":                   # endpoint host; a domain name also applies to its default endpoint
 *       auth: { username: u, password: p }       # or auth: base64("u:p")
 *       tls: { ca_file, cert_file, key_file, insecure_skip_verify }
 *
 * Plain HTTP is used for an endpoint configured as http://, and for a
 * loopback registry (localhost, 127.0.0.0/8, [::1]) without TLS config;
 * everything else is HTTPS.
 */

export interface PathRewrite {
  pattern: RegExp;
  replacement: string;
}

export interface RegistryEndpoint {
  scheme: 'http' | 'https';
  /** host[:port] as it appears in a URL ("[::1]:5000"). */
  host: string;
  /** Path before /v2 ("/prefix"); empty or absent for the root. */
  pathPrefix?: string;
  /** CA certificates trusted for this endpoint (replaces the system roots, as ca_file does in containerd). */
  ca?: ReadonlyArray<string | Buffer>;
  /** Client certificate and key for mutual TLS. */
  cert?: Buffer;
  key?: Buffer;
  insecureSkipVerify?: boolean;
  auth?: Credentials;
  /** Repository path rewrites, first match wins (mirrors only). */
  rewrites?: PathRewrite[];
  isMirror: boolean;
}

export interface RegistryHosts {
  /** Endpoints for a reference's domain ("docker.io", "127.0.0.1:5000"), mirrors first; never empty. */
  endpoints(domain: string): RegistryEndpoint[];
}

export const DEFAULT_REGISTRIES_FILE = '/etc/berth/registries.yaml';

/** Whether a host[:port] names the loopback interface. */
export function isLoopbackHost(host: string): boolean {
  let name = host.toLowerCase();
  if (name.startsWith('[')) name = name.slice(1, name.indexOf(']'));
  else name = name.replace(/:\d+$/, '');
  return name === 'localhost' || name.endsWith('.localhost') || name === '::1' || /^127(\.\d{1,3}){3}$/.test(name);
}

interface EndpointConfig {
  auth?: Credentials;
  ca?: ReadonlyArray<string | Buffer>;
  cert?: Buffer;
  key?: Buffer;
  insecureSkipVerify?: boolean;
}

interface MirrorConfig {
  endpoints: Array<{ scheme: 'http' | 'https'; host: string; pathPrefix: string }>;
  rewrites: PathRewrite[];
}

/** Options that come from the process, not from registries.yaml. */
export interface HostsOptions {
  /**
   * PEM certificates trusted for every https endpoint without a ca_file of
   * its own, next to the system roots: NODE_EXTRA_CA_CERTS, which berth's
   * launcher moves aside (node parses that file at start-up, 80 ms on every
   * command even when no TLS is ever spoken) and berth reads only here.
   */
  extraCA?: Buffer | undefined;
}

class ConfiguredHosts implements RegistryHosts {
  /** The system roots plus the extra certificates, one array for all endpoints, so connections can share one TLS context. */
  private readonly defaultCA: ReadonlyArray<string | Buffer> | undefined;

  constructor(
    private readonly mirrors: Map<string, MirrorConfig>,
    private readonly configs: Map<string, EndpointConfig>,
    opts: HostsOptions = {},
  ) {
    this.defaultCA = opts.extraCA?.length ? [...rootCertificates, opts.extraCA] : undefined;
  }

  endpoints(domain: string): RegistryEndpoint[] {
    const upstreamHost = registryHost(domain);
    const out: RegistryEndpoint[] = [];
    const mirror = this.mirrors.get(domain) ?? this.mirrors.get('*');
    let upstreamListed = false;
    for (const m of mirror?.endpoints ?? []) {
      const isUpstream = m.host === upstreamHost || m.host === domain;
      upstreamListed ||= isUpstream && m.pathPrefix === '';
      const cfg = this.configs.get(m.host) ?? (isUpstream ? this.configs.get(domain) : undefined) ?? this.configs.get('*');
      out.push({
        ...this.withDefaultCA(cfg),
        scheme: m.scheme,
        host: m.host,
        ...(m.pathPrefix ? { pathPrefix: m.pathPrefix } : {}),
        ...(!isUpstream && mirror?.rewrites.length ? { rewrites: mirror.rewrites } : {}),
        isMirror: !isUpstream,
      });
    }
    if (!upstreamListed) {
      const cfg = this.configs.get(upstreamHost) ?? this.configs.get(domain) ?? this.configs.get('*');
      const tlsConfigured = cfg !== undefined && (cfg.ca !== undefined || cfg.cert !== undefined || cfg.insecureSkipVerify !== undefined);
      const scheme = isLoopbackHost(upstreamHost) && !tlsConfigured ? 'http' : 'https';
      out.push({ ...this.withDefaultCA(cfg), scheme, host: upstreamHost, isMirror: false });
    }
    return out;
  }

  /** A ca_file replaces the roots and the extra certificates (as it does in node and containerd). */
  private withDefaultCA(cfg: EndpointConfig | undefined): EndpointConfig | undefined {
    return this.defaultCA && !cfg?.ca ? { ...cfg, ca: this.defaultCA } : cfg;
  }
}

/** No mirrors, no configs: every domain is served by its own registry. */
export function defaultRegistryHosts(opts: HostsOptions = {}): RegistryHosts {
  return new ConfiguredHosts(new Map(), new Map(), opts);
}

/**
 * Reads registries.yaml (default /etc/berth/registries.yaml). A missing file
 * means the defaults; a malformed one is INVALID_ARGUMENT naming the file and
 * the problem. Files it names (ca_file...) are read now, relative paths
 * against the file's directory.
 */
export async function loadRegistryHosts(path: string = DEFAULT_REGISTRIES_FILE, opts: { extraCAFile?: string | undefined } = {}): Promise<RegistryHosts> {
  // As node does with NODE_EXTRA_CA_CERTS: a file that cannot be read adds nothing.
  const extraCA = opts.extraCAFile ? await readFile(opts.extraCAFile).catch(() => undefined) : undefined;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return defaultRegistryHosts({ extraCA });
    throw new BerthError('INVALID_ARGUMENT', `cannot read registry config ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  return parseRegistryHosts(text, path, { extraCA });
}

/** Parses registries.yaml text; `file` names it in errors and anchors relative paths. */
export async function parseRegistryHosts(text: string, file: string, opts: HostsOptions = {}): Promise<RegistryHosts> {
  const bad = (problem: string) =>
    new BerthError('INVALID_ARGUMENT', `registry config ${file}: ${problem}`, {
      hint: 'see the k3s registries.yaml format: top-level "mirrors" and "configs" maps',
      details: { file },
    });

  // Imported here, not at the top: loading yaml costs ~0.1 s of CPU, and most hosts have no registries.yaml.
  const { LineCounter, parse: parseYAML, YAMLError } = await import('yaml');
  let doc: unknown;
  const lines = new LineCounter();
  try {
    doc = parseYAML(text, { prettyErrors: false, lineCounter: lines, uniqueKeys: true });
  } catch (err) {
    if (!(err instanceof YAMLError)) throw err;
    // The pretty form quotes the offending line, which may hold a password: give the position only.
    const at = lines.linePos(err.pos[0]);
    throw bad(`YAML error at line ${at.line}, column ${at.col} (${err.code})`);
  }
  if (doc === null || doc === undefined) return defaultRegistryHosts(opts);
  const top = asMap(doc, 'the document', bad);
  for (const key of Object.keys(top)) {
    if (key !== 'mirrors' && key !== 'configs') throw bad(`unknown top-level key ${JSON.stringify(key)} (expected "mirrors" or "configs")`);
  }

  const mirrors = new Map<string, MirrorConfig>();
  for (const [domain, value] of Object.entries(asMap(top.mirrors ?? {}, 'mirrors', bad))) {
    const where = `mirrors[${JSON.stringify(domain)}]`;
    const m = asMap(value ?? {}, where, bad);
    const list = m.endpoint ?? [];
    if (!Array.isArray(list)) throw bad(`${where}.endpoint must be a list of URLs`);
    const endpoints = list.map((u, i) => parseEndpointURL(u, `${where}.endpoint[${i}]`, bad));
    const rewrites: PathRewrite[] = [];
    for (const [pattern, replacement] of Object.entries(asMap(m.rewrite ?? {}, `${where}.rewrite`, bad))) {
      if (typeof replacement !== 'string') throw bad(`${where}.rewrite[${JSON.stringify(pattern)}] must be a string`);
      try {
        rewrites.push({ pattern: new RegExp(pattern), replacement });
      } catch {
        throw bad(`${where}.rewrite: ${JSON.stringify(pattern)} is not a valid regular expression`);
      }
    }
    mirrors.set(domain, { endpoints, rewrites });
  }

  const configs = new Map<string, EndpointConfig>();
  for (const [host, value] of Object.entries(asMap(top.configs ?? {}, 'configs', bad))) {
    const where = `configs[${JSON.stringify(host)}]`;
    const c = asMap(value ?? {}, where, bad);
    const cfg: EndpointConfig = {};
    if (c.auth !== undefined && c.auth !== null) cfg.auth = parseAuth(asMap(c.auth, `${where}.auth`, bad), `${where}.auth`, bad);
    if (c.tls !== undefined && c.tls !== null) {
      const tls = asMap(c.tls, `${where}.tls`, bad);
      const readPEM = async (key: string): Promise<Buffer | undefined> => {
        const p = tls[key];
        if (p === undefined || p === null || p === '') return undefined;
        if (typeof p !== 'string') throw bad(`${where}.tls.${key} must be a file path`);
        const abs = resolvePath(dirname(file), p);
        try {
          return await readFile(abs);
        } catch (err) {
          throw new BerthError('INVALID_ARGUMENT', `registry config ${file}: ${where}.tls.${key} ${abs}: ${(err as NodeJS.ErrnoException).code ?? 'unreadable'}`, {
            cause: err,
            hint: 'check the path; relative paths are taken from the directory of the registry config',
            details: { file, path: abs },
          });
        }
      };
      const ca = await readPEM('ca_file');
      if (ca) cfg.ca = [ca];
      const cert = await readPEM('cert_file');
      const key = await readPEM('key_file');
      if ((cert === undefined) !== (key === undefined)) throw bad(`${where}.tls needs both cert_file and key_file for a client certificate`);
      if (cert && key) Object.assign(cfg, { cert, key });
      const skip = tls.insecure_skip_verify;
      if (skip !== undefined && skip !== null) {
        if (typeof skip !== 'boolean') throw bad(`${where}.tls.insecure_skip_verify must be true or false`);
        cfg.insecureSkipVerify = skip;
      }
    }
    configs.set(host, cfg);
  }
  return new ConfiguredHosts(mirrors, configs, opts);
}

type Bad = (problem: string) => BerthError;

function asMap(v: unknown, where: string, bad: Bad): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw bad(`${where} must be a map`);
  return v as Record<string, unknown>;
}

function parseEndpointURL(v: unknown, where: string, bad: Bad): MirrorConfig['endpoints'][number] {
  if (typeof v !== 'string' || v === '') throw bad(`${where} must be a URL such as https://mirror.example:5000`);
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(v) ? v : `${isLoopbackHost(v.split('/')[0] ?? '') ? 'http' : 'https'}://${v}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw bad(`${where} ${JSON.stringify(v)} is not a valid URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad(`${where} ${JSON.stringify(v)}: scheme must be http or https`);
  if (u.username || u.password) throw bad(`${where}: put credentials under configs.<host>.auth, not in the URL`);
  // containerd's rule: the path names where /v2 lives; a trailing /v2 is the API root itself.
  const pathPrefix = u.pathname.replace(/\/+$/, '').replace(/\/v2$/, '');
  return { scheme: u.protocol === 'http:' ? 'http' : 'https', host: u.host, pathPrefix };
}

function parseAuth(a: Record<string, unknown>, where: string, bad: Bad): Credentials | undefined {
  if (typeof a.username === 'string' && typeof a.password === 'string') return { username: a.username, password: a.password };
  if (typeof a.auth === 'string' && a.auth !== '') {
    const decoded = Buffer.from(a.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) throw bad(`${where}.auth is not base64 of "user:password"`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (a.username !== undefined || a.password !== undefined) throw bad(`${where} needs both username and password as strings`);
  return undefined;
}
