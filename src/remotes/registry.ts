import { createHash } from 'node:crypto';
import { BerthError, isBerthError, type ErrorCode } from '../errors.js';
import { nullPublisher, type EventPublisher } from '../events.js';
import { nullLogger, type Logger } from '../log.js';
import { MAX_MANIFEST_BYTES, detectManifestType, type Descriptor } from '../oci/descriptor.js';
import { digestAlgorithm, isDigest, type Digest } from '../oci/digest.js';
import { isIndex, isManifest, isSchema1, ManifestAccept } from '../oci/mediatype.js';
import { formatReference, type Reference } from '../oci/reference.js';
import { Authorizer, parseWWWAuthenticate, type TokenRequester } from './auth.js';
import type { CredentialStore, Credentials } from './credentials.js';
import type { RegistryEndpoint, RegistryHosts } from './hosts.js';
import type { BlobBody, Fetcher, Resolved, Resolver } from './resolver.js';
import { defaultRetryPolicy, RetryableFailure, withRetry, parseRetryAfter, type RetryNotice, type RetryPolicy } from './retry.js';
import {
  abandon,
  BlobReader,
  discard,
  header,
  HttpTransport,
  readCapped,
  tlsOf,
  transportFailure,
  type Headers,
  type HttpResponse,
  type RequestSubject,
} from './transport.js';

/**
 * The registry client: Resolver and Fetcher over the OCI distribution API
 * (/v2/<name>/manifests/<reference>, /v2/<name>/blobs/<digest>).
 *
 * Every request goes through one exchange: send, answer a 401 challenge once,
 * follow up to five redirects by hand (Authorization goes only to the
 * endpoint's own origin, never to another host or a signed URL), and map the
 * final status to a BerthError. Exchanges are retried with backoff on
 * connection errors, 500/502/503/504 and 429. Endpoints (mirrors, then the
 * registry) are tried in order: a mirror is asked once and, on UNAVAILABLE,
 * NOT_FOUND or RATE_LIMITED, the next endpoint is asked; the last endpoint
 * gets the full retry policy. So a dead mirror costs one failed request, not a
 * backoff series, per fetch.
 */

export interface RegistryResolverOptions {
  hosts: RegistryHosts;
  credentials: CredentialStore;
  logger?: Logger;
  events?: EventPublisher;
  userAgent?: string;
  retry?: { attempts?: number; baseMs?: number; maxMs?: number; maxRetryAfterMs?: number };
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
  /** Clock for token expiry (ms since epoch). */
  now?: () => number;
}

const MAX_REDIRECTS = 5;
const MAX_TOKEN_BYTES = 1024 * 1024;
const MAX_ERROR_BODY_BYTES = 16 * 1024;
const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const RETRY_STATUSES = new Set([500, 502, 503, 504]);
const FALLBACK_CODES = new Set<ErrorCode>(['UNAVAILABLE', 'NOT_FOUND', 'RATE_LIMITED']);
/** Query parameters that make a URL carry its own authorization (S3, GCS, Azure, CloudFront). */
const SIGNATURE_PARAMS = ['x-amz-signature', 'x-amz-credential', 'x-goog-signature', 'signature', 'sig', 'key-pair-id'];
const CREDENTIALS_HINT = 'check the credentials for this registry in ~/.docker/config.json (docker login) or in the registry config (registries.yaml)';

interface Exchange {
  ep: RegistryEndpoint;
  subject: RequestSubject;
  scope: string;
  policy: RetryPolicy;
  signal?: AbortSignal | undefined;
  /** Hint for a 404. */
  notFoundHint: string;
}

interface RequestSpec {
  method: 'GET' | 'HEAD';
  path: string;
  headers: Headers;
  /** Hand statuses without a meaning of their own (400, 405, 501…) to `consume` instead of failing. */
  tolerate?: boolean;
}

export class RegistryResolver implements Resolver {
  private readonly hosts: RegistryHosts;
  private readonly credentials: CredentialStore;
  private readonly log: Logger;
  private readonly events: EventPublisher;
  private readonly userAgent: string;
  private readonly policy: RetryPolicy;
  private readonly auth: Authorizer;
  private readonly http = new HttpTransport();

