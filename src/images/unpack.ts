import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { applyLayerOnThread } from '../archive/index.js';
import type { ContentStore } from '../content/store.js';
import { BerthError, isBerthError } from '../errors.js';
import type { EventPublisher } from '../events.js';
import type { Logger } from '../log.js';
import { readdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { mountPoints, unmount, withMounts } from '../mount/index.js';
import { SingleFlight } from './limit.js';
import { chainIds, layerCompression, type Descriptor, type Digest, type ImageConfig, type ImageManifest } from '../oci/index.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import { RefLabel, type MetadataStore } from '../metadata/store.js';

/**
 * Unpacking: for each layer, apply it onto a snapshot of the previous one and
 * commit the result under its chain ID (containerd's unpacker).
 *
 * Contracts:
 * - Layers are applied strictly in order; layer i waits for its blob only,
 *   so the caller can keep downloading later layers meanwhile.
 * - A chain ID that is already committed is neither applied again nor
 *   needed: `committedPrefix` tells the puller which blobs it can skip.
 * - A layer is applied into an active snapshot keyed
 *   `extract-<nonce>-<chainID>` and committed only after the whole layer was
 *   applied, its diffID verified and its files synced (the snapshotter's
 *   commit syncs). A crash leaves an active snapshot that is never used:
 *   the next unpack of that chain removes it (when its owner is dead) and
 *   applies the layer again.
 */

export interface UnpackerDeps {
  content: ContentStore;
  metadata: MetadataStore;
  snapshotter: Snapshotter;
  /** Names the snapshotter in the config's snapshot reference label (for GC). */
  snapshotterName: string;
  events: EventPublisher;
  logger: Logger;
  /**
   * Where temporary mount points are made (under --state): in a folder
   * named by our pid, so mounts left by a killed process can be told apart
   * from those of a live one and removed.
   */
  mountRoot: string;
  pid: number;
  isAlive: (pid: number) => boolean;
}

/** Label on extraction snapshots naming the process that applies them. */
const EXTRACT_PID = 'berth.io/extract.pid';
const EXTRACT_PREFIX = 'extract-';

/** Where a layer's bytes come from while unpacking. */
export interface LayerSource {
  /**
   * The layer blob's bytes, possibly while they still download: NOT
   * verified. Nothing made of them is committed before `done` resolved.
   */
  open(): Promise<Readable>;
  /** Resolves once the blob is committed, i.e. verified, in the content store. */
  done: Promise<unknown>;
}

export interface UnpackPlan {
  chainIds: Digest[];
  /** Layers [0, committedPrefix) are already committed snapshots. */
  committedPrefix: number;
}

export class Unpacker {
  /** One extraction per chain ID at a time in this process (images often share base layers). */
  private readonly extracting = new SingleFlight<void>();

  private recovered: Promise<void> | undefined;

  constructor(private readonly deps: UnpackerDeps) {}

  private get mountParent(): string {
    return join(this.deps.mountRoot, String(this.deps.pid));
  }

  /**
   * Unmounts and removes the mount points of processes that died while
   * unpacking (SIGKILL, power cut): their snapshots are redone, their
   * mounts would otherwise pin the snapshot directories forever.
   */
  private recoverMounts(): Promise<void> {
    return (this.recovered ??= (async () => {
      const owners = await readdir(this.deps.mountRoot).catch(() => [] as string[]);
      const stale = owners.filter((o) => /^\d+$/.test(o) && (Number(o) === this.deps.pid || !this.deps.isAlive(Number(o))));
      if (stale.length === 0) return;
      const mounted = await mountPoints();
      for (const owner of stale) {
        const dir = join(this.deps.mountRoot, owner);
        // Deepest first, so stacked mounts come off in order.
        for (const m of mounted.filter((p) => p.startsWith(dir + '/')).sort((a, b) => b.length - a.length)) {
          this.deps.logger.info('unmounting a mount left by a crashed unpack', { mount: m });
          await unmount(m).catch(() => unmount(m, { lazy: true }));
        }
        for (const d of await readdir(dir).catch(() => [] as string[])) await rmdir(join(dir, d)).catch(() => {});
        await rmdir(dir).catch(() => {});
      }
    })());
  }

  /** How much of the image's snapshot chain already exists. */
  async plan(config: ImageConfig): Promise<UnpackPlan> {
    const ids = chainIds(config.rootfs.diff_ids);
    let prefix = ids.length;
    // Walk from the top: the first committed chain ID implies all below it.
    while (prefix > 0 && !(await this.isCommitted(ids[prefix - 1]!))) prefix--;
    return { chainIds: ids, committedPrefix: prefix };
  }

  /**
   * Applies layers [plan.committedPrefix, n) in order, layer i from
   * `source(i)` — while it downloads, when the caller can stream it. Records
   * the top chain ID on the config (`configDigest`) as a snapshot reference
   * and returns it.
   */
  async unpack(
    name: string,
    layers: readonly Descriptor[],
    configDigest: Digest,
    config: ImageConfig,
    plan: UnpackPlan,
    source: (i: number) => LayerSource,
  ): Promise<Digest> {
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== layers.length) {
      throw new BerthError('INVALID_MANIFEST', `${name}: ${layers.length} layers but ${diffIds.length} diff_ids in the config`);
    }
    for (let i = plan.committedPrefix; i < layers.length; i++) {
      const chainId = plan.chainIds[i]!;
      await this.extracting.do(chainId, () => this.applyOne(name, layers[i]!, diffIds[i]!, chainId, i === 0 ? undefined : plan.chainIds[i - 1], source(i)));
    }
    const top = plan.chainIds[plan.chainIds.length - 1];
    if (!top) throw new BerthError('INVALID_MANIFEST', `${name}: image has no layers`);
    const labels = await this.deps.metadata.content.get(configDigest);
    await this.deps.metadata.content.set(configDigest, { ...labels, [RefLabel.snapshot(this.deps.snapshotterName)]: top });
    return top;
  }

  /** Unpacks an image whose blobs are all in the content store (after an import). */
  async unpackStored(name: string, manifest: ImageManifest, config: ImageConfig): Promise<Digest> {
    const { content } = this.deps;
    return this.unpack(name, manifest.layers, manifest.config.digest, config, await this.plan(config), (i) => ({
      open: () => content.reader(manifest.layers[i]!.digest),
      done: Promise.resolve(),
    }));
  }

  private async applyOne(name: string, layer: Descriptor, diffId: Digest, chainId: Digest, parent: Digest | undefined, source: LayerSource): Promise<void> {
    const { snapshotter, content, logger } = this.deps;
    source.done.catch(() => {}); // observed below; a download failure must not go unhandled meanwhile
    if (await this.isCommitted(chainId)) return; // another unpack committed it meanwhile
    await this.recoverMounts(); // before removeStale: a stale snapshot may still be mounted
    await this.removeStale(chainId);
    const compression = layerCompression(layer.mediaType);
    if (!compression) throw new BerthError('UNSUPPORTED', `${name}: layer ${layer.digest} has unknown media type ${layer.mediaType}`);
    const started = Date.now();
    const attempt = async (open: () => Promise<Readable>): Promise<void> => {
      const key = `${EXTRACT_PREFIX}${randomBytes(6).toString('hex')}-${chainId}`;
      const mounts = await snapshotter.prepare(key, parent, { labels: { [EXTRACT_PID]: String(this.deps.pid) } });
      try {
        const apply = async (dir: string) => applyLayerOnThread(dir, await open(), { compression, diffId, logger });
        // A layer without parent is a plain directory (a bind mount): applying
        // into it directly saves a mount and an unmount; layers on top need
        // the overlay's merged view for whiteouts and copy-up.
        const only = mounts.length === 1 ? mounts[0] : undefined;
        const res = only?.type === 'bind' && !only.options.includes('ro') ? await apply(only.source) : await withMounts(mounts, this.mountParent, apply);
        await source.done; // the blob verified: only now may its snapshot be committed
        await snapshotter.commit(chainId, key);
        logger.debug('layer applied', { ref: name, layer: layer.digest, chainId, entries: res.entries, bytes: res.size, ms: Date.now() - started });
      } catch (err) {
        await snapshotter.remove(key).catch((e) => logger.warn('could not remove a failed extraction snapshot', { key, error: String(e) }));
        throw err;
      }
    };
    try {
      await attempt(() => source.open());
    } catch (err) {
      if (isBerthError(err) && err.code === 'ALREADY_EXISTS' && (await this.isCommitted(chainId))) return; // lost a race to commit
      // A download failure is the real error, whatever the apply made of its bytes.
      await source.done;
      // The blob is verified now, so the streamed bytes were not what it holds
      // (the download restarted underneath): apply the verified blob once more.
      if (!isBerthError(err) || err.code === 'CANCELLED') throw err;
      logger.warn('applying a layer while it downloaded failed; applying the verified blob', { ref: name, layer: layer.digest, error: err.message });
      await attempt(() => content.reader(layer.digest));
    }
  }

  private async isCommitted(chainId: Digest): Promise<boolean> {
    try {
      return (await this.deps.snapshotter.stat(chainId)).kind === 'committed';
    } catch (err) {
      if (isBerthError(err, 'NOT_FOUND')) return false;
      throw err;
    }
  }

  /**
   * Removes extraction snapshots of chainId whose process is gone (a crash
   * mid-apply). One carrying our own pid is stale too: in this process
   * `extracting` admits one extraction per chain ID, so it is a leftover of
   * an earlier process that had the same pid.
   */
  private async removeStale(chainId: Digest): Promise<void> {
    for (const info of await this.deps.snapshotter.list()) {
      if (info.kind !== 'active' || !info.key.startsWith(EXTRACT_PREFIX) || !info.key.endsWith(chainId)) continue;
      const pid = Number(info.labels[EXTRACT_PID]);
      if (Number.isInteger(pid) && pid !== this.deps.pid && this.deps.isAlive(pid)) continue;
      this.deps.logger.info('removing a half-applied snapshot left by a crash', { key: info.key });
      await this.deps.snapshotter.remove(info.key);
    }
  }
}
