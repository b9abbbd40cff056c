import type { ContentStore } from '../content/store.js';
import { isBerthError } from '../errors.js';
import type { BerthEvent, EventPublisher } from '../events.js';
import type { Logger } from '../log.js';
import { RefLabel, type Lease, type LeaseHolder, type MetadataStore } from '../metadata/store.js';
import type { Digest } from '../oci/digest.js';
import type { SnapshotInfo, Snapshotter } from '../snapshots/snapshotter.js';

/**
 * gc/ — mark and sweep, after containerd's garbage collector. What is kept
 * (marked):
 *  - content reachable from an image name, from a container's image, or
 *    named by a live lease (a pull or import in progress, or one that
 *    failed and keeps what it fetched for the next), following the
 *    gc.ref labels (index → manifests → config and layers);
 *  - committed snapshots named by a marked config's snapshot label or by a
 *    container's chain ID, the parents of every snapshot that is not
 *    committed (a container's rootfs, an unpack in progress), and those
 *    chains down to their base;
 *  - ingests (partial downloads, which a later pull resumes) that changed
 *    within INGEST_MAX_AGE_MS or that a live lease names.
 * Everything else in those three sets is removed, and so are expired
 * leases. Active snapshots and views are never removed here: their owners
 * (containers, unpacks) remove them or redo them.
 *
 * It runs beside pulls, imports and containers in other processes without
 * a lock. Candidates are listed first, then leases, then images: a blob a
 * pull commits is named by its lease or by the image the pull recorded
 * before it dropped its lease. A pull names a blob in its lease before it
 * looks for it, and a doomed blob is moved aside before a last look at the
 * leases, so a pull that starts meanwhile either finds it gone or gets it
 * back. Snapshots are not leased: no committed snapshot goes while any pull
 * or import runs, that is while a live lease is neither settled nor held by
 * a process that is gone. A failed pull settles its lease, so a daemon
 * retrying an image that keeps failing does not hold snapshot collection
 * back; a pull killed outright (SIGKILL, power cut) is known by its holder.
 */

/** Partial downloads older than this are stale: the lease of the pull that wrote them (24 h) would have expired. */
export const INGEST_MAX_AGE_MS = 24 * 3600_000;

export interface GcDeps {
  content: ContentStore;
  metadata: MetadataStore;
  snapshotter: Snapshotter;
  /** The snapshotter's name in snapshot labels (RefLabel.snapshot). */
  snapshotterName: string;
  logger: Logger;
  /** Gets gc.done after a collection that was not a dry run. */
  events?: EventPublisher;
  /** Whether a lease's holder still runs; without it, every unsettled live lease counts as work in progress. */
  holderRunning?: (h: LeaseHolder) => boolean;
  now?: () => Date;
}

export interface GcReport {
  dryRun: boolean;
  /** Blobs removed (or, dry, to remove), with their sizes. */
  blobs: Array<{ digest: Digest; size: number }>;
  /** Committed snapshots removed, children before parents. */
  snapshots: string[];
  /** Ingest refs removed. */
  ingests: string[];
  /** Expired leases removed (of pulls and imports that died). */
  leases: string[];
  /** Bytes of the removed blobs and ingests (snapshot sizes are not counted). */
  bytes: number;
  /** Garbage left for a later collection, and why: in use since the listing, or snapshots while a pull runs. */
  skipped: Array<{ what: string; reason: string }>;
}

