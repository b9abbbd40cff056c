import { posix } from 'node:path';
import { BerthError, isBerthError } from '../errors.js';
import type { ImageConfig } from '../oci/descriptor.js';
import { parseSignal, SIGTERM } from './signals.js';

/**
 * OCI runtime spec generation, pure: image config + container config in,
 * config.json out, with the defaults users of containerd and Docker expect.
 * Reading /etc/passwd and /etc/group, and stat'ing devices, is the caller's
 * job; their results come in as arguments. Every problem with the input is a
 * BerthError INVALID_ARGUMENT naming the container and the field.
 *
 * Defaults, and whose they are:
 * - namespaces pid, ipc, uts, mount, network (containerd's and Docker's).
 *   `network: host` shares the host's network namespace and nothing else: no
 *   /etc/resolv.conf or /etc/hosts is bound in, the image's own files are
 *   used. `network: none` is the default: a new network namespace with only
 *   loopback.
 * - mounts /proc, /dev (tmpfs), /dev/pts, /dev/shm (64 MiB), /dev/mqueue, /sys
 *   read-only and /sys/fs/cgroup read-only (Docker's set). The cgroup mount is
 *   written as type "cgroup"; runc mounts the v1 hierarchies or, on a cgroup v2
 *   host, cgroup2, from the same entry. No cgroup namespace is created
 *   (containerd's default), so on v2 the container sees the whole hierarchy,
 *   read-only, and on v1 the bind mounts of its own cgroups.
 * - capabilities: Docker's and containerd's 14 in the bounding, effective and
 *   permitted sets; no inheritable or ambient set (containerd since
 *   CVE-2022-24769). The same sets for every user: for a non-root user the
 *   kernel empties effective and permitted at execve, as under Docker.
 * - masked and read-only paths: containerd's and Docker's lists, with
 *   /proc/interrupts masked as Docker 28 and Kubernetes 1.34 do.
 * - noNewPrivileges true; RLIMIT_NOFILE 1024:1024 (containerd's; Docker sets
 *   none and passes on dockerd's own, which varies with the host).
 * - devices cgroup: deny all, then allow null, zero, full, random, urandom, tty,
 *   console, /dev/pts/* and ptmx (containerd's list) and the configured devices.
 * - no seccomp profile, AppArmor or SELinux label.
 */

/** A mount in config.json (the runtime spec names the target `destination`). */
export interface SpecMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** A devices cgroup rule; no major or minor means any. */
export interface SpecDeviceRule {
  allow: boolean;
  type?: 'a' | 'c' | 'b';
  major?: number;
  minor?: number;
  access: string;
}

/** A device node the runtime creates in the container's /dev. */
export interface SpecDevice {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

export interface SpecResources {
  devices: SpecDeviceRule[];
  memory?: { limit: number };
  cpu?: { quota: number; period: number };
  pids?: { limit: number };
}

export interface RuntimeSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number; additionalGids?: number[] };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable?: string[]; ambient?: string[] };
    rlimits: Array<{ type: string; hard: number; soft: number }>;
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: SpecMount[];
  linux: {
    namespaces: Array<{ type: string; path?: string }>;
    maskedPaths: string[];
    readonlyPaths: string[];
    resources: SpecResources;
    devices: SpecDevice[];
    cgroupsPath?: string;
  };
}

export interface BindMount { type: 'bind'; source: string; target: string; readonly?: boolean; /** e.g. 'rprivate', 'nosuid' */ options?: string[] }
export interface TmpfsMount { type: 'tmpfs'; target: string; /** bytes */ size?: number; mode?: number; options?: string[] }
export type ContainerMount = BindMount | TmpfsMount;
export interface ContainerResources { /** bytes */ memory?: number; /** e.g. 0.5 */ cpus?: number; pids?: number }
export interface DeviceSpec { path: string; type: 'c' | 'b'; major: number; minor: number; fileMode?: number; uid?: number; gid?: number; /** 'rwm' */ permissions?: string }