  constructor(opts: RegistryResolverOptions) {
    this.hosts = opts.hosts;
    this.credentials = opts.credentials;
    this.log = opts.logger ?? nullLogger;
    this.events = opts.events ?? nullPublisher;
    this.userAgent = opts.userAgent ?? 'berth/0.1';
    this.policy = {
      attempts: Math.max(1, opts.retry?.attempts ?? defaultRetryPolicy.attempts),
      baseMs: opts.retry?.baseMs ?? defaultRetryPolicy.baseMs,
      maxMs: opts.retry?.maxMs ?? defaultRetryPolicy.maxMs,
      maxRetryAfterMs: opts.retry?.maxRetryAfterMs ?? defaultRetryPolicy.maxRetryAfterMs,
      sleep: opts.sleep ?? defaultRetryPolicy.sleep,
      random: opts.random ?? defaultRetryPolicy.random,
    };
    this.auth = new Authorizer(opts.now ? { now: opts.now } : {});
  }

  async resolve(ref: Reference, signal?: AbortSignal): Promise<Resolved> {
    const name = formatReference(ref);
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const accept = ManifestAccept.join(', ');
    return this.acrossEndpoints(ref, name, async (ep, policy) => {
      const ex = this.exchangeFor(ep, ref, name, `manifest ${name}`, policy, signal, 'check that the repository and tag exist on the registry (tags are case-sensitive)');
      const path = `/v2/${repositoryPath(ep, ref)}/manifests/${reference}`;
      const fromHead = await this.exchange(ex, { method: 'HEAD', path, headers: { accept }, tolerate: true }, async (res) => {
        await discard(res);
        return res.status >= 200 && res.status < 300 ? descriptorFromHead(res, ref.digest, ex) : undefined;
      });
      if (fromHead) return { name, host: ep.host, descriptor: fromHead };
      if (ref.tag !== undefined && ref.digest === undefined) this.log.debug('HEAD gave no usable digest; resolving with GET', { host: ep.host, ref: name });
      const descriptor = await this.exchange(ex, { method: 'GET', path, headers: { accept } }, async (res) => {
        const { bytes, contentType } = await readManifest(res, MAX_MANIFEST_BYTES, ex);
        const served = header(res, 'docker-content-digest');
        const expected = ref.digest ?? (isDigest(served) ? served : undefined);
        const found = digestOf(bytes, expected ? digestAlgorithm(expected) : 'sha256');
        if (expected && found !== expected) {
          throw digestMismatch(ex, expected, found, ref.digest ? undefined : 'the registry\'s Docker-Content-Digest does not match the bytes it sent; a proxy may be altering responses');
        }
        return { mediaType: detectManifestType(bytes, contentType, `${ex.subject.what} from ${ep.host}`), digest: found, size: bytes.length };
      });
      return { name, host: ep.host, descriptor };
    });
  }

  fetcher(ref: Reference): Fetcher {
    const name = formatReference(ref);
    return {
      fetchManifest: (desc, signal) => this.fetchManifest(ref, name, desc, signal),
      fetchBlob: (desc, opts) => this.fetchBlob(ref, name, desc, opts?.offset ?? 0, opts?.signal),
    };
  }

  /** Closes pooled connections. */
  async close(): Promise<void> {
    await this.http.close();
  }

