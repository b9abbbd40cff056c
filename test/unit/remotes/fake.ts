/**
 * Small HTTP servers on 127.0.0.1 for the registry client's unit tests: each
 * test writes the handler that plays the registry (or token server, or
 * redirect target) and reads back what the client sent.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { RegistryResolver, defaultRegistryHosts, noCredentials, type RegistryResolverOptions } from '../../../src/remotes/index.js';
import type { BerthEvent } from '../../../src/events.js';
import { createLogger, type LogRecord } from '../../../src/log.js';
import type { Digest } from '../../../src/oci/digest.js';

export interface Recorded {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
}

export interface FakeServer {
  /** "127.0.0.1:PORT" */
  host: string;
  port: number;
  url: string;
  requests: Recorded[];
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export async function startServer(handler: Handler): Promise<FakeServer> {
  const requests: Recorded[] = [];
  const server: Server = createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    Promise.resolve(handler(req, res, url)).catch((err) => {
      res.statusCode = 599;
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    host: `127.0.0.1:${port}`,
    port,
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A port nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const s = await startServer(() => {});
  await s.close();
  return s.port;
}

export function sha256(b: Buffer | string): Digest {
  return `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;
}

export const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
export const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

export function manifestBytes(extra = ''): Buffer {
  return Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('config' + extra), size: 6 },
      layers: [],
    }),
  );
}

export interface FakeRepo {
  manifests: Map<string, { body: Buffer; mediaType: string }>;
  blobs: Map<string, Buffer>;
}

/**
 * Serves /v2/<path>/manifests/<tag|digest> (HEAD and GET, with
 * Docker-Content-Digest) and /v2/<path>/blobs/<digest> (with Range).
 */
export function repoHandler(repo: FakeRepo, opts: { headDigest?: boolean } = {}): Handler {
  return (req, res, url) => {
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (!m) {
      res.statusCode = 404;
      res.end();
      return;
    }
    const [, , kind, reference] = m as unknown as [string, string, string, string];
    if (kind === 'manifests') {
      let entry = repo.manifests.get(reference);
      if (!entry) for (const e of repo.manifests.values()) if (sha256(e.body) === reference) entry = e;
      if (!entry) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }] }));
        return;
      }
      const headers: Record<string, string | number> = { 'content-type': entry.mediaType, 'content-length': entry.body.length };
      if (req.method === 'GET' || opts.headDigest !== false) headers['docker-content-digest'] = sha256(entry.body);
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : entry.body);
      return;
    }
    const blob = repo.blobs.get(reference);
    if (!blob) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'BLOB_UNKNOWN' }] }));
      return;
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range) {
      const start = Number(range[1]);
      res.writeHead(206, { 'content-length': blob.length - start, 'content-range': `bytes ${start}-${blob.length - 1}/${blob.length}` });
      res.end(blob.subarray(start));
      return;
    }
    res.writeHead(200, { 'content-length': blob.length });
    res.end(blob);
  };
}

export interface Harness {
  resolver: RegistryResolver;
  sleeps: number[];
  events: BerthEvent[];
  logs: LogRecord[];
}

/** A resolver with instant, recorded sleeps, a fixed random() of 0.5, and captured logs and events. */
export function makeResolver(opts: Partial<RegistryResolverOptions> = {}): Harness {
  const sleeps: number[] = [];
  const events: BerthEvent[] = [];
  const logs: LogRecord[] = [];
  const resolver = new RegistryResolver({
    hosts: defaultRegistryHosts(),
    credentials: noCredentials,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0.5,
    logger: createLogger((r) => logs.push(r), 'debug'),
    events: { publish: (e) => events.push(e) },
    ...opts,
  });
  return { resolver, sleeps, events, logs };
}

export async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

export async function rejects(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}