/** The container's own settings, from the CLI or a manifest. All optional. */
export interface ContainerConfig {
  command?: string[];
  args?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  user?: string;
  hostname?: string;
  network?: 'host' | 'none';
  readonlyRootfs?: boolean;
  mounts?: ContainerMount[];
  resources?: ContainerResources;
  /** 'NET_ADMIN' or 'CAP_NET_ADMIN', any case; 'ALL' allowed. */
  capabilities?: { add?: string[]; drop?: string[] };
  /** Already stat'ed by the caller (major/minor known). */
  devices?: DeviceSpec[];
  /** 'SIGTERM', 'TERM', '15' */
  stopSignal?: string;
}

export interface UserFiles {
  passwd?: string;
  group?: string;
}

export interface SpecContext {
  files?: UserFiles;
  cgroupsPath?: string;
  /** The container's name, for error messages, and its hostname unless one is configured. */
  name?: string;
}

/** Docker's and containerd's default capability set. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

/** Every capability of Linux 5.9 and later, in kernel order (capabilities(7)); what 'ALL' means. */
export const ALL_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

export const MASKED_PATHS: readonly string[] = [
  '/proc/acpi', '/proc/asound', '/proc/interrupts', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
export const READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Docker's minimum memory limit: below it a container cannot even start. */
export const MIN_MEMORY = 6 * 1024 * 1024;
/** The CFS period; a quota is cpus times this. */
export const CPU_PERIOD = 100_000;
/** The kernel refuses a CFS quota below 1 ms, so cpus below 0.01. */
const MIN_CPUS = 0.01;

const mount = (destination: string, type: string, source: string, options: string[]): SpecMount => ({ destination, type, source, options });

const DEFAULT_MOUNTS: readonly SpecMount[] = [
  mount('/proc', 'proc', 'proc', ['nosuid', 'noexec', 'nodev']),
  mount('/dev', 'tmpfs', 'tmpfs', ['nosuid', 'strictatime', 'mode=755', 'size=65536k']),
  mount('/dev/pts', 'devpts', 'devpts', ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']),
  mount('/dev/shm', 'tmpfs', 'shm', ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']),
  mount('/dev/mqueue', 'mqueue', 'mqueue', ['nosuid', 'noexec', 'nodev']),
  mount('/sys', 'sysfs', 'sysfs', ['nosuid', 'noexec', 'nodev', 'ro']),
  mount('/sys/fs/cgroup', 'cgroup', 'cgroup', ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']),
];

const charDevice = (major: number, minor?: number): SpecDeviceRule => ({ allow: true, type: 'c', major, ...(minor === undefined ? {} : { minor }), access: 'rwm' });

/** containerd's WithDefaultUnixDevices, after a deny-all rule. */
export const DEFAULT_DEVICE_RULES: readonly SpecDeviceRule[] = [
  { allow: false, access: 'rwm' },
  charDevice(1, 3), // /dev/null
  charDevice(1, 5), // /dev/zero
  charDevice(1, 7), // /dev/full
  charDevice(1, 8), // /dev/random
  charDevice(1, 9), // /dev/urandom
  charDevice(5, 0), // /dev/tty
  charDevice(5, 1), // /dev/console
  charDevice(136), // /dev/pts/*
  charDevice(5, 2), // /dev/ptmx
];

const PROPAGATION = new Set(['private', 'rprivate', 'shared', 'rshared', 'slave', 'rslave', 'unbindable', 'runbindable']);
const MOUNT_FLAGS = new Set([
  'ro', 'rw', 'nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec', 'sync', 'async', 'dirsync',
  'atime', 'noatime', 'diratime', 'nodiratime', 'relatime', 'norelatime', 'strictatime', 'nostrictatime', ...PROPAGATION,
]);
const TMPFS_DATA = /^(size|mode|uid|gid|nr_inodes|nr_blocks)=[^,=]+$/;

/** A problem with the container's configuration, named by container and field. */
function invalid(ctx: SpecContext, text: string, hint?: string): BerthError {
  const where = ctx.name === undefined ? '' : `container ${JSON.stringify(ctx.name)}: `;
  return new BerthError('INVALID_ARGUMENT', where + text, hint === undefined ? {} : { hint });
}

/** Runs a field-free parser (parseSignal), putting container and field into its message. */
function inField<T>(ctx: SpecContext, field: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (isBerthError(err, 'INVALID_ARGUMENT')) throw invalid(ctx, `${field}: ${err.message}`, err.hint);
    throw err;
  }
}

const q = (s: string): string => JSON.stringify(s);

/** Absolute, clean (no ".", "..", "//" or trailing "/"), and not "/" itself. */
function checkPath(ctx: SpecContext, field: string, p: string): void {
  if (!p.startsWith('/')) throw invalid(ctx, `${field} ${q(p)} must be an absolute path`);
  const clean = posix.normalize(p).replace(/(.)\/$/, '$1');
  if (clean !== p || p.includes('\0')) throw invalid(ctx, `${field} ${q(p)} must be a clean path`, `write it as ${q(clean)}`);
  if (p === '/') throw invalid(ctx, `${field} "/" cannot be the container's root`);
}

function checkCount(ctx: SpecContext, field: string, n: number, max: number): void {
  if (!Number.isSafeInteger(n) || n < 0 || n > max) throw invalid(ctx, `${field} ${n} must be a whole number from 0 to ${max}`);
}

/** Docker's rules: command replaces Entrypoint (and drops Cmd); args replace Cmd. */
export function processArgs(image: ImageConfig['config'], c: ContainerConfig = {}, ctx: SpecContext = {}): string[] {
  const entrypoint = c.command ?? image?.Entrypoint ?? [];
  const cmd = c.args ?? (c.command ? [] : (image?.Cmd ?? []));
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) throw invalid(ctx, 'command: the image defines no Entrypoint or Cmd and no command was given', 'set command in the container spec');
  if (args[0] === '') throw invalid(ctx, 'command: the program to run is an empty string', 'set command to the program and its arguments');
  return args;
}

/** Image Env, then the container's; a later key replaces an earlier one in place; PATH defaulted. */
export function mergeEnv(imageEnv: readonly string[] | undefined, overrides: Record<string, string> = {}, ctx: SpecContext = {}): string[] {
  const env = new Map<string, string>();
  for (const kv of imageEnv ?? []) {
    const i = kv.indexOf('=');
    env.set(i === -1 ? kv : kv.slice(0, i), kv);
  }
  for (const [k, v] of Object.entries(overrides)) {
    if (k === '' || k.includes('=') || k.includes('\0')) throw invalid(ctx, `env key ${q(k)} must be non-empty and contain no "="`);
    env.set(k, `${k}=${v}`);
  }
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  return [...env.values()];
}

function parseColonFile(text: string | undefined): string[][] {
  return (text ?? '')
    .split('\n')
    .map((l) => l.replace(/\r$/, ''))
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => l.split(':'));
}

const isId = (s: string | undefined): s is string => s !== undefined && /^\d{1,10}$/.test(s) && Number(s) <= MAX_ID;
/** 2^32 - 1 is (uid_t)-1, "no id". */
const MAX_ID = 2 ** 32 - 2;

export interface ResolvedUser { uid: number; gid: number; additionalGids: number[] }

/**
 * Resolves "name", "uid", "uid:gid", "name:group", "uid:group", "name:gid"
 * against passwd and group text (Docker's and runc's rules): a numeric uid
 * needs no passwd entry (gid 0 then); a name must exist. Supplementary groups
 * are the groups listing the user by name, less its primary group. `field`
 * names where the user string came from, for messages.
 */
export function resolveUser(user: string | undefined, files: UserFiles = {}, ctx: SpecContext = {}, field = 'user'): ResolvedUser {
  const text = user?.trim() || '0';
  const parts = text.split(':');
  const [u, g] = parts as [string, string | undefined];
  if (parts.length > 2 || u === '' || g === '') {
    throw invalid(ctx, `${field} ${q(text)} is not of the form user, uid, user:group or uid:gid`);
  }
  // Malformed lines are skipped, as runc's parser does.
  const passwd = parseColonFile(files.passwd).filter((p) => isId(p[2]) && isId(p[3]));
  const groups = parseColonFile(files.group).filter((e) => isId(e[2]));
  let name: string | undefined;
  let uid: number;
  let gid: number;
  if (/^\d+$/.test(u)) {
    if (!isId(u)) throw invalid(ctx, `${field} ${q(text)}: uid ${u} is out of range`, `a uid is at most ${MAX_ID}`);
    uid = Number(u);
    const entry = passwd.find((p) => Number(p[2]) === uid);
    name = entry?.[0];
    gid = entry ? Number(entry[3]) : 0;
  } else {
    const entry = passwd.find((p) => p[0] === u);
    if (!entry) throw invalid(ctx, `${field} ${q(u)} is not in the image's /etc/passwd`, 'use a numeric uid or a user the image defines');
    name = u;
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) {
      if (!isId(g)) throw invalid(ctx, `${field} ${q(text)}: gid ${g} is out of range`, `a gid is at most ${MAX_ID}`);
      gid = Number(g);
    } else {
      const entry = groups.find((e) => e[0] === g);
      if (!entry) throw invalid(ctx, `${field} ${q(text)}: group ${q(g)} is not in the image's /etc/group`, 'use a numeric gid or a group the image defines');
      gid = Number(entry[2]);
    }
  }
  const member = (e: string[]): boolean => name !== undefined && (e[3] ?? '').split(',').includes(name);
  const additionalGids = [...new Set(groups.filter(member).map((e) => Number(e[2])))].filter((x) => x !== gid);
  return { uid, gid, additionalGids };
}