export async function collectGarbage(deps: GcDeps, opts: { dryRun?: boolean } = {}): Promise<GcReport> {
  const { content, metadata, snapshotter, logger } = deps;
  const now = (deps.now ?? (() => new Date()))();
  const dryRun = opts.dryRun === true;
  const started = Date.now();

  // Candidates first: whatever appears after this is not touched.
  const blobs: Array<{ digest: Digest; size: number }> = [];
  for await (const b of content.list()) blobs.push({ digest: b.digest, size: b.size });
  const snapshots = await snapshotter.list();
  const ingests = await content.ingests();

  // Roots: leases before images (a pull records its image before it drops its lease).
  const live = (l: Lease): boolean => !l.expiresAt || Date.parse(l.expiresAt) > now.getTime();
  const allLeases = await metadata.leases.list();
  const leases = allLeases.filter(live);
  const images = await metadata.images.list();
  const containers = await metadata.containers.list();

  const keptContent = new Set<Digest>();
  const keptSnapshots = new Set<string>();
  const leasedIngests = new Set<string>();
  const queue: Digest[] = [];
  const markContent = (d: Digest): void => {
    if (!keptContent.has(d)) {
      keptContent.add(d);
      queue.push(d);
    }
  };
  for (const lease of leases) {
    for (const r of lease.resources) {
      if (r.type === 'content') markContent(r.id);
      else if (r.type === 'snapshot') keptSnapshots.add(r.id);
      else leasedIngests.add(r.id);
    }
  }
  for (const img of images) markContent(img.target.digest);
  for (const c of containers) {
    markContent(c.imageDigest);
    keptSnapshots.add(c.chainId);
  }
  const snapshotLabel = RefLabel.snapshot(deps.snapshotterName);
  while (queue.length) {
    const d = queue.pop()!;
    const labels = await metadata.content.get(d);
    for (const [k, v] of Object.entries(labels)) {
      if (k.startsWith(RefLabel.prefix)) markContent(v as Digest);
      else if (k === snapshotLabel) keptSnapshots.add(v);
    }
  }

  const byKey = new Map(snapshots.map((s) => [s.key, s]));
  // An active snapshot or view (a container's rootfs, an unpack in progress) keeps its parent; a kept snapshot keeps its chain.
  for (const s of snapshots) if (s.kind !== 'committed' && s.parent) keptSnapshots.add(s.parent);
  for (const key of [...keptSnapshots]) {
    for (let p = byKey.get(key)?.parent; p && !keptSnapshots.has(p); p = byKey.get(p)?.parent) keptSnapshots.add(p);
  }

  const report: GcReport = { dryRun, blobs: [], snapshots: [], ingests: [], bytes: 0, leases: [], skipped: [] };

  // Snapshots are not leased, and an unpack may be about to build on any committed one: none goes while a pull or
  // import runs (checked again before each removal).
  const doomed = snapshots.filter((s) => s.kind === 'committed' && !keptSnapshots.has(s.key));
  const depth = (s: SnapshotInfo): number => {
    let n = 0;
    for (let p = s.parent; p; p = byKey.get(p)?.parent) n++;
    return n;
  };
  // A settled lease (a pull that failed) still protects its content, but no unpack of its is running; nor is one of
  // a holder that is gone (killed, a power cut).
  const inProgress = (l: Lease): boolean => live(l) && !l.settledAt && !(l.holder && deps.holderRunning && !deps.holderRunning(l.holder));
  let held = leases.some(inProgress);
  for (const s of doomed.sort((a, b) => depth(b) - depth(a))) {
    if (held || (!dryRun && (held = (await metadata.leases.list()).some(inProgress)))) {
      report.skipped.push({ what: `snapshot ${s.key}`, reason: 'a pull or import is in progress; a later collection removes it' });
      continue;
    }
    try {
      if (!dryRun) await snapshotter.remove(s.key);
      report.snapshots.push(s.key);
    } catch (err) {
      // A child made since the listing (a container's rootfs, a view): it is in use now.
      if (!isBerthError(err, 'FAILED_PRECONDITION') && !isBerthError(err, 'NOT_FOUND')) throw err;
      report.skipped.push({ what: `snapshot ${s.key}`, reason: (err as Error).message });
    }
  }

  // A blob is moved aside, then deleted unless a lease names it by then: a pull names a blob before it looks for it,
  // so it either finds it gone (and fetches it) or gets it back.
  const leased = async (d: Digest): Promise<boolean> => (await metadata.leases.list()).some((l) => live(l) && l.resources.some((r) => r.type === 'content' && r.id === d));
  for (const b of blobs) {
    if (keptContent.has(b.digest)) continue;
    if (!dryRun) {
      const deleted = await content.delete(b.digest, { unless: () => leased(b.digest) }).catch((err: unknown) => {
        if (isBerthError(err, 'NOT_FOUND')) return false; // removed meanwhile
        throw err;
      });
      if (!deleted) {
        report.skipped.push({ what: `blob ${b.digest}`, reason: 'a pull or import uses it now' });
        continue;
      }
      await metadata.content.set(b.digest, {});
    }
    report.blobs.push(b);
    report.bytes += b.size;
  }

  for (const l of allLeases) {
    if (live(l)) continue;
    if (!dryRun) await metadata.leases.delete(l.id);
    report.leases.push(l.id);
  }

  for (const ing of ingests) {
    if (leasedIngests.has(ing.ref) || now.getTime() - ing.updatedAt.getTime() < INGEST_MAX_AGE_MS) continue;
    if (!dryRun) {
      try {
        await content.abortIngest(ing.ref);
      } catch (err) {
        // A writer holds it (a download that stalled for a day, still open), or it went meanwhile.
        if (!isBerthError(err, 'LOCKED') && !isBerthError(err, 'NOT_FOUND')) throw err;
        report.skipped.push({ what: `partial download ${ing.ref}`, reason: (err as Error).message });
        continue;
      }
    }
    report.ingests.push(ing.ref);
    report.bytes += ing.offset;
  }

  const counts = { blobs: report.blobs.length, snapshots: report.snapshots.length, ingests: report.ingests.length, bytes: report.bytes };
  logger.info(dryRun ? 'garbage found (dry run)' : 'garbage collected', { ...counts, skipped: report.skipped.length });
  if (!dryRun) deps.events?.publish({ type: 'gc.done', ...counts, durationMs: Date.now() - started });
  return report;
}

/** Events after which there may be garbage: a name that moved or went, a container that went. */
const LEAVES_GARBAGE: ReadonlySet<BerthEvent['type']> = new Set(['image.updated', 'image.deleted', 'container.removed']);

/**
 * Collects garbage `delayMs` after the first event of a burst that may have
 * left some (a daemon's pulls that move names, replaced and pruned
 * containers), one collection at a time; events during a collection
 * schedule one more.
 */
export class GcScheduler {
  private timer: NodeJS.Timeout | undefined;
  /** The last collection queued: each waits for the one before. */
  private tail: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly collect: () => Promise<unknown>,
    private readonly delayMs: number,
    private readonly logger: Logger,
  ) {}

  observe(e: BerthEvent): void {
    if (this.stopped || this.timer || !LEAVES_GARBAGE.has(e.type)) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.queue();
    }, this.delayMs);
  }

  private queue(): void {
    const next = (this.tail ?? Promise.resolve()).then(async () => {
      if (this.stopped) return;
      try {
        await this.collect();
      } catch (err) {
        this.logger.error('garbage collection failed', { error: (err as Error).message });
      }
    });
    this.tail = next;
    void next.then(() => {
      if (this.tail === next) this.tail = undefined;
    });
  }

  /** No more collections; waits for one in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.tail;
  }
}