  private async fetchManifest(ref: Reference, name: string, desc: Descriptor, signal?: AbortSignal): Promise<Buffer> {
    if (desc.size > MAX_MANIFEST_BYTES) {
      throw new BerthError('TOO_LARGE', `manifest ${desc.digest} of ${name} is ${desc.size} bytes, above the ${MAX_MANIFEST_BYTES}-byte limit`, {
        details: { ref: name, digest: desc.digest, size: desc.size, limit: MAX_MANIFEST_BYTES },
      });
    }
    const accept = [...new Set([desc.mediaType, ...ManifestAccept])].join(', ');
    return this.acrossEndpoints(ref, name, async (ep, policy) => {
      const ex = this.exchangeFor(ep, ref, name, `manifest ${desc.digest} of ${name}`, policy, signal, 'the registry lacks a manifest its index or tag refers to');
      const path = `/v2/${repositoryPath(ep, ref)}/manifests/${desc.digest}`;
      return this.exchange(ex, { method: 'GET', path, headers: { accept } }, async (res) => {
        const { bytes } = await readManifest(res, desc.size, ex, true);
        if (bytes.length !== desc.size) {
          throw new BerthError('SIZE_MISMATCH', `registry ${ep.host}: ${ex.subject.what}: expected ${desc.size} bytes, received ${bytes.length}`, {
            details: { host: ep.host, ref: name, digest: desc.digest, expected: desc.size, found: bytes.length },
          });
        }
        const found = digestOf(bytes, digestAlgorithm(desc.digest));
        if (found !== desc.digest) throw digestMismatch(ex, desc.digest, found);
        return bytes;
      });
    });
  }

  private async fetchBlob(ref: Reference, name: string, desc: Descriptor, offset: number, signal?: AbortSignal): Promise<BlobBody> {
    return this.acrossEndpoints(ref, name, async (ep, policy) => {
      const ex = this.exchangeFor(ep, ref, name, `blob ${desc.digest} of ${name}`, policy, signal, 'the registry lacks a blob the image manifest references; re-push the image');
      const path = `/v2/${repositoryPath(ep, ref)}/blobs/${desc.digest}`;
      const headers: Headers = offset > 0 ? { range: `bytes=${offset}-` } : {};
      return this.exchange(ex, { method: 'GET', path, headers }, async (res, url) => {
        let start = 0;
        if (res.status === 206) {
          const m = /^bytes (\d+)-/.exec(header(res, 'content-range') ?? '');
          start = m ? Number(m[1]) : offset;
          if (start !== offset) {
            abandon(res.body);
            throw new BerthError('UNAVAILABLE', `registry ${ep.host}: asked for ${ex.subject.what} from byte ${offset}, the server sent from byte ${start}`, {
              details: { host: ep.host, ref: name, digest: desc.digest, offset, served: start },
            });
          }
        }
        const length = Number(header(res, 'content-length'));
        const expected = Number.isSafeInteger(length) && length >= 0 ? length : desc.size - start;
        return new BlobReader(res.body, start, expected, { ...ex.subject, digest: desc.digest }, url.host);
      });
    });
  }

  private exchangeFor(
    ep: RegistryEndpoint,
    ref: Reference,
    name: string,
    what: string,
    policy: RetryPolicy,
    signal: AbortSignal | undefined,
    notFoundHint: string,
  ): Exchange {
    return { ep, subject: { host: ep.host, ref: name, what }, scope: `repository:${repositoryPath(ep, ref)}:pull`, policy, signal, notFoundHint };
  }

  private async acrossEndpoints<T>(ref: Reference, name: string, fn: (ep: RegistryEndpoint, policy: RetryPolicy) => Promise<T>): Promise<T> {
    const endpoints = this.hosts.endpoints(ref.domain);
    for (const [i, ep] of endpoints.entries()) {
      const last = i === endpoints.length - 1;
      try {
        return await fn(ep, last ? this.policy : { ...this.policy, attempts: 1 });
      } catch (err) {
        if (last || !isBerthError(err) || !FALLBACK_CODES.has(err.code)) throw err;
        this.log.warn('registry endpoint failed; trying the next one', { host: ep.host, next: endpoints[i + 1]?.host, ref: name, code: err.code, error: err.message });
      }
    }
    throw new BerthError('INTERNAL', `no registry endpoint configured for ${ref.domain}`);
  }

  private onRetry(ex: Exchange, n: RetryNotice): void {
    const { host, ref } = ex.subject;
    // Info, not warn: the pull.retry event tells the same to the progress display and the events log.
    this.log.info('registry request failed; retrying', { host, ref, what: ex.subject.what, attempt: n.attempt, delayMs: n.delayMs, reason: n.reason });
    this.events.publish({ type: 'pull.retry', ref, host, attempt: n.attempt, delayMs: n.delayMs, reason: n.reason });
  }

