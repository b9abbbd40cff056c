import type { DesiredContainer, DesiredState, SpecChange } from '../manifests/index.js';
import { diffSpecs, sameOutsideHash, specHash, specHashVersion, specMatches } from '../manifests/index.js';
import type { Digest } from '../oci/digest.js';

/**
 * The plan: a pure function of desired and actual state giving the changes
 * that converge one onto the other. No I/O, no clock: the same inputs give
 * the same plan, which is what `berth plan` prints and `berth apply` does.
 *
 * Rules:
 * - A desired container whose image is not stored needs a pull first; its
 *   create or replace is decided once the digest is known (apply plans
 *   again after pulling). pullPolicy Always refreshes the image at every
 *   apply, which is not by itself a change.
 * - A managed container is replaced when the spec hash (the canonical,
 *   defaulted spec plus the image digest) differs from the one it was made
 *   with, judged by that hash's own version (manifests/hash.ts), so a
 *   newer berth never replaces an unchanged container; the reason and a
 *   field-level diff say why. Fields outside the hash (restart policy,
 *   labels, stop timeout) change by an update of its record, in place.
 * - Same hash: started when it should run and berth stopped it (or it was
 *   never started); stopped when it should not run. A container that exited
 *   by itself is left to its restart policy: reapplying must not rerun a
 *   finished job.
 * - berth only changes what it created (managed); a container of the same
 *   name made by hand is a conflict, reported and left alone.
 * - Managed containers no manifest declares are deleted with prune, and
 *   otherwise reported as orphans — except those of manifests that failed
 *   to load (`keep`, `badFiles`): a typo must never delete a service.
 * - With prune, an image name the reconciler pulled (`managedImages`) that
 *   no manifest declares and no container left after the plan names is
 *   untagged, last, so gc can free what only it kept: a host whose
 *   manifests move from tag to tag does not fill its disk. Names pulled or
 *   imported by hand are never untagged, and none at all while a manifest
 *   failed to load (it may declare any of them).
 */

export interface ActualContainer {
  name: string;
  image: string;
  imageDigest: Digest;
  state: 'created' | 'running' | 'restarting' | 'exited';
  /** What berth last asked of it: 'stopped' after a stop. */
  desired: 'running' | 'stopped';
  /** Present when a manifest made it: the spec hash and the desired spec it was created from. */
  managed?: { specHash: string; spec: DesiredContainer };
}

export interface ActualState {
  containers: ActualContainer[];
  /** Canonical image name → the digest of its manifest for this host, for images that are stored. */
  images: ReadonlyMap<string, Digest>;
  /** Canonical names of stored images the reconciler pulled (and nobody pulled or imported again since). */
  managedImages?: ReadonlySet<string>;
}

export type Change =
  | { action: 'pull'; image: string; reason: string }
  | { action: 'create'; name: string; container: DesiredContainer; reason: string; digest: Digest; specHash: string }
  | { action: 'replace'; name: string; container: DesiredContainer; reason: string; diff: SpecChange[]; digest: Digest; specHash: string }
  | { action: 'update'; name: string; container: DesiredContainer; reason: string; diff: SpecChange[]; specHash: string }
  | { action: 'start'; name: string; reason: string }
  | { action: 'stop'; name: string; reason: string }
  | { action: 'delete'; name: string; reason: string }
  | { action: 'untag'; image: string; reason: string };

/** The changes that act on an image name rather than a container. */
export type ImageChange = Extract<Change, { action: 'pull' | 'untag' }>;
type ContainerChange = Exclude<Change, ImageChange>;

export function isImageChange(c: Change): c is ImageChange {
  return c.action === 'pull' || c.action === 'untag';
}

export interface PlanNote {
  name: string;
  message: string;
}

export interface Plan {
  /** In the order apply runs them: pulls, then stops and deletes (dependents first), then creates, replaces and starts (dependencies first), then untags. */
  changes: Change[];
  /** Images refreshed by pullPolicy Always: pulled at apply, a change only if the digest moved. */
  refresh: string[];
  /** Containers that need a pull before their create or replace can be decided. */
  pending: string[];
  conflicts: PlanNote[];
  orphans: string[];
  unchanged: string[];
}

export interface PlanOptions {
  prune: boolean;
  /** The canonical name of an image reference (oci/'s normalisation). */
  canonical: (ref: string) => string;
  /** Names of objects in manifests that failed to load: never pruned. */
  keep?: ReadonlySet<string>;
  /** Manifest files that failed to load: containers made from them are never pruned. */
  badFiles?: ReadonlySet<string>;
}

