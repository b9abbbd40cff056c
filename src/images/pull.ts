import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ContentStore } from '../content/store.js';
import { BerthError, isTransient } from '../errors.js';
import type { EventPublisher } from '../events.js';
import type { Logger } from '../log.js';
import { RefLabel, type ImageRecord, type LeaseHolder, type MetadataStore } from '../metadata/store.js';
import {
  formatPlatform,
  formatReference,
  isConfig,
  isIndex,
  isManifest,
  layerCompression,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  normalizePlatform,
  parseImageConfig,
  parseIndex,
  parseManifest,
  parseReference,
  platformMatcher,
  type Descriptor,
  type Digest,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
  type Reference,
} from '../oci/index.js';
import type { BlobBody, Fetcher, Resolver } from '../remotes/resolver.js';
import { Semaphore, SingleFlight } from './limit.js';
import type { LayerSource, Unpacker, UnpackPlan } from './unpack.js';

/**
 * Pulling an image: the first stretch of containerd's data flow. Resolve the
 * reference; fetch, verify and store the index (if any), pick the platform's
 * manifest, fetch, verify and store it; fetch the config and the layers with
 * bounded concurrency, each verified by the content store on commit; label
 * content with its references (for GC); then point the name at the digest.
 *
 * Contracts:
 * - Nothing unverified is ever stored: blobs go through ContentStore ingests.
 * - Blobs already present are not fetched again; an interrupted blob resumes
 *   from the bytes its ingest kept (Range request), also after a SIGKILL.
 * - Concurrent pulls in this process share the work per blob digest; across
 *   processes the content store's per-ref ingest lock serialises writers and
 *   the second one finds the blob committed.
 * - A lease protects the pull's content until the name is recorded. A pull
 *   that failed after downloading keeps its lease, settled, until it expires
 *   or the next pull of the name here takes over, so gc spares what was
 *   fetched; one that failed before drops it.
 */

export interface PullOptions {
  /** Wanted platform; the host's when absent. */
  platform?: Platform;
  /** Unpack into snapshots while downloading (needs PullerDeps.unpacker). */
  unpack?: boolean;
  signal?: AbortSignal;
  /** Blob downloads at once for this pull (PullerDeps.concurrency when absent). */
  concurrency?: number;
  /** Labels of the image record besides the platform's (the record's labels are replaced at every pull). */
  labels?: Record<string, string>;
}

export interface PullResult {
  record: ImageRecord;
  /** The platform manifest that was pulled (the target itself when it is not an index). */
  manifest: Descriptor;
  config: Descriptor;
  platform: Platform;
  /** Bytes downloaded in this pull (blobs already present count zero). */
  fetchedBytes: number;
  durationMs: number;
  /** The top snapshot (chain ID of the last layer) when unpacked. */
  snapshot?: Digest;
}

export interface PullerDeps {
  content: ContentStore;
  metadata: MetadataStore;
  resolver: Resolver;
  events: EventPublisher;
  logger: Logger;
  /** Used when PullOptions.platform is absent. */
  hostPlatform: Platform;
  /** Opened on the first pull that unpacks (opening the snapshotter costs a mount probe). */
  unpacker?: () => Promise<Unpacker>;
  /** Parallel blob downloads (default 3). */
  concurrency?: number;
  /** Attempts per blob when the connection breaks mid-transfer (default 5). */
  blobAttempts?: number;
  /** How long a failed pull's lease protects its content (default 24 h). */
  leaseTtlMs?: number;
  /** This process, recorded in the leases it takes (gc/ tells a pull in progress from one that was killed). */
  leaseHolder?: LeaseHolder;
  now?: () => number;
}

/** Label on image records naming the platform that was pulled. */
export const PlatformLabel = 'berth.io/platform';

const PROGRESS_INTERVAL_MS = 100;
/**
 * Size of each of a transfer's two buffers: the network fills one while the
 * other is hashed and written, in one write. Large enough that per-buffer
 * costs vanish, small enough that 3 parallel transfers stay well under 50 MB.
 */
const TRANSFER_BUFFER_BYTES = 4 << 20;

export class ImagePuller {
  private readonly blobs = new SingleFlight<number>();
  private readonly pulls = new SingleFlight<PullResult>();
  /** Image name → the settled lease its last failed pull left (replaced by the next pull of the name). */
  private readonly failedLeases = new Map<string, string>();
  private readonly now: () => number;
  /**
   * Transfer buffers not in use, kept for the next blob while any transfer
   * runs (fresh memory costs a page fault per 4 KiB), dropped when none does.
   */
  private spareBuffers: Buffer[] = [];
  private transfers = 0;

