import type { ContainerService, ContainerView } from '../containers/index.js';
import { asBerthError, type BerthError, type ErrorCode } from '../errors.js';
import type { EventPublisher } from '../events.js';
import type { Logger } from '../log.js';
import type { DesiredContainer, DesiredState } from '../manifests/index.js';
import type { Digest } from '../oci/digest.js';
import { plan, type ActualContainer, type ActualState, type Change, type ImageChange, type Plan, type PlanOptions } from './plan.js';

/**
 * Observing the host and applying plans. Observation only reads (records,
 * runtime state, stored images). Apply runs in two phases: first every pull
 * the plan needs (in parallel), then, planned again with the digests now
 * known, the container changes in order. This is download-then-replace: an
 * old container keeps running until its new image is stored and unpacked.
 *
 * Every step is idempotent, so an apply killed midway converges on the next
 * run. A step that fails does not stop the others, except those that need
 * it: a container whose image failed to pull, or whose dependency failed.
 */

export interface ImageStore {
  /** The digest of the stored manifest `ref` names for this host, or undefined. */
  stored(ref: string): Promise<Digest | undefined>;
  /** Pulls and unpacks `ref`, recording the name as the reconciler's (managed). */
  pull(ref: string, opts?: { platform?: string }): Promise<void>;
  /** Canonical names of the stored images the reconciler pulled, unless pulled or imported by hand since. */
  managed(): Promise<string[]>;
  /** Removes the name if it is still the reconciler's; a name pulled by hand meanwhile, or gone, is left. */
  untag(name: string): Promise<void>;
}

export interface ReconcileDeps {
  containers: ContainerService;
  images: ImageStore;
  events: EventPublisher;
  logger: Logger;
  canonical: (ref: string) => string;
  /** How many pulls run at once. */
  pullConcurrency?: number;
}

export interface StepResult {
  change: Change;
  ok: boolean;
  /** Why it failed, or why it was skipped. */
  error?: { code: ErrorCode; message: string; hint?: string };
  skipped?: boolean;
  durationMs: number;
}

export interface ApplyReport {
  /** The plan of the second phase (after pulls); `planned` the one shown before anything ran. */
  plan: Plan;
  planned: Plan;
  steps: StepResult[];
  /** Every step succeeded and nothing is left pending or in conflict. */
  converged: boolean;
}

export async function observe(deps: ReconcileDeps, desired: DesiredState): Promise<ActualState> {
  const views = await deps.containers.list();
  const containers = views.map(toActual);
  const refs = new Set([...desired.containers.map((c) => c.image), ...desired.images.map((i) => i.ref)]);
  const images = new Map<string, Digest>();
  const [managed] = await Promise.all([
    deps.images.managed(),
    ...[...refs].map(async (ref) => {
      const digest = await deps.images.stored(ref);
      if (digest) images.set(deps.canonical(ref), digest);
    }),
  ]);
  return { containers, images, managedImages: new Set(managed) };
}

function toActual(v: ContainerView): ActualContainer {
  const a: ActualContainer = { name: v.name, image: v.image, imageDigest: v.imageDigest, state: v.state, desired: v.desired };
  if (v.managed) a.managed = { specHash: v.managed.specHash, spec: v.managed.spec as unknown as DesiredContainer };
  return a;
}

/** Prune settings: what to spare is decided by the caller (the manifests that failed to load). */
export type PruneOptions = Omit<PlanOptions, 'canonical'>;

export async function planFor(deps: ReconcileDeps, desired: DesiredState, opts: PruneOptions): Promise<Plan> {
  return plan(desired, await observe(deps, desired), { ...opts, canonical: deps.canonical });
}

