/**
 * A real registry for tests: Debian's docker-registry (distribution 2.8) on
 * 127.0.0.1 with a free port, filesystem storage in a temp dir, and one of
 * three auth modes:
 *  - none
 *  - basic: htpasswd file made with `htpasswd -Bbn`
 *  - bearer: the registry's own token auth, with a token server written here
 *    (node:http) that checks Basic credentials and signs RS256 JWTs whose x5c
 *    header carries the self-signed certificate the registry trusts as its
 *    rootcertbundle (distribution 2.8 verifies x5c chains against that bundle).
 *
 * Note: distribution allows 60 s of clock-skew leeway on exp, so a token with a
 * short TTL keeps working at the registry for a minute after it "expires".
 * Clients that refresh by expires_in still see the short TTL in the response.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { closeSync, openSync, rmSync } from 'node:fs';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { createPrivateKey, createSign, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './tmp.js';

const execFileP = promisify(execFile);

export interface TokenRequest {
  method: string;
  /** query parameters (for POST, also the form fields except password); repeated keys are joined with a space */
  query: Record<string, string>;
  authorization?: string;
}

export interface RegistryHandle {
  host: string; // "127.0.0.1:PORT"
  url: string; // "http://127.0.0.1:PORT"
  dataDir: string; // storage dir (temp)
  auth?: { username: string; password: string };
  /** for bearer: the token server's URL (the realm's origin), and how many tokens it issued */
  tokenServer?: { url: string; issued(): number; requests: TokenRequest[] };
  stop(): Promise<void>; // kills the process, removes temp dirs
}

export interface StartRegistryOptions {
  auth?: 'none' | 'basic' | 'bearer';
  username?: string;
  password?: string;
  tokenTtlSeconds?: number;
}

export const REGISTRY_BINARY = '/usr/bin/docker-registry';
export const TOKEN_SERVICE = 'berth-test-registry';
export const TOKEN_ISSUER = 'berth-test-token-issuer';
const START_TIMEOUT_MS = 15_000;
const START_ATTEMPTS = 5;

// Registries (and their temp dirs) still running; killed synchronously when the test process exits.
const live = new Map<ChildProcess, string>();
let exitHookInstalled = false;

function killAllSync(): void {
  for (const [child, dir] of live) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
  live.clear();
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', killAllSync);
  // A signal skips 'exit'; clean up and re-raise, but only when nobody else handles the signal.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    if (process.listenerCount(sig) > 0) continue;
    process.once(sig, () => {
      killAllSync();
      process.kill(process.pid, sig);
    });
  }
}

/** A port that was free a moment ago (bound with port 0, then closed). Callers retry on EADDRINUSE. */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createNetServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (addr && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

async function tail(file: string, lines = 30): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function registryConfig(port: number, dataDir: string, authYaml: string): string {
  return `version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: ${JSON.stringify(dataDir)}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: berth-test-http-secret
${authYaml}`;
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<RegistryHandle> {
  const mode = opts.auth ?? 'none';
  const username = opts.username ?? 'berth-user';
  const password = opts.password ?? 'berth-secret-password';
  const tmp = await tempDir('berth-registry-');
  const dataDir = join(tmp.path, 'data');
  const logPath = join(tmp.path, 'registry.log');
  await mkdir(dataDir, { mode: 0o700 });
  installExitHook();

  let tokenServer: TokenServer | undefined;
  try {
    let authYaml = '';
    if (mode === 'basic') {
      const { stdout } = await execFileP('htpasswd', ['-Bbn', username, password]);
      const htpasswd = join(tmp.path, 'htpasswd');
      await writeFile(htpasswd, stdout.trim() + '\n', { mode: 0o600 });
      authYaml = `auth:\n  htpasswd:\n    realm: berth-test-realm\n    path: ${JSON.stringify(htpasswd)}\n`;
    } else if (mode === 'bearer') {
      tokenServer = await startTokenServer(tmp.path, { username, password }, opts.tokenTtlSeconds ?? 300);
      authYaml = `auth:
  token:
    realm: ${JSON.stringify(`${tokenServer.url}/token`)}
    service: ${TOKEN_SERVICE}
    issuer: ${TOKEN_ISSUER}
    rootcertbundle: ${JSON.stringify(tokenServer.certPath)}
`;
    }

    const configPath = join(tmp.path, 'config.yml');
    let lastError: Error | undefined;
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      const port = await freePort();
      await writeFile(configPath, registryConfig(port, dataDir, authYaml));
      const started = await spawnRegistry(configPath, logPath, port, tmp.path);
      if ('child' in started) {
        const { child } = started;
        const host = `127.0.0.1:${port}`;
        let stopped: Promise<void> | undefined;
        const ts = tokenServer;
        return {
          host,
          url: `http://${host}`,
          dataDir,
          ...(mode === 'none' ? {} : { auth: { username, password } }),
          ...(ts ? { tokenServer: { url: ts.url, issued: () => ts.issued, requests: ts.requests } } : {}),
          stop: () =>
            (stopped ??= (async () => {
              await killChild(child);
              await ts?.close();
              await tmp.cleanup();
              live.delete(child); // only now: until the dir is gone, the exit hook still removes it
            })()),
        };
      }
      lastError = started.error;
      if (!started.addrInUse) break;
    }
    throw lastError ?? new Error('docker-registry did not start');
  } catch (err) {
    await tokenServer?.close();
    await tmp.cleanup();
    throw err;
  }
}

async function spawnRegistry(
  configPath: string,
  logPath: string,
  port: number,
  tmpPath: string,
): Promise<{ child: ChildProcess } | { error: Error; addrInUse: boolean }> {
  const logFd = openSync(logPath, 'w');
  const child = spawn(REGISTRY_BINARY, ['serve', configPath], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  live.set(child, tmpPath);
  let exited: string | undefined;
  let spawnError: Error | undefined;
  child.once('exit', (code, signal) => (exited = `exited with ${signal ?? `code ${code}`}`));
  child.once('error', (err) => (spawnError = err));

  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline && !exited && !spawnError) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.status === 200 || res.status === 401) return { child };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await killChild(child);
  live.delete(child);
  const log = await tail(logPath);
  const why = spawnError ? `could not be spawned (${spawnError.message})` : exited ?? `did not answer GET /v2/ within ${START_TIMEOUT_MS} ms`;
  return {
    error: new Error(`${REGISTRY_BINARY} on 127.0.0.1:${port} ${why}; its log ends with:\n${log}`),
    addrInUse: /address already in use/i.test(log),
  };
}

function killChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(force);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

// ---- token server ----

interface TokenServer {
  url: string;
  certPath: string;
  issued: number;
  requests: TokenRequest[];
  close(): Promise<void>;
}

function b64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function signJwt(claims: object, key: KeyObject, certDerB64: string): string {
  const header = { typ: 'JWT', alg: 'RS256', x5c: [certDerB64] };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = createSign('RSA-SHA256').update(input).sign(key);
  return `${input}.${b64url(signature)}`;
}

function readBody(req: IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > limit) req.destroy(new Error('token request body too large'));
      else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function collect(params: URLSearchParams, into: Record<string, string>, skip: string[] = []): void {
  for (const [k, v] of params) {
    if (skip.includes(k)) continue;
    into[k] = k in into ? `${into[k]} ${v}` : v;
  }
}

/** Parses "repository:NAME:a,b" scopes (space-separated, possibly several params) into access entries. */
function accessFor(scopes: string[]): Array<{ type: string; name: string; actions: string[] }> {
  const out: Array<{ type: string; name: string; actions: string[] }> = [];
  for (const scope of scopes.flatMap((s) => s.split(' ')).filter(Boolean)) {
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first < 0 || last === first) continue;
    const type = scope.slice(0, first);
    const name = scope.slice(first + 1, last);
    const actions = scope.slice(last + 1).split(',').filter(Boolean);
    out.push({ type, name, actions });
  }
  return out;
}

async function startTokenServer(dir: string, creds: { username: string; password: string }, ttl: number): Promise<TokenServer> {
  const keyPath = join(dir, 'token-key.pem');
  const certPath = join(dir, 'token-cert.pem');
  await execFileP('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2',
    '-keyout', keyPath, '-out', certPath, '-subj', `/CN=${TOKEN_ISSUER}`,
  ]);
  const key = createPrivateKey(await readFile(keyPath));
  const certDerB64 = new X509Certificate(await readFile(certPath)).raw.toString('base64');

  const state: TokenServer = { url: '', certPath, issued: 0, requests: [], close: async () => {} };

  const deny = (res: ServerResponse, status: number, message: string): void => {
    res.writeHead(status, {
      'Content-Type': 'application/json',
      ...(status === 401 ? { 'WWW-Authenticate': 'Basic realm="berth-test-token"' } : {}),
    });
    res.end(JSON.stringify({ errors: [{ code: status === 401 ? 'UNAUTHORIZED' : 'DENIED', message }] }));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://token');
    if (url.pathname !== '/token') return deny(res, 404, 'not found');
    const query: Record<string, string> = {};
    collect(url.searchParams, query);
    let user: string | undefined;
    let pass: string | undefined;
    let scopes = url.searchParams.getAll('scope');
    let service = url.searchParams.get('service');

    const authz = req.headers.authorization;
    if (authz?.startsWith('Basic ')) {
      const decoded = Buffer.from(authz.slice(6), 'base64').toString('utf8');
      const i = decoded.indexOf(':');
      if (i >= 0) [user, pass] = [decoded.slice(0, i), decoded.slice(i + 1)];
    }
    if (req.method === 'POST') {
      // OAuth2 password grant, as containerd tries first: form fields carry the credentials.
      const form = new URLSearchParams(await readBody(req));
      collect(form, query, ['password']);
      if (form.get('grant_type') === 'password') [user, pass] = [form.get('username') ?? undefined, form.get('password') ?? undefined];
      if (form.has('scope')) scopes = form.getAll('scope');
      service = form.get('service') ?? service;
    } else if (req.method !== 'GET') {
      return deny(res, 405, 'method not allowed');
    }
    state.requests.push({ method: req.method, query, ...(authz ? { authorization: authz } : {}) });

    if (user === undefined) return deny(res, 401, 'credentials required');
    if (user !== creds.username || pass !== creds.password) return deny(res, 401, 'invalid credentials');
    if (service !== TOKEN_SERVICE) return deny(res, 400, `unknown service ${JSON.stringify(service)}`);

    const now = Math.floor(Date.now() / 1000);
    const token = signJwt(
      { iss: TOKEN_ISSUER, sub: user, aud: TOKEN_SERVICE, exp: now + ttl, nbf: now - 1, iat: now, jti: randomUUID(), access: accessFor(scopes) },
      key,
      certDerB64,
    );
    state.issued++;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ token, access_token: token, expires_in: ttl, issued_at: new Date(now * 1000).toISOString() }));
  };

  const server: Server = createHttpServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) deny(res, 500, err.message);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (!addr || typeof addr !== 'object') throw new Error('token server has no address');
  state.url = `http://127.0.0.1:${addr.port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}