/**
 * Docker's TweakCapabilities: with 'ALL' added, every capability but the
 * dropped ones; with 'ALL' dropped, only the added ones; otherwise the
 * defaults less the dropped, plus the added (a capability both added and
 * dropped is kept). Names take or omit CAP_, in any case.
 */
export function resolveCapabilities(caps: ContainerConfig['capabilities'] = {}, ctx: SpecContext = {}): string[] {
  const normalise = (list: readonly string[], field: string): string[] =>
    list.map((c, i) => {
      const upper = c.trim().toUpperCase();
      if (upper === 'ALL') return upper;
      const name = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
      if (!ALL_CAPABILITIES.includes(name)) {
        throw invalid(ctx, `capabilities.${field}[${i}] ${q(c)} is not a Linux capability`, 'use a name from capabilities(7) such as NET_ADMIN or CAP_NET_ADMIN, or ALL');
      }
      return name;
    });
  const add = normalise(caps.add ?? [], 'add');
  const drop = normalise(caps.drop ?? [], 'drop');
  let result: string[];
  if (add.includes('ALL')) result = ALL_CAPABILITIES.filter((c) => !drop.includes(c));
  else if (drop.includes('ALL')) result = add;
  else result = [...DEFAULT_CAPABILITIES.filter((c) => !drop.includes(c)), ...add];
  return [...new Set(result)];
}

