import { BerthError } from '../errors.js';
import { formatPlatform, parseBytes, parseDuration, parsePlatform, parseReference, type Reference } from '../oci/index.js';
import { joinPointer } from './position.js';
import type { Kind, Problem } from './schema.js';

/**
 * Desired state: manifest objects as the schemas accept them, normalised
 * (sizes in bytes, durations in milliseconds, modes as numbers, platforms
 * normalised) and with berth's defaults filled in, so the reconciler never
 * reads a manifest or guesses a default.
 *
 * Defaults:
 * - pullPolicy: Always when the reference has the tag `latest` or no tag and
 *   no digest, IfNotPresent otherwise (Kubernetes' rule: a moving tag is
 *   looked up again, a pinned one is not).
 * - restart: always (a declared service keeps running, as in Kubernetes; jobs say never or on-failure), backoff 1s doubling up to 60s (containers/restart.ts).
 * - stopTimeout 10s (Docker's); state running.
 * - `config` holds what the manifest says and nothing else: its unset fields
 *   take the image's values or the runtime's defaults when the bundle is made
 *   (network none, a writable root, the image's user and working directory).
 */

export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

// The container settings, field for field runtime/'s ContainerConfig (same
// layer, so it is declared again here; a type-level test keeps them equal).
export interface BindMountSettings { type: 'bind'; source: string; target: string; readonly?: boolean; options?: string[] }
export interface TmpfsMountSettings { type: 'tmpfs'; target: string; /** bytes */ size?: number; mode?: number; options?: string[] }
export type MountSettings = BindMountSettings | TmpfsMountSettings;
export interface ResourceSettings { /** bytes */ memory?: number; cpus?: number; pids?: number }
/** Not settable from manifests yet (a device needs a stat for its numbers); here so the settings stay ContainerConfig. */
export interface DeviceSettings { path: string; type: 'c' | 'b'; major: number; minor: number; fileMode?: number; uid?: number; gid?: number; permissions?: string }

export interface ContainerSettings {
  command?: string[];
  args?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  user?: string;
  hostname?: string;
  network?: 'host' | 'none';
  readonlyRootfs?: boolean;
  mounts?: MountSettings[];
  resources?: ResourceSettings;
  capabilities?: { add?: string[]; drop?: string[] };
  devices?: DeviceSettings[];
  stopSignal?: string;
}

export type PullPolicy = 'Always' | 'IfNotPresent' | 'Never';

export interface DesiredRestart {
  policy: 'never' | 'on-failure' | 'always';
  /** on-failure only. */
  maxRetries?: number;
  initialMs: number;
  maxMs: number;
}

export interface DesiredContainer {
  kind: 'Container';
  name: string;
  labels: Record<string, string>;
  /** The reference as written; the reconciler resolves it to a digest. */
  image: string;
  pullPolicy: PullPolicy;
  config: ContainerSettings;
  restart: DesiredRestart;
  stopTimeoutMs: number;
  dependsOn: string[];
  state: 'running' | 'stopped';
  source: SourcePosition;
}

export interface DesiredImage {
  kind: 'Image';
  name: string;
  labels: Record<string, string>;
  ref: string;
  /** Normalised os/arch[/variant]; absent means the host's. */
  platform?: string;
  source: SourcePosition;
}

export type DesiredObject = DesiredContainer | DesiredImage;

export interface DesiredState {
  containers: DesiredContainer[];
  images: DesiredImage[];
}

