import { digestHex, sha256 } from '../oci/index.js';
import type { ContainerSettings, DesiredContainer } from './desired.js';

/**
 * The spec hash: a fingerprint of what a running container is made of, so
 * the reconciler replaces a container exactly when that changes. It is
 * "v1:" + the sha256 hex of the canonical JSON (keys sorted) of:
 *
 * - the image digest the reference resolved to: a new digest is a new root
 *   filesystem and config. The reference as written is not hashed: moving
 *   from `web:1.4` to `web@sha256:…` of the same image restarts nothing.
 * - config without stopSignal: everything baked into the bundle or the
 *   process (command, args, env, user, working directory, hostname,
 *   network, root read-only, mounts, resources, capabilities, devices).
 *
 * Not hashed, because changing them needs no new container, only an update of
 * its record or an action on it (`diffSpecs` marks them replace: false):
 * labels; restart (the supervisor reads policy and backoff from the record
 * at each exit); stopTimeout and stopSignal (read when stopping); state
 * (start or stop, not replace); dependsOn (ordering only); pullPolicy (how
 * the digest is found, and the digest is hashed); name and source.
 *
 * Canonical form v1, frozen: fields left out and fields at their default are
 * the same (`env: {}`, `mounts: []`, `network: none`, `readonlyRootfs: false`,
 * a bind mount's `readonly: false`, empty `options` and capability lists);
 * capabilities are upper case with CAP_, deduplicated and sorted; sizes are
 * bytes and modes numbers (desired.ts). `command: []` and `args: []` are not
 * defaults (they drop the image's Entrypoint and Cmd) and stay. Config
 * fields v1 does not know (added by a later berth) are hashed as they are,
 * minus empty values, so adding an optional field changes no existing hash.
 *
 * A later berth that needs another canonical form adds "v2" and keeps v1:
 * the reconciler compares a container with `specMatches(storedHash, …)`,
 * which recomputes the stored hash's version, so an upgrade never replaces a
 * container whose spec did not change.
 */

export const SPEC_HASH_VERSIONS = ['v1'] as const;
export type SpecHashVersion = (typeof SPEC_HASH_VERSIONS)[number];
export const SPEC_HASH_VERSION: SpecHashVersion = 'v1';

const CANONICAL: Readonly<Record<SpecHashVersion, (c: DesiredContainer, imageDigest: string) => unknown>> = {
  v1: (c, imageDigest) => ({ imageDigest, config: canonicalConfigV1(c.config) }),
};

/** What the hash of `version` is computed over, as a plain JSON value. */
export function canonicalSpec(c: DesiredContainer, imageDigest: string, version: SpecHashVersion = SPEC_HASH_VERSION): unknown {
  return CANONICAL[version](c, imageDigest);
}

export function specHash(c: DesiredContainer, imageDigest: string, version: SpecHashVersion = SPEC_HASH_VERSION): string {
  return `${version}:${digestHex(sha256(canonicalJSON(canonicalSpec(c, imageDigest, version))))}`;
}

/** The version of a stored hash; undefined for one this berth cannot compute (from a newer berth, or damaged). */
export function specHashVersion(hash: string): SpecHashVersion | undefined {
  const v = hash.slice(0, hash.indexOf(':'));
  return (SPEC_HASH_VERSIONS as readonly string[]).includes(v) ? (v as SpecHashVersion) : undefined;
}

/** Whether a container created under `stored` is what `c` with this image digest asks for, judged by the stored hash's own version. */
export function specMatches(stored: string, c: DesiredContainer, imageDigest: string): boolean {
  const version = specHashVersion(stored);
  return version !== undefined && specHash(c, imageDigest, version) === stored;
}

function canonicalConfigV1(config: ContainerSettings): Record<string, unknown> {
  const { command, args, env, network, readonlyRootfs, mounts, capabilities, stopSignal: _notHashed, ...rest } = config;
  const out = (withoutEmpty(rest) ?? {}) as Record<string, unknown>;
  if (command !== undefined) out.command = [...command];
  if (args !== undefined) out.args = [...args];
  if (env && Object.keys(env).length) out.env = { ...env };
  if (network !== undefined && network !== 'none') out.network = network;
  if (readonlyRootfs) out.readonlyRootfs = true;
  if (mounts?.length) {
    out.mounts = mounts.map((m) => {
      const { readonly, options, ...fields } = m as typeof m & { readonly?: boolean };
      return { ...withoutEmpty(fields) as object, ...(readonly ? { readonly: true } : {}), ...(options?.length ? { options: [...options] } : {}) };
    });
  }
  const caps = withoutEmpty({ add: capabilityList(capabilities?.add), drop: capabilityList(capabilities?.drop) });
  if (caps !== undefined) out.capabilities = caps;
  return out;
}