function checkOptions(ctx: SpecContext, field: string, options: readonly string[], extra: (o: string) => boolean): void {
  for (const [i, o] of options.entries()) {
    if (!MOUNT_FLAGS.has(o) && !extra(o)) throw invalid(ctx, `${field}[${i}] ${q(o)} is not a mount option berth knows`, `known options: ${[...MOUNT_FLAGS].join(', ')}`);
  }
}

function specMount(m: ContainerMount, i: number, ctx: SpecContext): SpecMount {
  const field = `mounts[${i}]`;
  const options = m.options ?? [];
  if (m.type === 'bind') {
    if (!m.source.startsWith('/')) throw invalid(ctx, `${field}.source ${q(m.source)} must be an absolute path`);
    checkOptions(ctx, `${field}.options`, options, (o) => o === 'bind' || o === 'rbind');
    if (m.readonly && options.includes('rw')) throw invalid(ctx, `${field} is readonly but its options say "rw"`);
    const recursion = options.includes('bind') ? 'bind' : 'rbind';
    const rest = options.filter((o) => o !== 'bind' && o !== 'rbind' && !(m.readonly && o === 'ro'));
    const propagation = options.some((o) => PROPAGATION.has(o)) ? [] : ['rprivate'];
    return mount(m.target, 'bind', m.source, [recursion, ...(m.readonly ? ['ro'] : []), ...rest, ...propagation]);
  }
  if (m.type === 'tmpfs') {
    checkOptions(ctx, `${field}.options`, options, (o) => TMPFS_DATA.test(o));
    const sized: string[] = [];
    if (m.size !== undefined) {
      if (!Number.isSafeInteger(m.size) || m.size <= 0) throw invalid(ctx, `${field}.size ${m.size} must be a whole number of bytes above 0`);
      sized.push(`size=${m.size}`);
    }
    if (m.mode !== undefined) {
      if (!Number.isInteger(m.mode) || m.mode < 0 || m.mode > 0o7777) {
        const shown = Number.isInteger(m.mode) && m.mode > 0 ? `0o${m.mode.toString(8)}` : String(m.mode);
        throw invalid(ctx, `${field}.mode ${shown} must be a file mode from 0 to 0o7777`);
      }
      sized.push(`mode=${m.mode.toString(8)}`);
    }
    return mount(m.target, 'tmpfs', 'tmpfs', ['nosuid', 'nodev', ...sized, ...options]);
  }
  throw invalid(ctx, `${field}.type ${q(String((m as { type: unknown }).type))} is not bind or tmpfs`);
}

