/**
 * A test-only uploader following the distribution spec, independent of
 * src/remotes so fixtures reach the registry without the client under test.
 * Blobs go up monolithically (POST an upload, PUT ?digest=); manifests are
 * PUT with their media type. It answers 401 challenges itself: Basic, or
 * Bearer (token from the realm with service and scope, then retry).
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { request, type Dispatcher } from 'undici';
import type { FixtureImage, FixtureIndex } from '../fixtures/images.js';

export interface PushAuth {
  username: string;
  password: string;
}

type Body = Buffer | string | Readable;

/** Per-repository authorization: remembers the header that last worked so each request is not challenged again. */
class Session {
  private authorization: string | undefined;

  constructor(
    readonly registryUrl: string,
    readonly repo: string,
    private readonly auth: PushAuth | undefined,
  ) {}

  /** Sends a request; on 401 answers the challenge and retries once. `body` is a factory so a stream can be re-made for the retry. */
  async send(
    method: Dispatcher.HttpMethod,
    url: string,
    headers: Record<string, string> = {},
    body?: () => Body,
  ): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
    for (let attempt = 0; ; attempt++) {
      const payload = body ? body() : null;
      const res = await request(url, {
        method,
        headers: { ...headers, ...(this.authorization ? { authorization: this.authorization } : {}) },
        body: payload,
      });
      // A stream the server answered early (e.g. 401) without reading must not leak its file descriptor.
      if (payload && typeof payload === 'object' && 'destroy' in payload && !payload.readableEnded) payload.destroy();
      const text = method === 'HEAD' ? (await res.body.dump(), '') : await res.body.text();
      if (res.statusCode !== 401 || attempt > 0) return { status: res.statusCode, headers: res.headers, text };
      const challenge = res.headers['www-authenticate'];
      await this.answer(Array.isArray(challenge) ? challenge.join(', ') : challenge, url);
    }
  }

  private async answer(challenge: string | undefined, url: string): Promise<void> {
    if (!this.auth) throw new Error(`${url}: registry requires authentication and no credentials were given`);
    const basic = `Basic ${Buffer.from(`${this.auth.username}:${this.auth.password}`).toString('base64')}`;
    const scheme = challenge?.trim().split(/\s+/)[0]?.toLowerCase();
    if (scheme === 'basic') {
      this.authorization = basic;
      return;
    }
    if (scheme !== 'bearer' || !challenge) throw new Error(`${url}: unsupported challenge ${JSON.stringify(challenge)}`);
    const params = parseChallengeParams(challenge.trim().slice('bearer'.length));
    if (!params.realm) throw new Error(`${url}: bearer challenge without realm`);
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set('service', params.service);
    tokenUrl.searchParams.append('scope', `repository:${this.repo}:pull,push`);
    if (params.scope && params.scope !== `repository:${this.repo}:pull,push`) tokenUrl.searchParams.append('scope', params.scope);
    tokenUrl.searchParams.set('account', this.auth.username);
    const res = await request(tokenUrl, { headers: { authorization: basic } });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`token request to ${tokenUrl.origin}${tokenUrl.pathname} failed with ${res.statusCode}: ${text}`);
    const doc = JSON.parse(text) as { token?: string; access_token?: string };
    const token = doc.token ?? doc.access_token;
    if (!token) throw new Error(`token response from ${tokenUrl.origin} has no token`);
    this.authorization = `Bearer ${token}`;
  }
}

/** Parses `k="v", k2=v2` auth-params (quoted values may contain commas). */
export function parseChallengeParams(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/g;
  for (const m of s.matchAll(re)) {
    const key = m[1];
    if (key) out[key.toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3] ?? '';
  }
  return out;
}

function v2(registryUrl: string, repo: string, rest: string): string {
  return `${registryUrl.replace(/\/+$/, '')}/v2/${repo}/${rest}`;
}

function expectStatus(res: { status: number; text: string }, ok: number[], what: string): void {
  if (!ok.includes(res.status)) throw new Error(`${what}: HTTP ${res.status} ${res.text.slice(0, 500)}`);
}

async function uploadBlob(s: Session, digest: string, size: number, body: () => Body): Promise<void> {
  const head = await s.send('HEAD', v2(s.registryUrl, s.repo, `blobs/${digest}`));
  if (head.status === 200) return;
  const start = await s.send('POST', v2(s.registryUrl, s.repo, 'blobs/uploads/'), { 'content-length': '0' });
  expectStatus(start, [202], `start upload of ${digest} to ${s.repo}`);
  const location = start.headers.location;
  if (typeof location !== 'string') throw new Error(`start upload of ${digest}: 202 without Location`);
  // Location may be relative (relativeurls) or absolute; resolve against the registry URL.
  const put = new URL(location, s.registryUrl);
  put.searchParams.set('digest', digest);
  const res = await s.send('PUT', put.toString(), { 'content-type': 'application/octet-stream', 'content-length': String(size) }, body);
  expectStatus(res, [201], `upload of ${digest} to ${s.repo}`);
}

export async function pushBlob(registryUrl: string, repo: string, blob: { digest: string; data: Buffer }, auth?: PushAuth): Promise<void> {
  await uploadBlob(new Session(registryUrl, repo, auth), blob.digest, blob.data.length, () => blob.data);
}

/** Streams a file as one blob (for big benchmark layers): the file is never read into memory. */
export async function pushBlobFile(
  registryUrl: string,
  repo: string,
  blob: { digest: string; path: string; size: number },
  auth?: PushAuth,
): Promise<void> {
  await uploadBlob(new Session(registryUrl, repo, auth), blob.digest, blob.size, () => createReadStream(blob.path));
}

async function putManifest(s: Session, ref: string, mediaType: string, body: Buffer): Promise<void> {
  const res = await s.send('PUT', v2(s.registryUrl, s.repo, `manifests/${ref}`), { 'content-type': mediaType }, () => body);
  expectStatus(res, [201], `PUT manifest ${s.repo}:${ref}`);
}

export async function pushManifest(registryUrl: string, repo: string, ref: string, mediaType: string, body: Buffer, auth?: PushAuth): Promise<void> {
  await putManifest(new Session(registryUrl, repo, auth), ref, mediaType, body);
}

async function pushImageBlobs(s: Session, img: FixtureImage): Promise<void> {
  for (const b of [img.config, ...img.layers]) await uploadBlob(s, b.digest, b.size, () => b.data);
}

/** Pushes every blob, then (for an index) each child manifest by digest, then the manifest or index under `ref`. */
export async function pushImage(registryUrl: string, repo: string, ref: string, img: FixtureImage | FixtureIndex, auth?: PushAuth): Promise<void> {
  const s = new Session(registryUrl, repo, auth);
  if ('index' in img) {
    for (const child of img.images) {
      await pushImageBlobs(s, child);
      await putManifest(s, child.digest, child.mediaType, child.manifest);
    }
    await putManifest(s, ref, img.mediaType, img.index);
  } else {
    await pushImageBlobs(s, img);
    await putManifest(s, ref, img.mediaType, img.manifest);
  }
}
