/**
 * Image references parsed and normalised as Docker's distribution/reference
 * does: "busybox" → docker.io/library/busybox (":latest" is added when
 * formatting); "host:5000/a/b:tag"; "name@sha256:…"; "name:tag@sha256:…"
 * keeps both (the digest wins for fetching).
 *
 *   reference := name [":" tag] ["@" digest]
 *   name      := [domain "/"] path            (at most 255 characters, normalised)
 *   domain    := host [":" port] | "[" IPv6 "]" [":" port]
 *   path      := component ("/" component)*
 *   component := [a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*
 *   tag       := [\w][\w.-]{0,127}
 *
 * The first "/"-separated part is the domain only when it contains "." or ":"
 * or is "localhost"; otherwise the domain is docker.io, where a single
 * component gets "library/". "index.docker.io" is the legacy name of docker.io.
 */
import { BerthError } from '../errors.js';
import { parseDigest, type Digest } from './digest.js';

export interface Reference {
  /** Registry host as written, with port: "docker.io", "127.0.0.1:5000". */
  domain: string;
  /** Repository path without domain: "library/busybox". */
  path: string;
  tag?: string;
  digest?: Digest;
}

export const DEFAULT_DOMAIN = 'docker.io';
export const DEFAULT_TAG = 'latest';
/** Longest name (domain/path, after normalisation) Docker accepts. */
export const MAX_NAME_LENGTH = 255;

const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const DOCKER_REGISTRY_HOST = 'registry-1.docker.io';
const OFFICIAL_PREFIX = 'library/';

const HOST_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${HOST_COMPONENT}(?:\\.${HOST_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const HEX64_RE = /^[a-f0-9]{64}$/;

const EXAMPLES = 'a reference looks like busybox, busybox:1.36, registry.example:5000/team/app:1.4 or name@sha256:<64 hex>';

function invalid(ref: string, problem: string, hint: string = EXAMPLES, cause?: unknown): BerthError {
  return new BerthError('INVALID_REFERENCE', `invalid image reference ${JSON.stringify(ref)}: ${problem}`, {
    hint,
    details: { ref },
    ...(cause === undefined ? {} : { cause }),
  });
}

/** Parses and normalises; INVALID_REFERENCE with the reason and a hint on bad input. */
export function parseReference(s: string): Reference {
  if (s === '') throw invalid(s, 'reference is empty');
  refuseURL(s);
  if (HEX64_RE.test(s)) {
    throw invalid(s, 'a bare 64-character hex string is an image ID, not a repository name', 'to name content by digest write name@sha256:<hex>');
  }

  // Neither name nor tag may contain "@", so the first one starts the digest.
  let rest = s;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (d === '') throw invalid(s, 'nothing follows "@"', 'after "@" give a digest such as sha256:<64 lowercase hex>, or drop the "@"');
    try {
      digest = parseDigest(d, 'digest');
    } catch (err) {
      const hint = err instanceof BerthError && err.hint ? err.hint : EXAMPLES;
      throw invalid(s, err instanceof Error ? err.message : `digest ${JSON.stringify(d)} is not valid`, hint, err);
    }
  }

  // A ":" after the last "/" starts the tag; earlier ones belong to a domain's port.
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (tag === '') throw invalid(s, 'nothing follows ":"', 'give a tag after ":" (busybox:1.36) or drop the ":" to mean :latest');
    if (!TAG_RE.test(tag)) {
      throw invalid(
        s,
        tag.length > 128 ? `tag is ${tag.length} characters long, the maximum is 128` : `tag ${JSON.stringify(tag)} is not valid`,
        'a tag is 1 to 128 letters, digits, "_", "." or "-", and does not start with "." or "-"',
      );
    }
  }

  if (rest === '') throw invalid(s, 'repository name is empty');
  const written = splitDomain(rest);
  let { domain, path } = written;
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = OFFICIAL_PREFIX + path;

  if (!DOMAIN_RE.test(domain)) {
    throw invalid(s, `registry host ${JSON.stringify(domain)} is not a valid host[:port]`, 'a registry host is a DNS name, an IPv4 address or a bracketed IPv6 address, optionally followed by :port');
  }
  // Components are checked lowercased: a name whose only fault is its case gets the lowercase spelling as its hint.
  for (const component of path.split('/')) {
    if (!PATH_COMPONENT_RE.test(component.toLowerCase())) {
      throw invalid(
        s,
        component === '' ? `repository name ${JSON.stringify(path)} has an empty path component` : `path component ${JSON.stringify(component)} of repository ${JSON.stringify(path)} is not valid`,
        'path components are separated by single "/"; each is lowercase letters and digits, joined by ".", "_", "__" or dashes, and starts and ends with a letter or digit',
      );
    }
  }
  if (path.toLowerCase() !== path) {
    const suggestion = s.slice(0, rest.length - written.path.length) + written.path.toLowerCase() + s.slice(rest.length);
    throw invalid(s, `repository name ${JSON.stringify(path)} must be lowercase`, `repository names are lowercase: use ${JSON.stringify(suggestion)}`);
  }
  const nameLength = domain.length + 1 + path.length;
  if (nameLength > MAX_NAME_LENGTH) {
    throw invalid(s, `repository name is ${nameLength} characters long (as ${domain}/…), the maximum is ${MAX_NAME_LENGTH}`, 'use a shorter repository path');
  }

  return { domain, path, ...(tag === undefined ? {} : { tag }), ...(digest === undefined ? {} : { digest }) };
}