/**
 * The default mounts, then the container's, parents before children (as
 * Docker sorts them). A container mount on a default mount's target
 * replaces it (a bigger /dev/shm, say).
 */
function specMounts(list: readonly ContainerMount[], ctx: SpecContext): SpecMount[] {
  const seen = new Map<string, number>();
  const own = list.map((m, i) => {
    checkPath(ctx, `mounts[${i}].target`, m.target);
    const first = seen.get(m.target);
    if (first !== undefined) throw invalid(ctx, `mounts[${i}].target ${q(m.target)} is also the target of mounts[${first}]`);
    seen.set(m.target, i);
    return specMount(m, i, ctx);
  });
  const depth = (m: SpecMount): number => m.destination.split('/').length;
  own.sort((a, b) => depth(a) - depth(b));
  return [...DEFAULT_MOUNTS.filter((d) => !seen.has(d.destination)).map((d) => ({ ...d, options: [...d.options] })), ...own];
}

function specDevices(list: readonly DeviceSpec[], ctx: SpecContext): { devices: SpecDevice[]; rules: SpecDeviceRule[] } {
  const seen = new Map<string, number>();
  const devices: SpecDevice[] = [];
  const rules: SpecDeviceRule[] = [];
  for (const [i, d] of list.entries()) {
    const field = `devices[${i}]`;
    checkPath(ctx, `${field}.path`, d.path);
    const first = seen.get(d.path);
    if (first !== undefined) throw invalid(ctx, `${field}.path ${q(d.path)} is also the path of devices[${first}]`);
    seen.set(d.path, i);
    if (d.type !== 'c' && d.type !== 'b') throw invalid(ctx, `${field}.type ${q(String(d.type))} must be "c" (character) or "b" (block)`);
    checkCount(ctx, `${field}.major`, d.major, 2 ** 32 - 1);
    checkCount(ctx, `${field}.minor`, d.minor, 2 ** 32 - 1);
    // A caller may pass stat's mode as it is; the file-type bits are dropped.
    if (d.fileMode !== undefined) checkCount(ctx, `${field}.fileMode`, d.fileMode, 0o177777);
    if (d.uid !== undefined) checkCount(ctx, `${field}.uid`, d.uid, MAX_ID);
    if (d.gid !== undefined) checkCount(ctx, `${field}.gid`, d.gid, MAX_ID);
    const access = d.permissions ?? 'rwm';
    if (!/^[rwm]{1,3}$/.test(access) || new Set(access).size !== access.length) {
      throw invalid(ctx, `${field}.permissions ${q(access)} must be letters from "rwm", each at most once`);
    }
    devices.push({ path: d.path, type: d.type, major: d.major, minor: d.minor, fileMode: (d.fileMode ?? 0o666) & 0o7777, uid: d.uid ?? 0, gid: d.gid ?? 0 });
    rules.push({ allow: true, type: d.type, major: d.major, minor: d.minor, access });
  }
  return { devices, rules };
}