export async function apply(deps: ReconcileDeps, desired: DesiredState, opts: PruneOptions): Promise<ApplyReport> {
  const planned = await planFor(deps, desired, opts);
  const steps: StepResult[] = [];
  /** Image → how its pull failed. */
  const failedImages = new Map<string, { code: ErrorCode; message: string }>();

  // Phase 1: pulls (what is missing, and pullPolicy Always refreshes), a few at a time.
  const platforms = new Map(desired.images.filter((i) => i.platform).map((i) => [deps.canonical(i.ref), i.platform!]));
  const pulls = [...planned.changes.filter((c): c is Extract<Change, { action: 'pull' }> => c.action === 'pull'), ...planned.refresh.map((image) => ({ action: 'pull' as const, image, reason: 'pullPolicy Always' }))];
  const queue = [...pulls];
  const worker = async (): Promise<void> => {
    for (let c = queue.shift(); c; c = queue.shift()) {
      const platform = platforms.get(c.image);
      const r = await step(c, () => deps.images.pull(c.image, platform ? { platform } : {}));
      if (!r.ok) failedImages.set(c.image, r.error ?? { code: 'INTERNAL', message: 'failed' });
      steps.push(r);
    }
  };
  await Promise.all(Array.from({ length: Math.min(deps.pullConcurrency ?? 3, queue.length) }, worker));

  // Phase 2: containers, planned again now that digests are known.
  const final = await planFor(deps, desired, opts);
  const failed = new Set<string>();
  const byName = new Map(desired.containers.map((c) => [c.name, c]));
  for (const change of final.changes) {
    if (change.action === 'pull') {
      if (!failedImages.has(change.image)) steps.push(skip(change, 'FAILED_PRECONDITION', `image ${change.image} is still not stored`));
      continue;
    }
    if (change.action === 'untag') {
      steps.push(await step(change, () => deps.images.untag(change.image)));
      continue;
    }
    const c = byName.get(change.name);
    const blockedBy = c?.dependsOn.find((d) => failed.has(d));
    if (blockedBy && change.action !== 'stop' && change.action !== 'delete') {
      failed.add(change.name);
      steps.push(skip(change, 'FAILED_PRECONDITION', `its dependency ${blockedBy} failed in this apply`));
      continue;
    }
    const r = await step(change, () => run(deps, change));
    if (!r.ok) failed.add(change.name);
    steps.push(r);
  }
  // Containers still pending had an image that failed: say so once per container,
  // with the pull's error, so status shows why and the controller retries them
  // exactly when it retries the pull.
  for (const name of final.pending) {
    const c = byName.get(name)!;
    const image = deps.canonical(c.image);
    const pull = failedImages.get(image);
    steps.push(skip({ action: 'create', name, container: c, reason: 'waiting for its image', digest: '' as Digest, specHash: '' }, pull?.code ?? 'UNAVAILABLE', `image ${image} could not be pulled${pull ? `: ${pull.message}` : ''}`));
  }
  const converged = steps.every((s) => s.ok) && final.pending.length === 0 && final.conflicts.length === 0;
  return { plan: final, planned, steps, converged };
}

async function step(change: Change, fn: () => Promise<unknown>): Promise<StepResult> {
  const started = Date.now();
  try {
    await fn();
    return { change, ok: true, durationMs: Date.now() - started };
  } catch (err) {
    const e: BerthError = asBerthError(err);
    return { change, ok: false, error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) }, durationMs: Date.now() - started };
  }
}

function skip(change: Change, code: ErrorCode, message: string): StepResult {
  return { change, ok: false, skipped: true, error: { code, message }, durationMs: 0 };
}

async function run(deps: ReconcileDeps, change: Exclude<Change, ImageChange>): Promise<void> {
  const svc = deps.containers;
  switch (change.action) {
    case 'create':
      await create(svc, change.container, change.specHash);
      return;
    case 'replace': {
      const old = await svc.record(change.name).catch(() => undefined);
      const timeout = (old?.managed?.spec as { stopTimeoutMs?: number } | undefined)?.stopTimeoutMs ?? change.container.stopTimeoutMs;
      if (old) {
        await svc.stop(change.name, timeout);
        await svc.remove(change.name, { force: true });
      }
      await create(svc, change.container, change.specHash);
      deps.events.publish({ type: 'container.replaced', name: change.name, reason: change.reason, diff: change.diff.map(({ path, from, to }) => ({ path, from, to })) });
      return;
    }
    case 'update':
      await svc.updateSettings(change.name, {
        restart: change.container.restart,
        labels: change.container.labels,
        managed: { specHash: change.specHash, spec: change.container as unknown as Record<string, unknown> },
      });
      return;
    case 'start':
      await svc.start(change.name);
      return;
    case 'stop': {
      const rec = await svc.record(change.name);
      await svc.stop(change.name, (rec.managed?.spec as { stopTimeoutMs?: number } | undefined)?.stopTimeoutMs);
      return;
    }
    case 'delete': {
      const rec = await svc.record(change.name);
      await svc.stop(change.name, (rec.managed?.spec as { stopTimeoutMs?: number } | undefined)?.stopTimeoutMs);
      await svc.remove(change.name, { force: true });
      return;
    }
  }
}

async function create(svc: ContainerService, c: DesiredContainer, specHash: string): Promise<void> {
  const req = {
    name: c.name,
    image: c.image,
    config: c.config,
    restart: c.restart,
    labels: c.labels,
    managed: { specHash, spec: c as unknown as Record<string, unknown> },
  };
  await (c.state === 'running' ? svc.run(req) : svc.create(req));
}
