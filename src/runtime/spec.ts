import { BerthError } from '../errors.js';
import type { ImageConfig } from '../oci/descriptor.js';

/**
 * OCI runtime spec generation, pure: image config + container overrides in,
 * config.json out, with the defaults users of containerd and Docker expect
 * (namespaces, the standard mounts, the default capability set, masked and
 * read-only paths, NoNewPrivileges, rlimits). Reading /etc/passwd and
 * /etc/group is the caller's job; their text comes in as arguments.
 */

/** A mount in config.json (the runtime spec names the target `destination`). */
export interface SpecMount {
  destination: string;
  type: string;
  source: string;
  options: string[];
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
    resources?: Record<string, unknown>;
  };
}

/** Docker's and containerd's default capability set. */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

const MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];
const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface SpecOverrides {
  command?: string[];
  args?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  hostname?: string;
  network?: 'host' | 'none';
  readonlyRootfs?: boolean;
}

export interface UserFiles {
  passwd?: string;
  group?: string;
}

/** Docker's rules: command replaces Entrypoint (and drops Cmd); args replace Cmd. */
export function processArgs(image: ImageConfig['config'], o: SpecOverrides): string[] {
  const entrypoint = o.command ?? image?.Entrypoint ?? [];
  const cmd = o.args ?? (o.command ? [] : (image?.Cmd ?? []));
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw new BerthError('INVALID_ARGUMENT', 'the image defines no Entrypoint or Cmd and no command was given', { hint: 'set command in the container spec' });
  }
  return args;
}

/** Image Env, then overrides; later keys replace earlier ones; PATH defaulted. */
export function mergeEnv(imageEnv: readonly string[] | undefined, overrides: Record<string, string> = {}): string[] {
  const env = new Map<string, string>();
  for (const kv of imageEnv ?? []) {
    const i = kv.indexOf('=');
    env.set(i === -1 ? kv : kv.slice(0, i), kv);
  }
  for (const [k, v] of Object.entries(overrides)) env.set(k, `${k}=${v}`);
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  return [...env.values()];
}

function parseColonFile(text: string | undefined): string[][] {
  return (text ?? '').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':'));
}

/**
 * Resolves "name", "uid", "uid:gid", "name:group" against passwd/group text
 * (Docker's rules): a numeric uid needs no passwd entry; a name must exist.
 * Supplementary groups are the groups listing the user by name.
 */
export function resolveUser(user: string | undefined, files: UserFiles): { uid: number; gid: number; additionalGids: number[] } {
  const spec = user?.trim() || '0';
  const [u, g] = spec.split(':', 2) as [string, string | undefined];
  const passwd = parseColonFile(files.passwd);
  const groups = parseColonFile(files.group);
  let name: string | undefined;
  let uid: number;
  let gid: number;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    const entry = passwd.find((p) => p[2] === u);
    name = entry?.[0];
    gid = entry ? Number(entry[3]) : 0;
  } else {
    const entry = passwd.find((p) => p[0] === u);
    if (!entry) throw new BerthError('INVALID_ARGUMENT', `user "${u}" is not in the image's /etc/passwd`, { hint: 'use a numeric uid or a user the image defines' });
    name = u;
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const entry = groups.find((e) => e[0] === g);
      if (!entry) throw new BerthError('INVALID_ARGUMENT', `group "${g}" is not in the image's /etc/group`, { hint: 'use a numeric gid or a group the image defines' });
      gid = Number(entry[2]);
    }
  }
  const additionalGids = name ? groups.filter((e) => (e[3] ?? '').split(',').includes(name!)).map((e) => Number(e[2])).filter((x) => x !== gid) : [];
  return { uid, gid, additionalGids };
}

export function generateSpec(image: ImageConfig, o: SpecOverrides = {}, files: UserFiles = {}): RuntimeSpec {
  const cfg = image.config ?? {};
  const user = resolveUser(cfg.User, files);
  const namespaces = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (o.network !== 'host') namespaces.push({ type: 'network' });
  const mount = (destination: string, type: string, source: string, options: string[]): SpecMount => ({ destination, type, source, options });
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: user.uid, gid: user.gid, ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}) },
      args: processArgs(cfg, o),
      env: mergeEnv(cfg.Env, o.env),
      cwd: o.workingDir ?? (cfg.WorkingDir || '/'),
      capabilities: { bounding: DEFAULT_CAPABILITIES, effective: DEFAULT_CAPABILITIES, permitted: DEFAULT_CAPABILITIES },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: 'rootfs', readonly: o.readonlyRootfs ?? false },
    hostname: o.hostname ?? '',
    mounts: [
      mount('/proc', 'proc', 'proc', ['nosuid', 'noexec', 'nodev']),
      mount('/dev', 'tmpfs', 'tmpfs', ['nosuid', 'strictatime', 'mode=755', 'size=65536k']),
      mount('/dev/pts', 'devpts', 'devpts', ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5']),
      mount('/dev/shm', 'tmpfs', 'shm', ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k']),
      mount('/dev/mqueue', 'mqueue', 'mqueue', ['nosuid', 'noexec', 'nodev']),
      mount('/sys', 'sysfs', 'sysfs', ['nosuid', 'noexec', 'nodev', 'ro']),
      mount('/sys/fs/cgroup', 'cgroup', 'cgroup', ['nosuid', 'noexec', 'nodev', 'relatime', 'ro']),
    ],
    linux: { namespaces, maskedPaths: MASKED_PATHS, readonlyPaths: READONLY_PATHS },
  };
}