function specResources(r: ContainerResources, deviceRules: SpecDeviceRule[], ctx: SpecContext): SpecResources {
  const resources: SpecResources = { devices: [...DEFAULT_DEVICE_RULES.map((d) => ({ ...d })), ...deviceRules] };
  if (r.memory !== undefined) {
    if (!Number.isSafeInteger(r.memory) || r.memory < 0) throw invalid(ctx, `resources.memory ${r.memory} must be a whole number of bytes`);
    if (r.memory < MIN_MEMORY) throw invalid(ctx, `resources.memory: memory limit ${r.memory} is below the minimum of 6 MiB`, `set at least ${MIN_MEMORY} bytes (6Mi)`);
    resources.memory = { limit: r.memory };
  }
  if (r.cpus !== undefined) {
    if (!Number.isFinite(r.cpus) || r.cpus < MIN_CPUS) throw invalid(ctx, `resources.cpus ${r.cpus} must be at least ${MIN_CPUS}`, 'cpus is a number of CPUs, e.g. 0.5 or 2');
    resources.cpu = { quota: Math.round(r.cpus * CPU_PERIOD), period: CPU_PERIOD };
  }
  if (r.pids !== undefined) {
    if (!Number.isSafeInteger(r.pids) || r.pids <= 0) throw invalid(ctx, `resources.pids ${r.pids} must be a whole number above 0`);
    resources.pids = { limit: r.pids };
  }
  return resources;
}

/** RFC 1123 names of at most 64 characters, the kernel's limit. */
const HOSTNAME = /^(?=.{1,64}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/**
 * The configured hostname; else the container's name when it is a valid
 * hostname (Docker uses the container's id). With network host and no
 * hostname configured, none: the container keeps the host's.
 */
function specHostname(c: ContainerConfig, ctx: SpecContext): string {
  if (c.hostname !== undefined) {
    if (!HOSTNAME.test(c.hostname)) throw invalid(ctx, `hostname ${q(c.hostname)} is not a valid hostname`, 'use letters, digits, "-" and ".", at most 64 characters');
    return c.hostname;
  }
  if (c.network === 'host' || ctx.name === undefined || !HOSTNAME.test(ctx.name)) return '';
  return ctx.name;
}

function specCwd(image: ImageConfig['config'], c: ContainerConfig, ctx: SpecContext): string {
  const field = c.workingDir !== undefined ? 'workingDir' : 'the image config WorkingDir';
  const cwd = c.workingDir ?? (image?.WorkingDir || '/');
  if (!cwd.startsWith('/')) throw invalid(ctx, `${field} ${q(cwd)} must be an absolute path`);
  return posix.normalize(cwd).replace(/(.)\/$/, '$1');
}

/** The signal that asks the container to stop: the container's, the image's StopSignal, or SIGTERM. */
export function stopSignal(image: ImageConfig, c: ContainerConfig = {}, ctx: SpecContext = {}): number {
  if (c.stopSignal !== undefined) return inField(ctx, 'stopSignal', () => parseSignal(c.stopSignal!));
  const own = image.config?.StopSignal;
  if (own) return inField(ctx, 'the image config StopSignal', () => parseSignal(own));
  return SIGTERM;
}

export function generateSpec(image: ImageConfig, c: ContainerConfig = {}, ctx: SpecContext = {}): RuntimeSpec {
  const cfg = image.config ?? {};
  const user = c.user !== undefined ? resolveUser(c.user, ctx.files, ctx, 'user') : resolveUser(cfg.User, ctx.files, ctx, 'the image config User');
  const caps = resolveCapabilities(c.capabilities, ctx);
  const { devices, rules } = specDevices(c.devices ?? [], ctx);
  // Checked here so a bad stop signal fails at create, not at the first stop.
  stopSignal(image, c, ctx);
  if (c.network !== undefined && c.network !== 'host' && c.network !== 'none') {
    throw invalid(ctx, `network ${q(String(c.network))} must be "host" or "none"`);
  }
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (c.network !== 'host') namespaces.push({ type: 'network' });
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}) },
      args: processArgs(cfg, c, ctx),
      env: mergeEnv(cfg.Env, c.env, ctx),
      cwd: specCwd(cfg, c, ctx),
      capabilities: { bounding: caps, effective: [...caps], permitted: [...caps] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: c.readonlyRootfs ?? false },
    hostname: specHostname(c, ctx),
    mounts: specMounts(c.mounts ?? [], ctx),
    linux: {
      namespaces,
      maskedPaths: [...MASKED_PATHS],
      readonlyPaths: [...READONLY_PATHS],
      resources: specResources(c.resources ?? {}, rules, ctx),
      devices,
      ...(ctx.cgroupsPath === undefined ? {} : { cgroupsPath: ctx.cgroupsPath }),
    },
  };
}