/**
 * People paste URLs ("https://user:token@host/repo"). A reference has no
 * scheme and no user:password@; refuse them early and keep what may be a
 * password out of the message. What follows userinfo's "@" is host[:port]/…;
 * what follows a digest's "@" starts "algorithm:" and never a port and "/".
 */
const DIGEST_START_RE = /^[A-Za-z][\w+.-]*:(?!\d+\/)/;

function refuseURL(s: string): void {
  const at = s.indexOf('@');
  const after = s.slice(at + 1);
  const userinfo = at >= 0 && after.includes('/') && !DIGEST_START_RE.test(after);
  if (userinfo) {
    throw invalid(`<credentials>@${after}`, 'credentials (user:password@) do not belong in a reference', 'drop them from the reference and configure registry credentials for the host instead');
  }
  if (s.includes('://')) throw invalid(s, 'a reference has no URL scheme', `drop ${JSON.stringify(s.slice(0, s.indexOf('://') + 3))}: write host[:port]/path[:tag]`);
}

function splitDomain(name: string): { domain: string; path: string } {
  const slash = name.indexOf('/');
  if (slash < 0) return { domain: DEFAULT_DOMAIN, path: name };
  const first = name.slice(0, slash);
  if (first.includes('.') || first.includes(':') || first === 'localhost') return { domain: first, path: name.slice(slash + 1) };
  return { domain: DEFAULT_DOMAIN, path: name };
}

/** Canonical string: domain/path[:tag][@digest]; tag "latest" is added when neither tag nor digest was given. */
export function formatReference(r: Reference): string {
  return repositoryName(r) + suffix(r, true);
}

/** "domain/path" */
export function repositoryName(r: Reference): string {
  return `${r.domain}/${r.path}`;
}

/**
 * Short form of the name for humans, as Docker shows it: "busybox",
 * "team/app", "127.0.0.1:5000/a/b". It parses back to the same name:
 * "docker.io/library/a/b" stays "library/a/b".
 */
export function familiarName(r: Reference): string {
  if (r.domain !== DEFAULT_DOMAIN) return repositoryName(r);
  const rest = r.path.startsWith(OFFICIAL_PREFIX) ? r.path.slice(OFFICIAL_PREFIX.length) : undefined;
  return rest !== undefined && !rest.includes('/') ? rest : r.path;
}

/** familiarName with the tag and digest as given (no implied ":latest"): "busybox:1.36". */
export function familiarString(r: Reference): string {
  return familiarName(r) + suffix(r, false);
}

function suffix(r: Reference, impliedLatest: boolean): string {
  const tag = r.tag ?? (impliedLatest && r.digest === undefined ? DEFAULT_TAG : undefined);
  return (tag === undefined ? '' : `:${tag}`) + (r.digest === undefined ? '' : `@${r.digest}`);
}

/** The host to contact for the domain: docker.io → registry-1.docker.io. */
export function registryHost(domain: string): string {
  return domain === DEFAULT_DOMAIN ? DOCKER_REGISTRY_HOST : domain;
}