  constructor(private readonly deps: PullerDeps) {
    this.now = deps.now ?? Date.now;
  }

  pull(refString: string, opts: PullOptions = {}): Promise<PullResult> {
    const ref = parseReference(refString);
    const platform = normalizePlatform(opts.platform ?? this.deps.hostPlatform);
    const key = `${formatReference(ref)} ${formatPlatform(platform)}${opts.unpack ? " unpack" : ""}`;
    return this.pulls.do(key, () => this.doPull(ref, platform, opts));
  }

  private async doPull(ref: Reference, platform: Platform, opts: PullOptions): Promise<PullResult> {
    const { metadata, resolver } = this.deps;
    const name = formatReference(ref);
    const started = this.now();
    // Independent of each other: the registry's round trip and the lease's metadata commit overlap.
    const leasing = metadata.leases.create({ ttlMs: this.deps.leaseTtlMs ?? 24 * 3600_000, labels: { 'berth.io/pull': name }, ...(this.deps.leaseHolder ? { holder: this.deps.leaseHolder } : {}) });
    const resolving = resolver.resolve(ref, opts.signal);
    const [leased, resolved] = await Promise.allSettled([leasing, resolving]);
    if (leased.status === 'rejected') throw leased.reason;
    const lease = leased.value;
    const progress = { downloading: false };
    // Once this pull has downloaded, it names what the last failed pull of the name fetched (as it goes), and
    // that pull's lease is dropped; until then, that lease is what keeps it.
    const dropEarlier = async (): Promise<void> => {
      const earlier = this.failedLeases.get(name);
      this.failedLeases.delete(name);
      if (earlier) await metadata.leases.delete(earlier).catch(() => {});
    };
    try {
      if (resolved.status === 'rejected') throw resolved.reason;
      const result = await this.pullResolved(ref, name, platform, opts, lease.id, resolved.value, started, progress);
      await dropEarlier();
      return result;
    } catch (err) {
      // A failure before any blob download began leaves nothing worth protecting. After one, the lease keeps what was
      // fetched for the next attempt until it expires, settled: no longer a pull in progress, which holds back
      // snapshot collection (gc/). A daemon retrying an image keeps one such lease per name, not one per attempt.
      if (!progress.downloading) await metadata.leases.delete(lease.id).catch(() => {});
      else {
        await dropEarlier();
        await metadata.leases.settle(lease.id).catch(() => {});
        this.failedLeases.set(name, lease.id);
      }
      throw err;
    }
  }