function capabilityList(names: string[] | undefined): string[] | undefined {
  if (!names) return undefined;
  const normal = names.map((n) => n.trim().toUpperCase()).map((n) => (n === 'ALL' || n.startsWith('CAP_') ? n : `CAP_${n}`));
  return [...new Set(normal)].sort();
}

/** A copy without undefined values, empty lists and empty mappings, at any depth; undefined when nothing is left. */
function withoutEmpty(v: unknown): unknown {
  if (Array.isArray(v)) return v.length ? v.map((x) => withoutEmpty(x) ?? null) : undefined;
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const y = withoutEmpty(x);
      if (y !== undefined) out[k] = y;
    }
    return Object.keys(out).length ? out : undefined;
  }
  return v;
}

/** JSON with object keys sorted at every depth; arrays keep their order. */
export function canonicalJSON(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => canonicalJSON(x === undefined ? null : x)).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v).filter(([, x]) => x !== undefined).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJSON(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

// ---- field-level differences

export interface SpecChange {
  /** "config.env.LOG_LEVEL", "config.mounts[1].target", "restart.policy", "imageDigest". */
  path: string;
  /** undefined: absent (or at its default) on that side. */
  from: unknown;
  to: unknown;
  /** Whether this change alone replaces the container (the field is in the spec hash). */
  replace: boolean;
}

/**
 * What differs between two desired containers, field by field, on the same
 * canonical form the hash uses (so `env: {}` and no env do not differ), plus
 * the fields outside the hash. With the image digests, an image change shows
 * as `imageDigest`, and `image` alone (same digest) replaces nothing; without
 * them a changed `image` counts as a replace, as it most likely resolves to
 * another digest.
 */
export function diffSpecs(from: DesiredContainer, to: DesiredContainer, digests?: { from: string; to: string }): SpecChange[] {
  const changes: SpecChange[] = [];
  const replaces = (path: string): boolean =>
    path === 'imageDigest' || (path === 'image' && digests === undefined) || ((path === 'config' || path.startsWith('config.') || path.startsWith('config[')) && !path.startsWith('config.stopSignal'));
  const walk = (path: string, a: unknown, b: unknown): void => {
    if (canonicalJSON(a) === canonicalJSON(b)) return;
    if (isMapping(a) && isMapping(b)) {
      for (const k of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) walk(`${path}${/^[A-Za-z_][\w-]*$/.test(k) ? `.${k}` : `[${JSON.stringify(k)}]`}`, a[k], b[k]);
    } else if (Array.isArray(a) && Array.isArray(b) && a.length === b.length) {
      a.forEach((x, i) => walk(`${path}[${i}]`, x, b[i]));
    } else {
      const p = path.replace(/^\./, '');
      changes.push({ path: p, from: a, to: b, replace: replaces(p) });
    }
  };
  walk('', comparable(from, digests?.from), comparable(to, digests?.to));
  return changes;
}

function comparable(c: DesiredContainer, imageDigest: string | undefined): Record<string, unknown> {
  const { stopSignal, ...outside } = outsideHash(c);
  return { ...outside, imageDigest, config: { ...canonicalConfigV1(c.config), stopSignal } };
}

/** The fields diffSpecs compares that the spec hash leaves out. */
function outsideHash(c: DesiredContainer): Record<string, unknown> {
  return {
    image: c.image,
    pullPolicy: c.pullPolicy,
    stopSignal: c.config.stopSignal,
    restart: c.restart,
    stopTimeoutMs: c.stopTimeoutMs,
    state: c.state,
    dependsOn: c.dependsOn.length ? [...c.dependsOn].sort() : undefined,
    labels: Object.keys(c.labels).length ? c.labels : undefined,
  };
}

/**
 * Whether diffSpecs would find nothing between two containers whose spec
 * hashes (of one version) are equal: then only the fields outside the hash
 * can differ, and comparing those spares serialising both configs again
 * (plan does this for every container).
 */
export function sameOutsideHash(from: DesiredContainer, to: DesiredContainer): boolean {
  return canonicalJSON(outsideHash(from)) === canonicalJSON(outsideHash(to));
}

function isMapping(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}
