import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalContentStore } from './content/index.js';
import type { ContentStore } from './content/store.js';
import { LocalEventBus, type EventBus } from './events.js';
import { ImageInventory } from './images/inventory.js';
import type { ImagePuller, Unpacker } from './images/index.js';
import type { Logger } from './log.js';
import { BerthError } from './errors.js';
import type { ContainerService, ImageSource } from './containers/index.js';
import { LmdbMetadataStore, recordEvents } from './metadata/index.js';
import type { ContainerRuntime } from './runtime/runtime.js';
import type { LeaseHolder, MetadataStore } from './metadata/store.js';
import type { Platform } from './oci/platform.js';
import type { RegistryResolver } from './remotes/index.js';
import type { Snapshotter } from './snapshots/snapshotter.js';

/**
 * Composition root: the only place that constructs concrete implementations
 * and wires them together. Everything the process environment provides (pid,
 * liveness checks, host platform, paths from env vars) is passed in by the
 * shell, so no library module reads `process`.
 */

export interface SystemOptions {
  /** Persistent state: meta/, content/, later snapshots/ and bundles/. */
  root: string;
  /** Runtime state: locks, sockets, runc root. */
  state: string;
  logger: Logger;
  events?: EventBus;
  /** k3s-style registries.yaml; absent = defaults (plain HTTP only for loopback). */
  registryConfig?: string | undefined;
  /** PEM file trusted next to the system roots for registries without a ca_file of their own. */
  extraCAFile?: string | undefined;
  /** Directory holding Docker's config.json. */
  dockerConfig?: string | undefined;
  hostPlatform: Platform;
  pid: number;
  isAlive: (pid: number) => boolean;
  /** Directories searched first for runc and conmon (the shell passes PATH). */
  searchPath?: readonly string[];
  /** Names this process in lock holders and messages, e.g. "berth daemon". */
  actor?: string;
  /** How to run berth itself (node and its script): for the monitors of `run -d --rm` containers, which run `berth cleanup` at their exit. */
  self?: readonly string[];
}

export interface System {
  readonly root: string;
  readonly logger: Logger;
  readonly events: EventBus;
  readonly content: ContentStore;
  readonly metadata: MetadataStore;
  /** The registry client and the puller load on first use: undici alone costs ~140 ms of start-up. */
  resolver(): Promise<RegistryResolver>;
  puller(): Promise<ImagePuller>;
  /** The snapshotter chosen for this root (overlay where the filesystem supports it, else copies). */
  snapshotter(): Promise<{ name: string; snapshotter: Snapshotter }>;
  unpacker(): Promise<Unpacker>;
  readonly images: ImageInventory;
  /** The container runtime (runc under conmon), loaded on first use. */
  runtime(): Promise<ContainerRuntime>;
  containers(): Promise<ContainerService>;
  /** The image a container runs, resolved to a stored, unpacked image. */
  readonly imageSource: ImageSource;
  /** Calls fn whenever a batch of events was stored in the event log; returns a function that stops. */
  onEventsStored(fn: () => void): () => void;
  /** Resolves when every event published so far is in the event log (they are stored in batches). */
  flushEvents(): Promise<void>;
  /** This process as the holder of the leases it takes. */
  readonly leaseHolder: LeaseHolder;
  /** Whether a lease's holder still runs: same boot and a live pid (a pid reused since counts as running). */
  holderRunning(h: LeaseHolder): boolean;
  close(): Promise<void>;
}

/** Creates a directory owner-only: state directories must not be world-readable. */
async function privateDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  await chmod(path, 0o700);
}

/**
 * Opens the snapshotter of a root. The driver is chosen once, by a real
 * overlay mount probe, and recorded in `driver`: snapshots made by one
 * driver are unusable by the other, so a root never switches.
 */
async function openSnapshotter(dir: string, logger: Logger): Promise<{ name: string; snapshotter: Snapshotter }> {
  const [snap, mount] = await Promise.all([import('./snapshots/index.js'), import('./mount/index.js')]);
  await privateDir(dir);
  const driverFile = join(dir, 'driver');
  let name = (await readFile(driverFile, 'utf8').catch(() => '')).trim();
  if (name !== 'overlayfs' && name !== 'native') {
    name = (await mount.overlaySupported(dir, { logger })) ? 'overlayfs' : 'native';
    await writeFile(driverFile, name + '\n', { mode: 0o600 });
    logger.info('snapshotter chosen', { driver: name });
  }
  const snapshotter = name === 'overlayfs' ? await snap.OverlaySnapshotter.open({ root: dir, logger }) : await snap.NativeSnapshotter.open({ root: dir, logger });
  return { name, snapshotter };
}