  private async pullResolved(
    ref: Reference,
    name: string,
    platform: Platform,
    opts: PullOptions,
    leaseId: string,
    resolved: Awaited<ReturnType<Resolver['resolve']>>,
    started: number,
    progress: { downloading: boolean },
  ): Promise<PullResult> {
    const { content, metadata, resolver, events } = this.deps;
    const log = this.deps.logger.child({ ref: name });
    const root = resolved.descriptor;
    events.publish({ type: 'pull.resolved', ref: name, digest: root.digest, mediaType: root.mediaType, host: resolved.host });
    log.info('resolved', { digest: root.digest, mediaType: root.mediaType, host: resolved.host });
    const fetcher = resolver.fetcher(ref);
    let fetchedBytes = 0;

    const getManifestBytes = async (desc: Descriptor): Promise<Buffer> => {
      await metadata.leases.addResource(leaseId, { type: 'content', id: desc.digest });
      if (await content.info(desc.digest)) return content.readBytes(desc.digest, MAX_MANIFEST_BYTES);
      const bytes = await fetcher.fetchManifest(desc, opts.signal);
      await content.put({ digest: desc.digest, size: desc.size }, bytes);
      fetchedBytes += bytes.length;
      return bytes;
    };

    let manifestDesc = root;
    let index: ImageIndex | undefined;
    if (isIndex(root.mediaType)) {
      index = parseIndex(await getManifestBytes(root), root.mediaType, `index ${root.digest} of ${name}`);
      manifestDesc = selectManifest(index, platform, name);
      log.debug('selected platform manifest', { digest: manifestDesc.digest, platform: formatPlatform(platform) });
    } else if (!isManifest(root.mediaType)) {
      throw new BerthError('UNSUPPORTED', `${name} (${root.digest}) has media type ${root.mediaType}, which is neither an image manifest nor an index`, {
        hint: 'berth pulls container images; artifacts of other types are not supported',
      });
    }
    const manifest = parseManifest(await getManifestBytes(manifestDesc), manifestDesc.mediaType, `manifest ${manifestDesc.digest} of ${name}`);
    checkManifest(manifest, manifestDesc, name);
    if (opts.unpack && !this.deps.unpacker) throw new BerthError('INTERNAL', 'unpack requested but no unpacker is configured');

    // One metadata commit for the lot (concurrent writes share a transaction).
    await Promise.all([manifest.config, ...manifest.layers].map((d) => metadata.leases.addResource(leaseId, { type: 'content', id: d.digest })));
    const sem = new Semaphore(opts.concurrency ?? this.deps.concurrency ?? 3);
    const stop = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
    // The config comes before the layers where it decides something about them: unpacking plans from it which layers
    // are snapshotted already (those are not downloaded), and a single-platform image must match a --platform asked
    // for. Otherwise it is queued with the layers, ahead of them, as containerd fetches a manifest's children.
    const configFirst = Boolean(opts.unpack || (!index && opts.platform));
    const configLoad = configFirst ? this.fetchConfig(fetcher, manifest.config, name) : sem.run(() => this.fetchConfig(fetcher, manifest.config, name));
    const checkedConfig = configLoad.then((c) => {
      checkConfig(c.config, manifest, manifestDesc, name, index ? undefined : { platform, asked: Boolean(opts.platform) }, log);
      return c;
    });
    checkedConfig.catch(() => {}); // awaited below, with the layers
    let plan: UnpackPlan | undefined;
    let unpacker: Unpacker | undefined;
    if (configFirst) {
      const { config } = await checkedConfig;
      unpacker = opts.unpack ? await this.deps.unpacker?.() : undefined;
      plan = unpacker ? await unpacker.plan(config) : undefined;
    }
    // Resolved when a layer's download has opened its ingest, so the
    // unpacker can follow the bytes as they arrive.
    const opened = manifest.layers.map(() => {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      return { promise, resolve };
    });
    // Layers below the committed snapshot prefix are not needed at all.
    const fetches = manifest.layers.map(async (layer, i) => {
      if (plan && i < plan.committedPrefix) return 0;
      return sem.run(() =>
        this.blobs.do(layer.digest, () =>
          this.fetchBlob(fetcher, layer, name, signal, () => {
            progress.downloading = true;
            opened[i]!.resolve();
          }),
        ),
      );
    });
    const source = (i: number): LayerSource => {
      const layer = manifest.layers[i]!;
      return {
        done: fetches[i]!,
        open: async () => {
          await Promise.race([opened[i]!.promise, fetches[i]!]);
          // Stop following when the download fails: no more bytes will come.
          const failed = new AbortController();
          fetches[i]!.catch(() => failed.abort());
          const follow = AbortSignal.any([signal, failed.signal]);
          const following = (await content.info(layer.digest)) ? undefined : await content.followIngest(ingestRef(layer.digest), layer.size, follow);
          if (following) return following;
          await fetches[i]; // shared with another pull, or already committed
          return content.reader(layer.digest);
        },
      };
    };
    // A failure surfaces through whichever await sees it first; the rest must not go unhandled.
    for (const f of fetches) f.catch(() => {});
    let snapshot: Digest | undefined;
    let sizes: number[];
    let config: ImageConfig;
    try {
      config = (await checkedConfig).config;
      fetchedBytes += (await checkedConfig).fetched;
      if (unpacker && plan) snapshot = await unpacker.unpack(name, manifest.layers, manifest.config.digest, config, plan, source);
      sizes = await Promise.all(fetches);
    } catch (err) {
      stop.abort(); // no point downloading the rest of an image that failed
      throw err;
    }
    fetchedBytes += sizes.reduce((a, b) => a + b, 0);
    const pulledPlatform = configPlatform(config);

    // Reference labels are written once every blob they name is present.
    await metadata.content.set(manifestDesc.digest, {
      [RefLabel.config]: manifest.config.digest,
      ...Object.fromEntries(manifest.layers.map((l, i) => [RefLabel.layer(i), l.digest])),
    });
    if (index) await metadata.content.set(root.digest, { [RefLabel.manifest(0)]: manifestDesc.digest });

    const { record, previous } = await metadata.images.put({ name, target: root, labels: { ...opts.labels, [PlatformLabel]: formatPlatform(pulledPlatform) } });
    if (!previous) events.publish({ type: 'image.created', name, digest: root.digest });
    else if (previous.target.digest !== root.digest) events.publish({ type: 'image.updated', name, digest: root.digest, previous: previous.target.digest });
    await metadata.leases.delete(leaseId);

    const durationMs = this.now() - started;
    events.publish({ type: 'pull.done', ref: name, digest: root.digest, bytes: fetchedBytes, durationMs });
    log.info('pulled', { digest: root.digest, bytes: fetchedBytes, durationMs });
    return { record, manifest: manifestDesc, config: manifest.config, platform: pulledPlatform, fetchedBytes, durationMs, ...(snapshot ? { snapshot } : {}) };
  }