export const DEFAULT_RESTART: Readonly<DesiredRestart> = { policy: 'always', initialMs: 1000, maxMs: 60_000 };
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** The manifest shapes the schemas accept (schemas/*.schema.json are the truth). */
interface Metadata { name: string; labels?: Record<string, string> }
type Quantity = string | number;
type Duration = string | number;
interface ContainerManifest {
  kind: 'Container';
  metadata: Metadata;
  spec: {
    image: string;
    pullPolicy?: PullPolicy;
    command?: string[];
    args?: string[];
    env?: Record<string, string>;
    workingDir?: string;
    user?: string;
    hostname?: string;
    network?: 'host' | 'none';
    readonlyRootfs?: boolean;
    mounts?: Array<
      | { type: 'bind'; source: string; target: string; readonly?: boolean; options?: string[] }
      | { type: 'tmpfs'; target: string; size?: Quantity; mode?: string; options?: string[] }
    >;
    resources?: { memory?: Quantity; cpus?: number; pids?: number };
    capabilities?: { add?: string[]; drop?: string[] };
    stopSignal?: string;
    stopTimeout?: Duration;
    restart?: { policy?: DesiredRestart['policy']; maxRetries?: number; backoff?: { initial?: Duration; max?: Duration } };
    dependsOn?: string[];
    state?: 'running' | 'stopped';
  };
}
interface ImageManifest {
  kind: 'Image';
  metadata: Metadata;
  spec: { ref: string; platform?: string };
}

/**
 * Normalises one object that passed its kind's schema. `base` is the
 * object's pointer within its document ("" or "/3" in a list). Values the
 * schema cannot judge (a reference, a size, a backoff longer than its
 * maximum) come back as problems, and then no object.
 */
export function desiredObject(kind: Kind, value: unknown, source: SourcePosition, base = ''): { object?: DesiredObject; problems: Problem[] } {
  const problems: Problem[] = [];
  const v: Values = {
    problem: (pointer, message, hint) => problems.push({ pointer: base + pointer, anchor: 'value', message, hint }),
    check(pointer, f) {
      try {
        return f();
      } catch (err) {
        if (!(err instanceof BerthError)) throw err;
        this.problem(pointer, err.message, err.hint ?? '');
        return undefined;
      }
    },
  };
  const object = kind === 'Container' ? container(value as ContainerManifest, source, v) : image(value as ImageManifest, source, v);
  return problems.length ? { problems } : { object, problems };
}

/** Collects problems with values: `check` runs a parser and turns its BerthError into a problem at `pointer`. */
interface Values {
  problem(pointer: string, message: string, hint: string): void;
  check<T>(pointer: string, f: () => T): T | undefined;
}

function container(m: ContainerManifest, source: SourcePosition, v: Values): DesiredContainer {
  const s = m.spec;
  const ref = v.check('/spec/image', () => parseReference(s.image));
  const config: ContainerSettings = {};
  for (const key of ['command', 'args', 'env', 'workingDir', 'user', 'hostname', 'network', 'readonlyRootfs', 'capabilities', 'stopSignal'] as const) {
    if (s[key] !== undefined) (config as Record<string, unknown>)[key] = s[key];
  }
  if (s.mounts) {
    config.mounts = s.mounts.map((mount, i): MountSettings => {
      if (mount.type === 'bind') return { ...mount };
      const { size, mode, ...rest } = mount;
      const t: TmpfsMountSettings = { ...rest };
      if (size !== undefined) t.size = v.check(joinPointer('/spec/mounts', i, 'size'), () => bytes(size));
      if (mode !== undefined) t.mode = parseInt(mode, 8);
      return t;
    });
  }
  if (s.resources) {
    const { memory, ...rest } = s.resources;
    config.resources = { ...rest };
    if (memory !== undefined) config.resources.memory = v.check('/spec/resources/memory', () => bytes(memory));
  }

  const r = s.restart ?? {};
  const restart: DesiredRestart = { ...DEFAULT_RESTART, policy: r.policy ?? DEFAULT_RESTART.policy };
  if (r.maxRetries !== undefined) {
    restart.maxRetries = r.maxRetries;
    if (restart.policy !== 'on-failure') {
      v.problem('/spec/restart/maxRetries', `maxRetries applies only to the policy on-failure, not ${restart.policy}`, 'set policy: on-failure, or remove maxRetries');
    }
  }
  const { initial, max } = r.backoff ?? {};
  if (initial !== undefined) restart.initialMs = v.check('/spec/restart/backoff/initial', () => duration(initial)) ?? restart.initialMs;
  if (max !== undefined) restart.maxMs = v.check('/spec/restart/backoff/max', () => duration(max)) ?? restart.maxMs;
  if (restart.initialMs === 0) {
    v.problem('/spec/restart/backoff/initial', 'the initial backoff must be longer than 0', 'a container that keeps crashing would restart in a tight loop; give at least 100ms');
  } else if (restart.initialMs > restart.maxMs) {
    v.problem(
      initial !== undefined ? '/spec/restart/backoff/initial' : '/spec/restart/backoff/max',
      `backoff.initial ${JSON.stringify(initial ?? '1s')} is longer than backoff.max ${JSON.stringify(max ?? '60s')}`,
      'make backoff.initial at most backoff.max',
    );
  }

  return {
    kind: 'Container',
    name: m.metadata.name,
    labels: { ...m.metadata.labels },
    image: s.image,
    pullPolicy: s.pullPolicy ?? (ref ? defaultPullPolicy(ref) : 'IfNotPresent'),
    config,
    restart,
    stopTimeoutMs: (s.stopTimeout === undefined ? undefined : v.check('/spec/stopTimeout', () => duration(s.stopTimeout!))) ?? DEFAULT_STOP_TIMEOUT_MS,
    dependsOn: [...(s.dependsOn ?? [])],
    state: s.state ?? 'running',
    source,
  };
}

function image(m: ImageManifest, source: SourcePosition, v: Values): DesiredImage {
  v.check('/spec/ref', () => parseReference(m.spec.ref));
  const d: DesiredImage = { kind: 'Image', name: m.metadata.name, labels: { ...m.metadata.labels }, ref: m.spec.ref, source };
  if (m.spec.platform !== undefined) {
    const p = v.check('/spec/platform', () => formatPlatform(parsePlatform(m.spec.platform!)));
    if (p !== undefined) d.platform = p;
  }
  return d;
}

export function defaultPullPolicy(ref: Reference): PullPolicy {
  return ref.digest === undefined && (ref.tag === undefined || ref.tag === 'latest') ? 'Always' : 'IfNotPresent';
}

/** Splits objects by kind, keeping their order. */
export function desiredState(objects: readonly DesiredObject[]): DesiredState {
  return {
    containers: objects.filter((o): o is DesiredContainer => o.kind === 'Container'),
    images: objects.filter((o): o is DesiredImage => o.kind === 'Image'),
  };
}

/** An integer is bytes; a string is parsed by parseBytes. */
function bytes(q: Quantity): number {
  return typeof q === 'number' ? q : parseBytes(q);
}

/** An integer is seconds; a string is parsed by parseDuration. */
function duration(d: Duration): number {
  return parseDuration(String(d));
}