  /**
   * One logical request: auth, redirects and retries. `consume` runs on the
   * final 2xx response inside the retry loop, so a body that breaks while
   * `consume` reads it is retried like a failed connect.
   */
  private async exchange<T>(ex: Exchange, spec: RequestSpec, consume: (res: HttpResponse, url: URL) => Promise<T>): Promise<T> {
    const { ep, subject } = ex;
    const creds = ep.auth ?? (await this.credentials.get(ep.host));
    const start = new URL(`${ep.scheme}://${ep.host}${ep.pathPrefix ?? ''}${spec.path}`);
    const base: Headers = { 'user-agent': this.userAgent, 'accept-encoding': 'identity', ...spec.headers };
    const requestToken = this.tokenRequester(ex);

    return withRetry(
      ex.policy,
      async () => {
        let authorization = this.auth.cached(ep.host, ex.scope, creds);
        let challenged = false;
        let url = start;
        for (let hops = 0; hops <= MAX_REDIRECTS; ) {
          const own = url.origin === start.origin;
          const headers = own && authorization && !isSignedURL(url) ? { ...base, authorization } : base;
          const res = await this.http.send(url, { method: spec.method, headers, signal: ex.signal, tls: own ? tlsOf(ep) : undefined }, subject);

          const location = header(res, 'location');
          if (REDIRECT_STATUSES.has(res.status) && location) {
            await discard(res);
            url = new URL(location, url);
            hops++;
            continue;
          }
          if (res.status === 401 && own && !challenged) {
            const challenges = parseWWWAuthenticate(res.headers['www-authenticate']);
            await discard(res);
            challenged = true;
            if (authorization) this.auth.invalidate(ep.host, ex.scope);
            this.log.debug('registry asked for authentication', { host: ep.host, ref: subject.ref, schemes: challenges.map((c) => c.scheme) });
            authorization = await this.auth.answer(challenges, ex.scope, creds, { host: ep.host, ref: subject.ref }, requestToken);
            if (!authorization) throw unauthorized(ex, creds);
            continue;
          }
          if (res.status >= 200 && res.status < 300) {
            try {
              return await consume(res, url);
            } catch (err) {
              throw transportFailure(err, subject, url.host, ex.signal);
            }
          }
          const failure = await statusFailure(res, ex, url.host, creds);
          if (failure) throw failure;
          if (spec.tolerate) return consume(res, url);
          throw unexpectedStatus(ex, res.status, url.host);
        }
        throw new BerthError('UNAVAILABLE', `registry ${ep.host}: more than ${MAX_REDIRECTS} redirects fetching ${subject.what}`, {
          details: { host: ep.host, ref: subject.ref },
        });
      },
      (n) => this.onRetry(ex, n),
      ex.signal,
    );
  }

  private tokenRequester(ex: Exchange): TokenRequester {
    return async (url, headers) => {
      const subject: RequestSubject = { ...ex.subject, what: `a token for ${ex.subject.what}` };
      const res = await this.http.send(
        url,
        { method: 'GET', headers: { 'user-agent': this.userAgent, accept: 'application/json', ...headers }, signal: ex.signal, ...(url.host === ex.ep.host ? { tls: tlsOf(ex.ep) } : {}) },
        subject,
      );
      if (res.status === 429 || RETRY_STATUSES.has(res.status)) {
        const failure = await statusFailure(res, { ...ex, subject }, url.host, undefined);
        if (failure) throw failure;
      }
      try {
        const { bytes, over } = await readCapped(res.body, MAX_TOKEN_BYTES);
        if (over) throw new BerthError('UNAVAILABLE', `token server ${url.host} sent more than ${MAX_TOKEN_BYTES} bytes for ${ex.subject.what}`, { details: { host: ex.ep.host, ref: ex.subject.ref, tokenHost: url.host } });
        return { status: res.status, body: bytes };
      } catch (err) {
        throw transportFailure(err, subject, url.host, ex.signal);
      }
    };
  }
}