export async function openSystem(opts: SystemOptions): Promise<System> {
  await privateDir(opts.root);
  const logger = opts.logger;
  const events = opts.events ?? new LocalEventBus();
  const content = new LocalContentStore({ root: join(opts.root, 'content'), logger: logger.child({ module: 'content' }), pid: opts.pid, isAlive: opts.isAlive });
  const metadata = await LmdbMetadataStore.open({ path: join(opts.root, 'meta'), logger: logger.child({ module: 'metadata' }) });
  // Lease holders record the kernel's boot id; an unreadable one ('') compares pids alone.
  const boot = await readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((t) => t.trim().slice(0, 64), () => '');
  const leaseHolder: LeaseHolder = { pid: opts.pid, boot };
  const holderRunning = (h: LeaseHolder): boolean => (h.boot === boot || !h.boot || !boot) && (h.pid === opts.pid || opts.isAlive(h.pid));
  let resolver: Promise<RegistryResolver> | undefined;
  let puller: Promise<ImagePuller> | undefined;
  const getResolver = (): Promise<RegistryResolver> =>
    (resolver ??= (async () => {
      const remotes = await import('./remotes/index.js');
      return new remotes.RegistryResolver({
        hosts: await remotes.loadRegistryHosts(opts.registryConfig, { extraCAFile: opts.extraCAFile }),
        credentials: opts.dockerConfig ? new remotes.DockerConfigCredentials(opts.dockerConfig, { logger }) : remotes.noCredentials,
        logger: logger.child({ module: 'remotes' }),
        events,
      });
    })());
  let snapshots: Promise<{ name: string; snapshotter: Snapshotter }> | undefined;
  const getSnapshotter = (): Promise<{ name: string; snapshotter: Snapshotter }> =>
    (snapshots ??= openSnapshotter(join(opts.root, 'snapshots'), logger.child({ module: 'snapshots' })));
  let unpacker: Promise<Unpacker> | undefined;
  const getUnpacker = (): Promise<Unpacker> =>
    (unpacker ??= Promise.all([getSnapshotter(), import('./images/unpack.js')]).then(
      ([sn, { Unpacker }]) =>
        new Unpacker({
          content,
          metadata,
          snapshotter: sn.snapshotter,
          snapshotterName: sn.name,
          events,
          logger: logger.child({ module: 'unpack' }),
          mountRoot: join(opts.state, 'mounts'),
          pid: opts.pid,
          isAlive: opts.isAlive,
        }),
    ));
  const getPuller = (): Promise<ImagePuller> =>
    (puller ??= Promise.all([getResolver(), import('./images/pull.js')]).then(
      ([r, { ImagePuller }]) =>
        new ImagePuller({
          content,
          metadata,
          resolver: r,
          events,
          logger: logger.child({ module: 'images' }),
          hostPlatform: opts.hostPlatform,
          unpacker: getUnpacker,
          leaseHolder,
        }),
    ));
  const images = new ImageInventory({ content, metadata, events });
  const imageSource: ImageSource = {
    async resolve(ref) {
      const detail = await images.stored(ref);
      const { manifest, config, manifestDescriptor } = detail;
      if (!manifest || !config || !manifestDescriptor) {
        throw new BerthError('NOT_FOUND', `image ${detail.record.name}: its manifest or config is not in the content store`, { hint: `pull it again: berth image pull ${detail.record.name}` });
      }
      const chainId = await (await getUnpacker()).unpackStored(detail.record.name, manifest, config);
      return { name: detail.record.name, digest: manifestDescriptor.digest, config, chainId };
    },
  };
  let runtime: Promise<ContainerRuntime> | undefined;
  const getRuntime = (): Promise<ContainerRuntime> =>
    (runtime ??= import('./runtime/runc.js').then((r) => new r.RuncRuntime({ stateDir: opts.state, logger: logger.child({ module: 'runtime' }), ...(opts.searchPath ? { searchPath: opts.searchPath } : {}) })));
  let containers: Promise<ContainerService> | undefined;
  const getContainers = (): Promise<ContainerService> =>
    (containers ??= (async () => {
      await privateDir(opts.state);
      const { ContainerService } = await import('./containers/index.js');
      return new ContainerService({
        metadata,
        images: imageSource,
        snapshotter: async () => (await getSnapshotter()).snapshotter,
        runtime: await getRuntime(),
        events,
        logger: logger.child({ module: 'containers' }),
        root: opts.root,
        state: opts.state,
        pid: opts.pid,
        actor: opts.actor ?? 'berth',
        ...(opts.self?.length ? { cleanupCommand: (name: string) => [...opts.self!, '--root', opts.root, '--state', opts.state, 'cleanup', name] } : {}),
      });
    })());
  const recorder = recordEvents(events, metadata.events, logger);
  return {
    root: opts.root,
    logger,
    events,
    content,
    metadata,
    resolver: getResolver,
    puller: getPuller,
    snapshotter: getSnapshotter,
    unpacker: getUnpacker,
    images,
    imageSource,
    runtime: getRuntime,
    containers: getContainers,
    onEventsStored: (fn) => recorder.onStored(fn),
    flushEvents: () => recorder.flush(),
    leaseHolder,
    holderRunning,
    async close() {
      await recorder.stop();
      if (resolver) await (await resolver).close();
      if (snapshots) await (await snapshots).snapshotter.close();
      await metadata.close();
    },
  };
}