export function plan(desired: DesiredState, actual: ActualState, opts: PlanOptions): Plan {
  const out: Plan = { changes: [], refresh: [], pending: [], conflicts: [], orphans: [], unchanged: [] };
  const actualByName = new Map(actual.containers.map((c) => [c.name, c]));
  const desiredNames = new Set(desired.containers.map((c) => c.name));
  const pulls = new Map<string, string>();
  const refresh = new Set<string>();
  const up: ContainerChange[] = [];
  const stops: ContainerChange[] = [];
  const deletes: ContainerChange[] = [];

  for (const img of desired.images) {
    const name = opts.canonical(img.ref);
    if (!actual.images.has(name)) pulls.set(name, `Image ${img.name} is not stored`);
  }

  for (const c of order(desired.containers)) {
    const image = opts.canonical(c.image);
    const digest = actual.images.get(image);
    if (c.pullPolicy === 'Always' && digest) refresh.add(image);
    const current = actualByName.get(c.name);
    if (current && !current.managed) {
      out.conflicts.push({ name: c.name, message: `a container "${c.name}" exists that berth apply did not create; remove it (berth rm ${c.name}) or rename one of them` });
      continue;
    }
    if (!digest) {
      if (c.pullPolicy === 'Never') {
        out.conflicts.push({ name: c.name, message: `image ${image} is not stored and pullPolicy is Never` });
        continue;
      }
      pulls.set(image, `container ${c.name} needs it`);
      out.pending.push(c.name);
      continue;
    }
    const hash = specHash(c, digest);
    if (!current) {
      up.push({ action: 'create', name: c.name, container: c, reason: 'declared, not present', digest, specHash: hash });
      continue;
    }
    const was = current.managed!;
    const diff = was.specHash === hash && sameOutsideHash(was.spec, c) ? [] : diffSpecs(was.spec, c, { from: current.imageDigest, to: digest });
    // `hash` is in this berth's version; only a hash stored by another version is made again, in that version.
    const matches = was.specHash === hash || (specHashVersion(was.specHash) !== specHashVersion(hash) && specMatches(was.specHash, c, digest));
    if (!matches) {
      const replacing = diff.filter((d) => d.replace);
      const reason = replacing.length === 1 && replacing[0]!.path === 'imageDigest' ? `image ${image} is now ${digest}` : replacing.length ? `spec changed: ${replacing.map((d) => d.path).join(', ')}` : 'its spec hash is from another berth version';
      up.push({ action: 'replace', name: c.name, container: c, reason, diff, digest, specHash: hash });
      continue;
    }
    if (diff.length) {
      up.push({ action: 'update', name: c.name, container: c, reason: `changed in place: ${diff.map((d) => d.path).join(', ')}`, diff, specHash: was.specHash });
    }
    const running = current.state === 'running' || current.state === 'restarting';
    if (c.state === 'running' && !running && (current.desired === 'stopped' || current.state === 'created')) {
      up.push({ action: 'start', name: c.name, reason: current.state === 'created' ? 'created, never started' : 'stopped by berth, declared running' });
    } else if (c.state === 'stopped' && (running || current.desired === 'running')) {
      stops.push({ action: 'stop', name: c.name, reason: 'declared stopped' });
    } else if (!diff.length) {
      out.unchanged.push(c.name);
    }
  }

  const extra = actual.containers.filter(
    (c) => c.managed && !desiredNames.has(c.name) && !opts.keep?.has(c.name) && !opts.badFiles?.has(c.managed.spec.source?.file ?? ''),
  );
  for (const c of orderActual(extra)) {
    if (opts.prune) deletes.push({ action: 'delete', name: c.name, reason: 'no manifest declares it (prune)' });
    else out.orphans.push(c.name);
  }

  for (const [image, reason] of [...pulls].sort(([a], [b]) => (a < b ? -1 : 1))) out.changes.push({ action: 'pull', image, reason });
  // Stops run dependents first: the reverse of the creation order they were found in.
  out.changes.push(...stops.reverse(), ...deletes, ...up, ...untags(desired, actual, opts, deletes, up));
  out.refresh = [...refresh].filter((i) => !pulls.has(i)).sort();
  return out;
}

/** Managed image names nothing refers to once the plan's deletes and replaces are done (see the rules above). */
function untags(desired: DesiredState, actual: ActualState, opts: PlanOptions, deletes: ContainerChange[], up: ContainerChange[]): Change[] {
  if (!opts.prune || !actual.managedImages?.size || opts.keep?.size || opts.badFiles?.size) return [];
  const gone = new Set([...deletes, ...up.filter((c) => c.action === 'replace')].map((c) => c.name));
  const named = new Set([...desired.images.map((i) => opts.canonical(i.ref)), ...desired.containers.map((c) => opts.canonical(c.image))]);
  for (const c of actual.containers) if (!gone.has(c.name)) named.add(opts.canonical(c.image));
  return [...actual.managedImages]
    .filter((image) => !named.has(image))
    .sort()
    .map((image) => ({ action: 'untag', image, reason: 'no manifest declares it and no container uses it (prune)' }));
}

/** Whether applying the plan would change anything (what `berth plan`'s exit code 2 means). */
export function hasChanges(p: Plan): boolean {
  return p.changes.length > 0 || p.pending.length > 0;
}

/**
 * Dependencies before their dependents (manifests/ has rejected cycles and
 * unknown targets); otherwise by name, so plans are stable.
 */
export function order(containers: readonly DesiredContainer[]): DesiredContainer[] {
  const byName = new Map(containers.map((c) => [c.name, c]));
  const done = new Set<string>();
  const out: DesiredContainer[] = [];
  const visit = (c: DesiredContainer, path: Set<string>): void => {
    if (done.has(c.name) || path.has(c.name)) return;
    path.add(c.name);
    for (const d of [...c.dependsOn].sort()) {
      const dep = byName.get(d);
      if (dep) visit(dep, path);
    }
    done.add(c.name);
    out.push(c);
  };
  for (const c of [...containers].sort((a, b) => (a.name < b.name ? -1 : 1))) visit(c, new Set());
  return out;
}

/** Actual managed containers, dependents first (the reverse of their creation order). */
function orderActual(containers: readonly ActualContainer[]): ActualContainer[] {
  const specs = containers.map((c) => c.managed!.spec);
  const forward = order(specs).map((s) => s.name);
  const byName = new Map(containers.map((c) => [c.name, c]));
  return forward.reverse().map((n) => byName.get(n)!);
}