function repositoryPath(ep: RegistryEndpoint, ref: Reference): string {
  for (const r of ep.rewrites ?? []) if (r.pattern.test(ref.path)) return ref.path.replace(r.pattern, r.replacement);
  return ref.path;
}

function isSignedURL(url: URL): boolean {
  for (const k of url.searchParams.keys()) if (SIGNATURE_PARAMS.includes(k.toLowerCase())) return true;
  return false;
}

function digestOf(bytes: Buffer, alg: 'sha256' | 'sha512'): Digest {
  return `${alg}:${createHash(alg).update(bytes).digest('hex')}` as Digest;
}

function mediaTypeOf(res: HttpResponse): string | undefined {
  const ct = header(res, 'content-type')?.split(';')[0]?.trim().toLowerCase();
  return ct || undefined;
}

function schema1Refused(ex: Exchange, contentType: string): BerthError {
  return new BerthError('UNSUPPORTED', `registry ${ex.ep.host}: ${ex.subject.what} is a Docker schema1 manifest (${contentType}), which berth does not support`, {
    hint: 'schema1 is deprecated and insecure; re-push the image with a current Docker or any OCI tool to get a schema2/OCI manifest',
    details: { host: ex.ep.host, ref: ex.subject.ref, mediaType: contentType },
  });
}

function tooLarge(ex: Exchange, limit: number, size?: number): BerthError {
  return new BerthError('TOO_LARGE', `registry ${ex.ep.host}: ${ex.subject.what} is ${size !== undefined ? `${size} bytes` : 'larger than that'}, above the ${limit}-byte limit for manifests`, {
    details: { host: ex.ep.host, ref: ex.subject.ref, limit, ...(size !== undefined ? { size } : {}) },
  });
}

function digestMismatch(ex: Exchange, expected: string, found: string, hint?: string): BerthError {
  return new BerthError('DIGEST_MISMATCH', `registry ${ex.ep.host}: ${ex.subject.what}: expected digest ${expected}, found ${found}`, {
    ...(hint ? { hint } : {}),
    details: { host: ex.ep.host, ref: ex.subject.ref, expected, found },
  });
}

/**
 * Reads a manifest body of at most `limit` bytes. Over the limit is TOO_LARGE
 * for a resolve (the cap protects memory), SIZE_MISMATCH for a fetch by
 * descriptor (the limit is the descriptor's size).
 */
async function readManifest(res: HttpResponse, limit: number, ex: Exchange, bySize = false): Promise<{ bytes: Buffer; contentType: string | undefined }> {
  const contentType = mediaTypeOf(res);
  if (contentType && isSchema1(contentType)) {
    await discard(res);
    throw schema1Refused(ex, contentType);
  }
  const length = Number(header(res, 'content-length'));
  const over = (size?: number) =>
    bySize
      ? new BerthError('SIZE_MISMATCH', `registry ${ex.ep.host}: ${ex.subject.what}: expected ${limit} bytes, received ${size !== undefined ? size : 'more'}`, {
          details: { host: ex.ep.host, ref: ex.subject.ref, expected: limit, ...(size !== undefined ? { found: size } : {}) },
        })
      : tooLarge(ex, limit, size);
  if (Number.isSafeInteger(length) && length > limit) {
    abandon(res.body);
    throw over(length);
  }
  const body = await readCapped(res.body, limit);
  if (body.over) throw over();
  return { bytes: body.bytes, contentType };
}

/** A descriptor from HEAD's headers, or undefined when they do not say enough and a GET must. */
function descriptorFromHead(res: HttpResponse, wanted: Digest | undefined, ex: Exchange): Descriptor | undefined {
  const mediaType = mediaTypeOf(res);
  if (mediaType && isSchema1(mediaType)) throw schema1Refused(ex, mediaType);
  const served = header(res, 'docker-content-digest');
  const size = Number(header(res, 'content-length'));
  if (wanted && isDigest(served) && digestAlgorithm(served) === digestAlgorithm(wanted) && served !== wanted) throw digestMismatch(ex, wanted, served);
  const digest = wanted ?? (isDigest(served) ? served : undefined);
  if (!digest || !mediaType || !(isIndex(mediaType) || isManifest(mediaType)) || !Number.isSafeInteger(size) || size < 0) return undefined;
  if (size > MAX_MANIFEST_BYTES) throw tooLarge(ex, MAX_MANIFEST_BYTES, size);
  return { mediaType, digest, size };
}