  private async fetchConfig(fetcher: Fetcher, desc: Descriptor, name: string): Promise<{ config: ImageConfig; fetched: number }> {
    const { content } = this.deps;
    if (desc.size > MAX_CONFIG_BYTES) {
      throw new BerthError('TOO_LARGE', `${name}: config ${desc.digest} is ${desc.size} bytes, above the ${MAX_CONFIG_BYTES}-byte limit`);
    }
    let fetched = 0;
    if (!(await content.info(desc.digest))) fetched = await this.blobs.do(desc.digest, () => this.fetchBlob(fetcher, desc, name));
    const bytes = await content.readBytes(desc.digest, MAX_CONFIG_BYTES);
    return { config: parseImageConfig(bytes, `config ${desc.digest} of ${name}`), fetched };
  }

  /**
   * Fetches one blob into the content store, resuming from what its ingest
   * holds. Returns the bytes downloaded (0 when the blob was present).
   */
  private async fetchBlob(fetcher: Fetcher, desc: Descriptor, name: string, signal?: AbortSignal, onStart?: () => void): Promise<number> {
    const { content, events } = this.deps;
    const attempts = this.deps.blobAttempts ?? 5;
    if (await content.info(desc.digest)) {
      events.publish({ type: 'pull.layer.done', ref: name, digest: desc.digest, size: desc.size, cached: true });
      return 0;
    }
    let downloaded = 0;
    for (let attempt = 1; ; attempt++) {
      const writer = await content.writer(ingestRef(desc.digest), { digest: desc.digest, size: desc.size });
      onStart?.();
      try {
        if (writer.offset < desc.size) {
          events.publish({ type: 'pull.layer.start', ref: name, digest: desc.digest, size: desc.size, offset: writer.offset });
          const body = await fetcher.fetchBlob(desc, { offset: writer.offset, ...(signal ? { signal } : {}) });
          let offset = body.offset;
          let reported = offset;
          let lastReport = 0;
          const report = (): void => {
            if (offset === reported) return;
            downloaded += offset - reported;
            reported = offset;
            events.publish({ type: 'pull.layer.progress', ref: name, digest: desc.digest, size: desc.size, offset });
          };
          try {
            if (body.offset !== writer.offset) await writer.truncate();
            await this.transfer(body, writer.stream(), (n) => {
              offset += n;
              const t = this.now();
              if (t - lastReport >= PROGRESS_INTERVAL_MS) {
                lastReport = t;
                report();
              }
            });
          } catch (err) {
            body.cancel();
            throw err;
          } finally {
            report();
          }
        }
        await writer.commit();
        events.publish({ type: 'pull.layer.done', ref: name, digest: desc.digest, size: desc.size, cached: false });
        return downloaded;
      } catch (err) {
        // Keep the partial data: the next attempt (or the next pull) resumes it.
        await writer.close().catch(() => {});
        if (signal?.aborted) throw new BerthError('CANCELLED', `${name}: download of ${desc.digest} cancelled`, { cause: err });
        if (!isTransient(err) || attempt >= attempts) throw err;
        this.deps.logger.warn('blob transfer interrupted, resuming', { ref: name, digest: desc.digest, attempt, reason: (err as Error).message });
      }
    }
  }

