import { BerthError } from '../errors.js';
import type { Credentials } from './credentials.js';

/**
 * Registry authentication after the distribution spec's token flow: a 401
 * carries a WWW-Authenticate challenge; Basic means "send credentials",
 * Bearer means "get a token from realm for service and scope, then send it".
 * Tokens are cached per (host, scope) until they expire; which scheme a host
 * wants is remembered so later requests authenticate up front.
 *
 * Nothing here logs, and no error built here carries a token, a password or a
 * header value.
 */

export interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/**
 * Parses WWW-Authenticate (RFC 7235): one or more challenges, each a scheme
 * followed by comma-separated auth-params with token or quoted-string values.
 * Unknown schemes are dropped.
 */
export function parseWWWAuthenticate(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const out: Challenge[] = [];
  for (const h of Array.isArray(header) ? header : [header]) {
    let current: Challenge | undefined;
    let scheme = '';
    const re = /\s*(?:([!#$%&'*+.^_`|~\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))|([!#$%&'*+.^_`|~\w-]+))\s*,?/y;
    let m: RegExpExecArray | null;
    while (re.lastIndex < h.length && (m = re.exec(h)) !== null) {
      if (m[4] !== undefined) {
        scheme = m[4].toLowerCase();
        current = scheme === 'basic' || scheme === 'bearer' ? { scheme, params: {} } : undefined;
        if (current) out.push(current);
      } else if (m[1] !== undefined && current) {
        current.params[m[1].toLowerCase()] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
      }
      if (m[0] === '') break;
    }
  }
  return out;
}

export function basicAuthorization(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

/** What the token server said, already read (bounded) from the wire. */
export interface TokenResponse {
  status: number;
  body: Buffer;
}

/** Performs the token request; the registry client supplies it so TLS, cancellation and retries are shared. */
export type TokenRequester = (url: URL, headers: Record<string, string>) => Promise<TokenResponse>;

export interface TokenRequestContext {
  host: string;
  ref: string;
}

interface CachedToken {
  authorization: string;
  expiresAt: number;
}

/** Seconds of validity assumed when the token server does not say (the spec's default). */
const DEFAULT_EXPIRES_S = 60;

export class Authorizer {
  private readonly tokens = new Map<string, CachedToken>();
  private readonly basicHosts = new Set<string>();
  private readonly now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    this.now = opts.now ?? Date.now;
  }

  /** The Authorization header to send up front, if a scheme was already negotiated with the host. */
  cached(host: string, scope: string, creds: Credentials | undefined): string | undefined {
    if (this.basicHosts.has(host) && creds) return basicAuthorization(creds);
    const t = this.tokens.get(`${host} ${scope}`);
    if (!t) return undefined;
    if (this.now() >= t.expiresAt) {
      this.tokens.delete(`${host} ${scope}`);
      return undefined;
    }
    return t.authorization;
  }

  /** Forgets what a 401 proved stale. */
  invalidate(host: string, scope: string): void {
    this.tokens.delete(`${host} ${scope}`);
  }

  /**
   * Answers a 401's challenges with an Authorization header, or undefined when
   * none can be answered (Basic without credentials, an unknown scheme).
   * Bearer prefers a token server's answer over Basic when both are offered.
   */
  async answer(
    challenges: Challenge[],
    scope: string,
    creds: Credentials | undefined,
    ctx: TokenRequestContext,
    requestToken: TokenRequester,
  ): Promise<string | undefined> {
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (bearer) return this.fetchToken(bearer, scope, creds, ctx, requestToken);
    if (challenges.some((c) => c.scheme === 'basic') && creds) {
      this.basicHosts.add(ctx.host);
      return basicAuthorization(creds);
    }
    return undefined;
  }

  private async fetchToken(
    ch: Challenge,
    scope: string,
    creds: Credentials | undefined,
    ctx: TokenRequestContext,
    requestToken: TokenRequester,
  ): Promise<string> {
    const realm = ch.params.realm;
    let url: URL;
    try {
      if (!realm) throw new Error('no realm');
      url = new URL(realm);
      if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('bad scheme');
    } catch {
      throw new BerthError('UNAUTHORIZED', `registry ${ctx.host} sent a Bearer challenge without a usable realm for ${ctx.ref}`, {
        hint: 'the registry or its token server is misconfigured',
        details: { host: ctx.host, ref: ctx.ref },
      });
    }
    if (ch.params.service) url.searchParams.set('service', ch.params.service);
    const scopes = [scope];
    for (const s of (ch.params.scope ?? '').split(' ')) if (s && !scopes.includes(s)) scopes.push(s);
    for (const s of scopes) url.searchParams.append('scope', s);
    const headers: Record<string, string> = {};
    if (creds) {
      url.searchParams.set('account', creds.username);
      headers.authorization = basicAuthorization(creds);
    }

    const started = this.now();
    const res = await requestToken(url, headers);
    const tokenHost = url.host;
    if (res.status === 401 || res.status === 403) {
      throw new BerthError(res.status === 401 ? 'UNAUTHORIZED' : 'FORBIDDEN', `token server ${tokenHost} refused a token for ${ctx.ref} on registry ${ctx.host} (HTTP ${res.status})`, {
        hint: creds
          ? 'check the credentials for this registry in ~/.docker/config.json or the registry config (registries.yaml)'
          : 'this repository needs credentials: add them to ~/.docker/config.json (docker login) or to the registry config (registries.yaml)',
        details: { host: ctx.host, ref: ctx.ref, tokenHost, status: res.status },
      });
    }
    if (res.status < 200 || res.status >= 300) {
      throw new BerthError('UNAVAILABLE', `token server ${tokenHost} answered HTTP ${res.status} for ${ctx.ref} on registry ${ctx.host}`, {
        details: { host: ctx.host, ref: ctx.ref, tokenHost, status: res.status },
      });
    }
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
    } catch {
      doc = {};
    }
    const token = typeof doc.token === 'string' && doc.token ? doc.token : typeof doc.access_token === 'string' ? doc.access_token : '';
    if (!token) {
      throw new BerthError('UNAUTHORIZED', `token server ${tokenHost} gave no token for ${ctx.ref} on registry ${ctx.host}`, {
        hint: 'the token server answered without a "token" or "access_token" field',
        details: { host: ctx.host, ref: ctx.ref, tokenHost },
      });
    }
    const expiresS = typeof doc.expires_in === 'number' && doc.expires_in > 0 ? doc.expires_in : DEFAULT_EXPIRES_S;
    // Renew a little early so a token does not expire between being sent and being checked.
    const slackMs = Math.min(10_000, (expiresS * 1000) / 4);
    const authorization = `Bearer ${token}`;
    this.tokens.set(`${ctx.host} ${scope}`, { authorization, expiresAt: started + expiresS * 1000 - slackMs });
    return authorization;
  }
}