function unauthorized(ex: Exchange, creds: Credentials | undefined): BerthError {
  const { host, ref } = ex.subject;
  return new BerthError('UNAUTHORIZED', `registry ${host}: not authorized to pull ${ref} (HTTP 401${creds ? ', credentials rejected' : ', no credentials'})`, {
    hint: creds ? CREDENTIALS_HINT : 'this registry needs credentials: add them to ~/.docker/config.json (docker login) or to the registry config (registries.yaml)',
    details: { host, ref, status: 401 },
  });
}

function unexpectedStatus(ex: Exchange, status: number, target: string): BerthError {
  const { host, ref, what } = ex.subject;
  return new BerthError('UNSUPPORTED', `registry ${host}${target !== host ? ` (via ${target})` : ''}: unexpected HTTP ${status} fetching ${what}`, {
    details: { host, ref, status, ...(target !== host ? { target } : {}) },
  });
}

/** The registry's error codes ("MANIFEST_UNKNOWN"…) from an error body, for details; never its free text. */
async function registryErrorCodes(res: HttpResponse): Promise<string[]> {
  try {
    const { bytes } = await readCapped(res.body, MAX_ERROR_BODY_BYTES);
    const doc = JSON.parse(bytes.toString('utf8')) as { errors?: Array<{ code?: unknown }> };
    return (doc.errors ?? []).map((e) => e.code).filter((c): c is string => typeof c === 'string' && /^[A-Z_]{1,64}$/.test(c));
  } catch {
    return [];
  }
}

/**
 * The error a non-2xx, non-redirect status means, or undefined for a status
 * without a meaning of its own (the caller decides). 429 and 5xx come back as
 * RetryableFailures.
 */
async function statusFailure(res: HttpResponse, ex: Exchange, target: string, creds: Credentials | undefined): Promise<BerthError | RetryableFailure | undefined> {
  const { host, ref, what } = ex.subject;
  const status = res.status;
  const via = target !== host ? ` (via ${target})` : '';
  const codes = await registryErrorCodes(res);
  const details = { host, ref, status, ...(target !== host ? { target } : {}), ...(codes.length ? { registryErrors: codes } : {}) };
  const retryAfterMs = parseRetryAfter(header(res, 'retry-after'));
  switch (true) {
    case status === 404:
      return new BerthError('NOT_FOUND', `registry ${host}${via}: ${what} not found (HTTP 404)`, { hint: ex.notFoundHint, details });
    case status === 401:
      return target === host ? unauthorized(ex, creds) : new BerthError('UNAUTHORIZED', `registry ${host}${via}: ${what}: HTTP 401 from the redirect target`, { details });
    case status === 403:
      return new BerthError('FORBIDDEN', `registry ${host}${via}: access to ${what} denied (HTTP 403)`, {
        hint: creds ? 'the credentials were accepted but do not grant pull access to this repository; check the name and its permissions' : CREDENTIALS_HINT,
        details,
      });
    case status === 429:
      return new RetryableFailure(
        new BerthError('RATE_LIMITED', `registry ${host}${via}: rate limited (HTTP 429) fetching ${what}`, {
          hint: 'wait and try again later, log in for a higher limit, or configure a mirror in registries.yaml',
          details,
        }),
        'HTTP 429',
        retryAfterMs,
      );
    case RETRY_STATUSES.has(status):
      return new RetryableFailure(new BerthError('UNAVAILABLE', `registry ${host}${via}: HTTP ${status} fetching ${what}`, { hint: 'the registry is failing; try again later', details }), `HTTP ${status}`, retryAfterMs);
    case status >= 500:
      return new BerthError('UNAVAILABLE', `registry ${host}${via}: HTTP ${status} fetching ${what}`, { details });
    default:
      return undefined;
  }
}