  /**
   * Moves a blob body into an ingest stream with two reused buffers: while
   * the network fills one, the content store hashes and writes the other.
   * Nothing is allocated or copied per chunk. `sink` must be done with a
   * chunk when its write callback runs (ContentWriter.stream() is).
   */
  private async transfer(body: BlobBody, sink: Writable, onBytes: (n: number) => void): Promise<void> {
    this.transfers++;
    const bufs = [this.spareBuffers.pop() ?? Buffer.allocUnsafeSlow(TRANSFER_BUFFER_BYTES), this.spareBuffers.pop() ?? Buffer.allocUnsafeSlow(TRANSFER_BUFFER_BYTES)];
    const writes: Array<Promise<void> | undefined> = [undefined, undefined];
    sink.on('error', () => {}); // failures arrive through the write callbacks and finished()
    try {
      for (let i = 0; ; i ^= 1) {
        await writes[i]; // this buffer's previous write is done with it
        const buf = bufs[i]!;
        const n = await body.readInto(buf);
        if (n === 0) break;
        const w = new Promise<void>((resolve, reject) => sink.write(buf.subarray(0, n), (err) => (err ? reject(err) : resolve())));
        w.catch(() => {}); // awaited before the buffer is reused or the transfer ends
        writes[i] = w;
        onBytes(n);
      }
      await Promise.all(writes);
      sink.end();
      await finished(sink);
    } finally {
      // A buffer goes back only when no write can still be reading it.
      await Promise.allSettled(writes);
      if (--this.transfers > 0) this.spareBuffers.push(...bufs);
      else this.spareBuffers = [];
    }
  }
}

/** The ingest a pull writes a blob through (resumed by the next pull of it). */
const ingestRef = (digest: Digest): string => `pull-${digest}`;

/** Picks the index entry for the platform, best rank first; lists what exists when nothing matches. */
export function selectManifest(index: ImageIndex, platform: Platform, name: string): Descriptor {
  const matcher = platformMatcher(platform);
  let best: { desc: Descriptor; rank: number } | undefined;
  for (const desc of index.manifests) {
    if (!desc.platform || !isManifest(desc.mediaType)) continue;
    const rank = matcher.rank(normalizePlatform(desc.platform));
    if (rank !== Infinity && (!best || rank < best.rank)) best = { desc, rank };
  }
  if (best) return best.desc;
  const available = index.manifests.filter((d) => d.platform).map((d) => formatPlatform(normalizePlatform(d.platform!)));
  throw new BerthError('NO_MATCHING_PLATFORM', `${name} has no image for ${formatPlatform(platform)}; available: ${available.length ? available.join(', ') : 'none'}`, {
    hint: available.length ? `choose one with --platform, e.g. --platform ${available[0]}` : undefined,
    details: { wanted: formatPlatform(platform), available },
  });
}

function configPlatform(config: ImageConfig): Platform {
  return normalizePlatform({ os: config.os, architecture: config.architecture, ...(config.variant ? { variant: config.variant } : {}) });
}

/**
 * The config agrees with its manifest. A single-platform image (`single`;
 * an index's entry was chosen by its platform already) must be for the
 * platform asked for, or is pulled with a warning when none was asked for
 * and it is not the host's.
 */
function checkConfig(config: ImageConfig, manifest: ImageManifest, desc: Descriptor, name: string, single: { platform: Platform; asked: boolean } | undefined, log: Logger): void {
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new BerthError('INVALID_MANIFEST', `${name}: manifest ${desc.digest} has ${manifest.layers.length} layers but its config ${manifest.config.digest} lists ${config.rootfs.diff_ids.length} diff_ids`);
  }
  const pulled = configPlatform(config);
  if (!single || platformMatcher(single.platform).match(pulled)) return;
  if (single.asked) throw new BerthError('NO_MATCHING_PLATFORM', `${name} is a single-platform image for ${formatPlatform(pulled)}, not ${formatPlatform(single.platform)}`);
  log.warn('image platform does not match the host', { image: formatPlatform(pulled), host: formatPlatform(single.platform) });
}

function checkManifest(m: ImageManifest, desc: Descriptor, name: string): void {
  if (!isConfig(m.config.mediaType)) {
    throw new BerthError('UNSUPPORTED', `${name}: manifest ${desc.digest} has config media type ${m.config.mediaType}, which is not an image config`, {
      hint: 'this is probably an OCI artifact, not a container image',
    });
  }
  for (const [i, l] of m.layers.entries()) {
    if (layerCompression(l.mediaType) === undefined) {
      throw new BerthError('UNSUPPORTED', `${name}: layer ${i} (${l.digest}) has unknown media type ${l.mediaType}`);
    }
  }
}
