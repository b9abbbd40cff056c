import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBerthError } from '../../../src/errors.js';
import type { ImageConfig } from '../../../src/oci/descriptor.js';
import {
  ALL_CAPABILITIES,
  DEFAULT_CAPABILITIES,
  generateSpec,
  resolveUser,
  stopSignal,
  type ContainerConfig,
  type RuntimeSpec,
  type SpecContext,
  type SpecMount,
} from '../../../src/runtime/spec.js';

type Config = NonNullable<ImageConfig['config']>;
const image = (config: Config = { Cmd: ['/bin/sh'] }): ImageConfig => ({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config });
const IMAGE = image();

const FILES = {
  passwd: [
    'root:x:0:0:root:/root:/bin/sh',
    '# a comment',
    'daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin',
    'app:x:1000:1000:App:/home/app:/bin/sh',
    'broken:x:notanumber:1:::',
    'nogroups:x:1001:1001::/:/bin/sh\r',
    '',
  ].join('\n'),
  group: ['root:x:0:', 'daemon:x:1:app', 'app:x:1000:', 'nogroups:x:1001:', 'audio:x:29:app,daemon', 'video:x:44:other,app', 'staff:x:50:'].join('\n'),
};

const spec = (c: ContainerConfig = {}, ctx: SpecContext = {}, img: ImageConfig = IMAGE): RuntimeSpec => generateSpec(img, c, { files: FILES, ...ctx });

/** Asserts a BerthError INVALID_ARGUMENT with exactly this message (and hint, if given). */
function assertInvalid(fn: () => unknown, message: string, hint?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isBerthError(err, 'INVALID_ARGUMENT'), `expected INVALID_ARGUMENT, got ${String(err)}`);
    assert.equal(err.message, message);
    if (hint !== undefined) assert.equal(err.hint, hint);
    return true;
  });
}

const DEFAULT_MOUNTS: SpecMount[] = [
  { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
  { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
  { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
  { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
];

const DEFAULT_DEVICE_RULES = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' },
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' },
  { allow: true, type: 'c', major: 136, access: 'rwm' },
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' },
];

const CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

describe('generateSpec: the defaults', () => {
  it('writes the whole config.json for an image with only a Cmd', () => {
    assert.deepEqual(spec(), {
      ociVersion: '1.0.2',
      process: {
        terminal: false,
        user: { uid: 0, gid: 0 },
        args: ['/bin/sh'],
        env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        cwd: '/',
        capabilities: { bounding: CAPS, effective: CAPS, permitted: CAPS },
        rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
        noNewPrivileges: true,
      },
      root: { path: 'rootfs', readonly: false },
      hostname: '',
      mounts: DEFAULT_MOUNTS,
      linux: {
        namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
        maskedPaths: [
          '/proc/acpi', '/proc/asound', '/proc/interrupts', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
          '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
        ],
        readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
        resources: { devices: DEFAULT_DEVICE_RULES },
        devices: [],
      },
    });
  });

  it('works without user files or context at all', () => {
    const s = generateSpec(IMAGE);
    assert.deepEqual(s.process.user, { uid: 0, gid: 0 });
    assert.equal(s.linux.cgroupsPath, undefined);
  });

  it('hands out fresh arrays: changing one spec does not change the next', () => {
    const a = spec();
    a.mounts[0]!.options.push('ro');
    a.process.capabilities.bounding.push('CAP_SYS_ADMIN');
    a.linux.maskedPaths.pop();
    a.linux.resources.devices[0]!.allow = true;
    assert.deepEqual(spec(), generateSpec(IMAGE, {}, { files: FILES }));
    assert.deepEqual(spec().mounts, DEFAULT_MOUNTS);
    assert.deepEqual(spec().process.capabilities.bounding, CAPS);
    assert.deepEqual([...DEFAULT_CAPABILITIES], CAPS);
    assert.deepEqual(spec().linux.resources.devices, DEFAULT_DEVICE_RULES);
  });
});

describe('generateSpec: args (Docker rules)', () => {
  // image config, container config → process.args
  const table: Array<[string, Config, ContainerConfig, string[]]> = [
    ['Cmd alone', { Cmd: ['nginx', '-g', 'daemon off;'] }, {}, ['nginx', '-g', 'daemon off;']],
    ['Entrypoint alone', { Entrypoint: ['/entry'] }, {}, ['/entry']],
    ['Entrypoint then Cmd', { Entrypoint: ['/entry', '-v'], Cmd: ['serve'] }, {}, ['/entry', '-v', 'serve']],
    ['null Entrypoint and Cmd fields', { Entrypoint: null, Cmd: ['/bin/true'] }, {}, ['/bin/true']],
    ['args replace Cmd, keep Entrypoint', { Entrypoint: ['/entry'], Cmd: ['serve'] }, { args: ['migrate', '--all'] }, ['/entry', 'migrate', '--all']],
    ['command replaces Entrypoint and drops Cmd', { Entrypoint: ['/entry'], Cmd: ['serve'] }, { command: ['/bin/web'] }, ['/bin/web']],
    ['command and args', { Entrypoint: ['/entry'], Cmd: ['serve'] }, { command: ['/bin/web'], args: ['--port', '8080'] }, ['/bin/web', '--port', '8080']],
    ['empty command clears Entrypoint; args still run', { Entrypoint: ['/entry'], Cmd: ['serve'] }, { command: [], args: ['/bin/true'] }, ['/bin/true']],
    ['args with no Entrypoint', { Cmd: ['serve'] }, { args: ['/bin/other'] }, ['/bin/other']],
  ];
  for (const [name, img, c, args] of table) {
    it(name, () => assert.deepEqual(spec(c, {}, image(img)).process.args, args));
  }
});

describe('generateSpec: env', () => {
  // image Env, container env → process.env
  const table: Array<[string, string[] | undefined, Record<string, string> | undefined, string[]]> = [
    ['PATH defaulted when nobody sets it', undefined, undefined, ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin']],
    ["the image's PATH is kept", ['PATH=/opt/bin', 'LANG=C'], undefined, ['PATH=/opt/bin', 'LANG=C']],
    ['container env appended after image env', ['PATH=/bin', 'A=1'], { B: '2' }, ['PATH=/bin', 'A=1', 'B=2']],
    ['container env replaces an image key in place', ['A=1', 'PATH=/bin', 'C=3'], { A: 'x=y' }, ['A=x=y', 'PATH=/bin', 'C=3']],
    ['container PATH replaces the default', undefined, { PATH: '/custom' }, ['PATH=/custom']],
    ['empty value allowed', ['PATH=/bin'], { EMPTY: '' }, ['PATH=/bin', 'EMPTY=']],
    ['a later duplicate in the image wins', ['A=1', 'A=2', 'PATH=/bin'], undefined, ['A=2', 'PATH=/bin']],
  ];
  for (const [name, imageEnv, env, expected] of table) {
    it(name, () => assert.deepEqual(spec(env === undefined ? {} : { env }, {}, image({ Cmd: ['x'], ...(imageEnv ? { Env: imageEnv } : {}) })).process.env, expected));
  }
});

describe('generateSpec: cwd', () => {
  // image WorkingDir, container workingDir → process.cwd
  const table: Array<[string | undefined, string | undefined, string]> = [
    [undefined, undefined, '/'],
    ['', undefined, '/'],
    ['/srv', undefined, '/srv'],
    ['/srv', '/data', '/data'],
    [undefined, '/data/', '/data'],
    ['/a//b/../c/', undefined, '/a/c'],
    ['/srv', '/', '/'],
  ];
  for (const [imageDir, dir, cwd] of table) {
    it(`image ${String(imageDir)}, container ${String(dir)} → ${cwd}`, () => {
      const img = image({ Cmd: ['x'], ...(imageDir === undefined ? {} : { WorkingDir: imageDir }) });
      assert.equal(spec(dir === undefined ? {} : { workingDir: dir }, {}, img).process.cwd, cwd);
    });
  }
});

describe('generateSpec: user', () => {
  // user string (container or image) → process.user
  const table: Array<[string | undefined, { uid: number; gid: number; additionalGids?: number[] }]> = [
    [undefined, { uid: 0, gid: 0 }],
    ['', { uid: 0, gid: 0 }],
    ['root', { uid: 0, gid: 0 }],
    ['0', { uid: 0, gid: 0 }],
    ['app', { uid: 1000, gid: 1000, additionalGids: [1, 29, 44] }],
    ['1000', { uid: 1000, gid: 1000, additionalGids: [1, 29, 44] }],
    ['daemon', { uid: 1, gid: 1, additionalGids: [29] }],
    ['nogroups', { uid: 1001, gid: 1001 }],
    ['4242', { uid: 4242, gid: 0 }],
    ['4242:4343', { uid: 4242, gid: 4343 }],
    ['1000:1000', { uid: 1000, gid: 1000, additionalGids: [1, 29, 44] }],
    ['app:audio', { uid: 1000, gid: 29, additionalGids: [1, 44] }],
    ['app:50', { uid: 1000, gid: 50, additionalGids: [1, 29, 44] }],
    ['1000:staff', { uid: 1000, gid: 50, additionalGids: [1, 29, 44] }],
    ['4242:staff', { uid: 4242, gid: 50 }],
    [' app ', { uid: 1000, gid: 1000, additionalGids: [1, 29, 44] }],
    ['4294967294', { uid: 4294967294, gid: 0 }],
  ];
  for (const [user, expected] of table) {
    it(`container user ${JSON.stringify(user)}`, () => assert.deepEqual(spec(user === undefined ? {} : { user }).process.user, expected));
  }

  it("takes the image's User when the container sets none", () => {
    assert.deepEqual(spec({}, {}, image({ Cmd: ['x'], User: 'app:audio' })).process.user, { uid: 1000, gid: 29, additionalGids: [1, 44] });
  });

  it("the container's user replaces the image's", () => {
    assert.deepEqual(spec({ user: '0' }, {}, image({ Cmd: ['x'], User: 'nobody-here' })).process.user, { uid: 0, gid: 0 });
  });

  it('resolveUser is usable alone', () => {
    assert.deepEqual(resolveUser('app', FILES), { uid: 1000, gid: 1000, additionalGids: [1, 29, 44] });
    assert.deepEqual(resolveUser('7:8', {}), { uid: 7, gid: 8, additionalGids: [] });
  });
});

describe('generateSpec: capabilities', () => {
  const sorted = (xs: readonly string[]): string[] => [...xs].sort();
  const allBut = (...xs: string[]): string[] => ALL_CAPABILITIES.filter((c) => !xs.includes(c));
  // add, drop → the bounding (= effective = permitted) set
  const table: Array<[string[] | undefined, string[] | undefined, string[]]> = [
    [undefined, undefined, CAPS],
    [['NET_ADMIN'], undefined, [...CAPS, 'CAP_NET_ADMIN']],
    [['CAP_NET_ADMIN', 'sys_time'], undefined, [...CAPS, 'CAP_NET_ADMIN', 'CAP_SYS_TIME']],
    [['cap_chown'], undefined, CAPS],
    [undefined, ['NET_RAW', 'CAP_MKNOD'], CAPS.filter((c) => c !== 'CAP_NET_RAW' && c !== 'CAP_MKNOD')],
    [undefined, ['ALL'], []],
    [['NET_BIND_SERVICE', 'CHOWN'], ['ALL'], ['CAP_NET_BIND_SERVICE', 'CAP_CHOWN']],
    [['ALL'], undefined, [...ALL_CAPABILITIES]],
    [['all'], ['SYS_ADMIN', 'sys_module'], allBut('CAP_SYS_ADMIN', 'CAP_SYS_MODULE')],
    [['ALL'], ['ALL'], [...ALL_CAPABILITIES]],
    [['KILL'], ['KILL'], [...CAPS.filter((c) => c !== 'CAP_KILL'), 'CAP_KILL']],
    [['NET_ADMIN', 'NET_ADMIN'], undefined, [...CAPS, 'CAP_NET_ADMIN']],
  ];
  for (const [add, drop, expected] of table) {
    it(`add ${JSON.stringify(add)} drop ${JSON.stringify(drop)}`, () => {
      const caps = spec({ capabilities: { ...(add ? { add } : {}), ...(drop ? { drop } : {}) } }).process.capabilities;
      assert.deepEqual(caps, { bounding: expected, effective: expected, permitted: expected });
    });
  }

  it('ALL is every capability of capabilities(7), 41 of them, each once', () => {
    assert.equal(ALL_CAPABILITIES.length, 41);
    assert.equal(new Set(ALL_CAPABILITIES).size, 41);
    assert.ok(CAPS.every((c) => ALL_CAPABILITIES.includes(c)));
    assert.deepEqual(sorted(spec({ capabilities: { add: ['ALL'] } }).process.capabilities.bounding), sorted(ALL_CAPABILITIES));
  });

  it('gives a non-root user the same sets (the kernel empties effective and permitted at execve)', () => {
    assert.deepEqual(spec({ user: 'app' }).process.capabilities, spec().process.capabilities);
  });
});

describe('generateSpec: mounts', () => {
  // container mounts → the mounts after the defaults
  const table: Array<[string, ContainerConfig['mounts'], SpecMount[]]> = [
    ['a bind mount: rbind, default propagation rprivate', [{ type: 'bind', source: '/data/web', target: '/data' }],
      [{ destination: '/data', type: 'bind', source: '/data/web', options: ['rbind', 'rprivate'] }]],
    ['a read-only bind mount', [{ type: 'bind', source: '/etc/app', target: '/etc/app', readonly: true }],
      [{ destination: '/etc/app', type: 'bind', source: '/etc/app', options: ['rbind', 'ro', 'rprivate'] }]],
    ['bind options pass through; a propagation option replaces rprivate', [{ type: 'bind', source: '/s', target: '/t', options: ['nosuid', 'rslave'] }],
      [{ destination: '/t', type: 'bind', source: '/s', options: ['rbind', 'nosuid', 'rslave'] }]],
    ['"bind" makes it non-recursive; ro not repeated', [{ type: 'bind', source: '/s', target: '/t', readonly: true, options: ['bind', 'ro', 'nodev'] }],
      [{ destination: '/t', type: 'bind', source: '/s', options: ['bind', 'ro', 'nodev', 'rprivate'] }]],
    ['ro in the options of a bind mount of a file', [{ type: 'bind', source: '/etc/hostname', target: '/etc/hostname', options: ['ro'] }],
      [{ destination: '/etc/hostname', type: 'bind', source: '/etc/hostname', options: ['rbind', 'ro', 'rprivate'] }]],
    ['a tmpfs: nosuid, nodev', [{ type: 'tmpfs', target: '/tmp' }],
      [{ destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev'] }]],
    ['a tmpfs with size and mode (octal)', [{ type: 'tmpfs', target: '/tmp', size: 64 * 1024 * 1024, mode: 0o1777 }],
      [{ destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'size=67108864', 'mode=1777'] }]],
    ['a tmpfs with mode 0 and options', [{ type: 'tmpfs', target: '/run', mode: 0, options: ['noexec', 'uid=1000', 'nr_inodes=1k'] }],
      [{ destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=0', 'noexec', 'uid=1000', 'nr_inodes=1k'] }]],
    ['parents before children, otherwise in the given order', [
      { type: 'tmpfs', target: '/data/cache/tmp' },
      { type: 'bind', source: '/b', target: '/data/b' },
      { type: 'bind', source: '/d', target: '/data' },
      { type: 'tmpfs', target: '/scratch' },
    ], [
      { destination: '/data', type: 'bind', source: '/d', options: ['rbind', 'rprivate'] },
      { destination: '/scratch', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev'] },
      { destination: '/data/b', type: 'bind', source: '/b', options: ['rbind', 'rprivate'] },
      { destination: '/data/cache/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev'] },
    ]],
  ];
  for (const [name, mounts, expected] of table) {
    it(name, () => {
      const s = spec({ mounts });
      assert.deepEqual(s.mounts.slice(0, DEFAULT_MOUNTS.length), DEFAULT_MOUNTS);
      assert.deepEqual(s.mounts.slice(DEFAULT_MOUNTS.length), expected);
    });
  }

  it("a mount on a default mount's target replaces that default", () => {
    const s = spec({ mounts: [{ type: 'tmpfs', target: '/dev/shm', size: 1 << 30 }] });
    assert.deepEqual(s.mounts.map((m) => m.destination), ['/proc', '/dev', '/dev/pts', '/dev/mqueue', '/sys', '/sys/fs/cgroup', '/dev/shm']);
    assert.deepEqual(s.mounts.at(-1), { destination: '/dev/shm', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'size=1073741824'] });
  });
});

describe('generateSpec: namespaces, hostname, root, cgroups path', () => {
  const nsTypes = (s: RuntimeSpec): string[] => s.linux.namespaces.map((n) => n.type);
  it('network none: a new network namespace (loopback only), same as the default', () => {
    assert.deepEqual(nsTypes(spec({ network: 'none' })), ['pid', 'ipc', 'uts', 'mount', 'network']);
  });
  it("network host: no network namespace, the host's", () => {
    assert.deepEqual(nsTypes(spec({ network: 'host' })), ['pid', 'ipc', 'uts', 'mount']);
  });

  // config, context → hostname
  const hostnames: Array<[string, ContainerConfig, SpecContext, string]> = [
    ['none configured, no name', {}, {}, ''],
    ["the container's name by default", {}, { name: 'web' }, 'web'],
    ['a configured hostname wins', { hostname: 'api.internal' }, { name: 'web' }, 'api.internal'],
    ['a name that is no hostname is not used', {}, { name: 'web_1' }, ''],
    ["network host keeps the host's", { network: 'host' }, { name: 'web' }, ''],
    ['network host with a configured hostname', { network: 'host', hostname: 'edge-1' }, { name: 'web' }, 'edge-1'],
    ['64 characters is the most', { hostname: 'a'.repeat(64) }, {}, 'a'.repeat(64)],
  ];
  for (const [name, c, ctx, hostname] of hostnames) {
    it(`hostname: ${name}`, () => assert.equal(spec(c, ctx).hostname, hostname));
  }

  it('readonlyRootfs → root.readonly', () => {
    assert.deepEqual(spec({ readonlyRootfs: true }).root, { path: 'rootfs', readonly: true });
    assert.deepEqual(spec({ readonlyRootfs: false }).root, { path: 'rootfs', readonly: false });
  });

  it('cgroupsPath is passed through', () => {
    assert.equal(spec({}, { cgroupsPath: '/berth/web' }).linux.cgroupsPath, '/berth/web');
    assert.equal(spec({}, { cgroupsPath: 'system.slice:berth:web' }).linux.cgroupsPath, 'system.slice:berth:web');
    assert.ok(!('cgroupsPath' in spec().linux));
  });
});

describe('generateSpec: resources and devices', () => {
  // resources → linux.resources less the device rules
  const table: Array<[ContainerConfig['resources'], Record<string, unknown>]> = [
    [{}, {}],
    [{ memory: 256 * 1024 * 1024 }, { memory: { limit: 268435456 } }],
    [{ memory: 6 * 1024 * 1024 }, { memory: { limit: 6291456 } }],
    [{ cpus: 0.5 }, { cpu: { quota: 50000, period: 100000 } }],
    [{ cpus: 2 }, { cpu: { quota: 200000, period: 100000 } }],
    [{ cpus: 0.01 }, { cpu: { quota: 1000, period: 100000 } }],
    [{ cpus: 1.333333 }, { cpu: { quota: 133333, period: 100000 } }],
    [{ pids: 1 }, { pids: { limit: 1 } }],
    [{ memory: 1 << 30, cpus: 1.5, pids: 256 }, { memory: { limit: 1073741824 }, cpu: { quota: 150000, period: 100000 }, pids: { limit: 256 } }],
  ];
  for (const [resources, expected] of table) {
    it(`resources ${JSON.stringify(resources)}`, () => {
      assert.deepEqual(spec({ resources }).linux.resources, { devices: DEFAULT_DEVICE_RULES, ...expected });
    });
  }

  it('configured devices: nodes in linux.devices, allowed after the defaults', () => {
    const s = spec({
      devices: [
        { path: '/dev/fuse', type: 'c', major: 10, minor: 229 },
        { path: '/dev/xvda', type: 'b', major: 8, minor: 0, fileMode: 0o60660, uid: 0, gid: 6, permissions: 'rw' },
        { path: '/dev/ttyUSB0', type: 'c', major: 188, minor: 0, fileMode: 0o620, uid: 1000, gid: 20, permissions: 'r' },
      ],
    });
    assert.deepEqual(s.linux.devices, [
      { path: '/dev/fuse', type: 'c', major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 },
      { path: '/dev/xvda', type: 'b', major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 6 },
      { path: '/dev/ttyUSB0', type: 'c', major: 188, minor: 0, fileMode: 0o620, uid: 1000, gid: 20 },
    ]);
    assert.deepEqual(s.linux.resources.devices, [
      ...DEFAULT_DEVICE_RULES,
      { allow: true, type: 'c', major: 10, minor: 229, access: 'rwm' },
      { allow: true, type: 'b', major: 8, minor: 0, access: 'rw' },
      { allow: true, type: 'c', major: 188, minor: 0, access: 'r' },
    ]);
  });
});

describe('stopSignal', () => {
  // container stopSignal, image StopSignal → number
  const table: Array<[string | undefined, string | undefined, number]> = [
    [undefined, undefined, 15],
    [undefined, '', 15],
    [undefined, 'SIGQUIT', 3],
    [undefined, 'SIGRTMIN+3', 37],
    ['SIGINT', 'SIGQUIT', 2],
    ['TERM', undefined, 15],
    ['9', 'SIGQUIT', 9],
    ['usr1', undefined, 10],
  ];
  for (const [own, fromImage, n] of table) {
    it(`container ${String(own)}, image ${String(fromImage)} → ${n}`, () => {
      const img = image({ Cmd: ['x'], ...(fromImage === undefined ? {} : { StopSignal: fromImage }) });
      assert.equal(stopSignal(img, own === undefined ? {} : { stopSignal: own }), n);
    });
  }
});

describe('generateSpec: every error is INVALID_ARGUMENT naming container and field', () => {
  const ctx: SpecContext = { name: 'web' };
  // image config (undefined: the default), container config, exact message
  const table: Array<[string, Config | undefined, ContainerConfig, string]> = [
    ['no command at all', {}, {}, 'container "web": command: the image defines no Entrypoint or Cmd and no command was given'],
    ['empty command and no args', { Cmd: ['serve'] }, { command: [] }, 'container "web": command: the image defines no Entrypoint or Cmd and no command was given'],
    ['empty program name', undefined, { command: [''] }, 'container "web": command: the program to run is an empty string'],
    ['env key with "="', undefined, { env: { 'A=B': '1' } }, 'container "web": env key "A=B" must be non-empty and contain no "="'],
    ['empty env key', undefined, { env: { '': '1' } }, 'container "web": env key "" must be non-empty and contain no "="'],
    ['relative workingDir', undefined, { workingDir: 'srv' }, 'container "web": workingDir "srv" must be an absolute path'],
    ['relative image WorkingDir', { Cmd: ['x'], WorkingDir: 'app' }, {}, 'container "web": the image config WorkingDir "app" must be an absolute path'],
    ['unknown user', undefined, { user: 'bob' }, 'container "web": user "bob" is not in the image\'s /etc/passwd'],
    ['unknown image User', { Cmd: ['x'], User: 'www-data' }, {}, 'container "web": the image config User "www-data" is not in the image\'s /etc/passwd'],
    ['unknown group', undefined, { user: 'app:wheel' }, 'container "web": user "app:wheel": group "wheel" is not in the image\'s /etc/group'],
    ['a user with no uid is not found', undefined, { user: 'broken' }, 'container "web": user "broken" is not in the image\'s /etc/passwd'],
    ['too many colons', undefined, { user: '1:2:3' }, 'container "web": user "1:2:3" is not of the form user, uid, user:group or uid:gid'],
    ['empty group', undefined, { user: 'app:' }, 'container "web": user "app:" is not of the form user, uid, user:group or uid:gid'],
    ['uid out of range', undefined, { user: '4294967295' }, 'container "web": user "4294967295": uid 4294967295 is out of range'],
    ['gid out of range', undefined, { user: '1:99999999999' }, 'container "web": user "1:99999999999": gid 99999999999 is out of range'],
    ['unknown capability added', undefined, { capabilities: { add: ['NET_ADMIN', 'FLY'] } }, 'container "web": capabilities.add[1] "FLY" is not a Linux capability'],
    ['unknown capability dropped', undefined, { capabilities: { drop: ['CAP_NOPE'] } }, 'container "web": capabilities.drop[0] "CAP_NOPE" is not a Linux capability'],
    ['relative mount target', undefined, { mounts: [{ type: 'tmpfs', target: '/ok' }, { type: 'tmpfs', target: 'tmp' }] }, 'container "web": mounts[1].target "tmp" must be an absolute path'],
    ['unclean mount target', undefined, { mounts: [{ type: 'tmpfs', target: '/a/../b' }] }, 'container "web": mounts[0].target "/a/../b" must be a clean path'],
    ['mount target with a trailing slash', undefined, { mounts: [{ type: 'tmpfs', target: '/data/' }] }, 'container "web": mounts[0].target "/data/" must be a clean path'],
    ['mount target with a double slash', undefined, { mounts: [{ type: 'tmpfs', target: '//data' }] }, 'container "web": mounts[0].target "//data" must be a clean path'],
    ['mount target /', undefined, { mounts: [{ type: 'bind', source: '/x', target: '/' }] }, 'container "web": mounts[0].target "/" cannot be the container\'s root'],
    ['duplicate mount target', undefined, { mounts: [{ type: 'tmpfs', target: '/t' }, { type: 'bind', source: '/a', target: '/u' }, { type: 'bind', source: '/b', target: '/t' }] }, 'container "web": mounts[2].target "/t" is also the target of mounts[0]'],
    ['relative bind source', undefined, { mounts: [{ type: 'bind', source: 'data', target: '/data' }] }, 'container "web": mounts[0].source "data" must be an absolute path'],
    ['unknown bind option', undefined, { mounts: [{ type: 'bind', source: '/a', target: '/b', options: ['nosuid', 'z'] }] }, 'container "web": mounts[0].options[1] "z" is not a mount option berth knows'],
    ['tmpfs data option on a bind mount', undefined, { mounts: [{ type: 'bind', source: '/a', target: '/b', options: ['size=1'] }] }, 'container "web": mounts[0].options[0] "size=1" is not a mount option berth knows'],
    ['readonly bind mount with rw', undefined, { mounts: [{ type: 'bind', source: '/a', target: '/b', readonly: true, options: ['rw'] }] }, 'container "web": mounts[0] is readonly but its options say "rw"'],
    ['unknown tmpfs option', undefined, { mounts: [{ type: 'tmpfs', target: '/b', options: ['huge=always'] }] }, 'container "web": mounts[0].options[0] "huge=always" is not a mount option berth knows'],
    ['tmpfs size 0', undefined, { mounts: [{ type: 'tmpfs', target: '/b', size: 0 }] }, 'container "web": mounts[0].size 0 must be a whole number of bytes above 0'],
    ['tmpfs fractional size', undefined, { mounts: [{ type: 'tmpfs', target: '/b', size: 1.5 }] }, 'container "web": mounts[0].size 1.5 must be a whole number of bytes above 0'],
    ['tmpfs mode too big', undefined, { mounts: [{ type: 'tmpfs', target: '/b', mode: 0o10000 }] }, 'container "web": mounts[0].mode 0o10000 must be a file mode from 0 to 0o7777'],
    ['negative tmpfs mode', undefined, { mounts: [{ type: 'tmpfs', target: '/b', mode: -1 }] }, 'container "web": mounts[0].mode -1 must be a file mode from 0 to 0o7777'],
    ['unknown mount type', undefined, { mounts: [{ type: 'volume', target: '/b' } as never] }, 'container "web": mounts[0].type "volume" is not bind or tmpfs'],
    ['memory below 6 MiB', undefined, { resources: { memory: 4194304 } }, 'container "web": resources.memory: memory limit 4194304 is below the minimum of 6 MiB'],
    ['fractional memory', undefined, { resources: { memory: 1e7 + 0.5 } }, 'container "web": resources.memory 10000000.5 must be a whole number of bytes'],
    ['cpus 0', undefined, { resources: { cpus: 0 } }, 'container "web": resources.cpus 0 must be at least 0.01'],
    ['negative cpus', undefined, { resources: { cpus: -1 } }, 'container "web": resources.cpus -1 must be at least 0.01'],
    ['cpus NaN', undefined, { resources: { cpus: Number.NaN } }, 'container "web": resources.cpus NaN must be at least 0.01'],
    ['cpus below 0.01', undefined, { resources: { cpus: 0.001 } }, 'container "web": resources.cpus 0.001 must be at least 0.01'],
    ['pids 0', undefined, { resources: { pids: 0 } }, 'container "web": resources.pids 0 must be a whole number above 0'],
    ['fractional pids', undefined, { resources: { pids: 2.5 } }, 'container "web": resources.pids 2.5 must be a whole number above 0'],
    ['relative device path', undefined, { devices: [{ path: 'dev/fuse', type: 'c', major: 10, minor: 229 }] }, 'container "web": devices[0].path "dev/fuse" must be an absolute path'],
    ['duplicate device path', undefined, { devices: [{ path: '/dev/a', type: 'c', major: 1, minor: 1 }, { path: '/dev/a', type: 'c', major: 1, minor: 2 }] }, 'container "web": devices[1].path "/dev/a" is also the path of devices[0]'],
    ['device type', undefined, { devices: [{ path: '/dev/a', type: 'p' as never, major: 1, minor: 1 }] }, 'container "web": devices[0].type "p" must be "c" (character) or "b" (block)'],
    ['negative major', undefined, { devices: [{ path: '/dev/a', type: 'c', major: -1, minor: 1 }] }, 'container "web": devices[0].major -1 must be a whole number from 0 to 4294967295'],
    ['device permissions', undefined, { devices: [{ path: '/dev/a', type: 'c', major: 1, minor: 1, permissions: 'rwx' }] }, 'container "web": devices[0].permissions "rwx" must be letters from "rwm", each at most once'],
    ['repeated device permission', undefined, { devices: [{ path: '/dev/a', type: 'c', major: 1, minor: 1, permissions: 'rr' }] }, 'container "web": devices[0].permissions "rr" must be letters from "rwm", each at most once'],
    ['device uid', undefined, { devices: [{ path: '/dev/a', type: 'c', major: 1, minor: 1, uid: -5 }] }, 'container "web": devices[0].uid -5 must be a whole number from 0 to 4294967294'],
    ['hostname with "_"', undefined, { hostname: 'web_1' }, 'container "web": hostname "web_1" is not a valid hostname'],
    ['hostname too long', undefined, { hostname: 'a'.repeat(65) }, `container "web": hostname "${'a'.repeat(65)}" is not a valid hostname`],
    ['empty hostname', undefined, { hostname: '' }, 'container "web": hostname "" is not a valid hostname'],
    ['network', undefined, { network: 'bridge' as never }, 'container "web": network "bridge" must be "host" or "none"'],
    ['unknown stop signal', undefined, { stopSignal: 'SIGFOO' }, 'container "web": stopSignal: signal "SIGFOO" is not a known signal'],
    ['unknown image StopSignal', { Cmd: ['x'], StopSignal: '99' }, {}, 'container "web": the image config StopSignal: signal "99" is not a known signal'],
  ];
  for (const [name, img, c, message] of table) {
    it(name, () => assertInvalid(() => generateSpec(img === undefined ? IMAGE : image(img), c, { files: FILES, ...ctx }), message));
  }

  it('without a name, the message starts with the field', () => {
    assertInvalid(() => spec({ mounts: [{ type: 'tmpfs', target: 'tmp' }] }), 'mounts[0].target "tmp" must be an absolute path');
  });

  it('says what to do in the hint', () => {
    assertInvalid(() => spec({ mounts: [{ type: 'tmpfs', target: '/a/./b/' }] }, ctx), 'container "web": mounts[0].target "/a/./b/" must be a clean path', 'write it as "/a/b"');
    assertInvalid(() => spec({ resources: { memory: 1 } }, ctx), 'container "web": resources.memory: memory limit 1 is below the minimum of 6 MiB', 'set at least 6291456 bytes (6Mi)');
    assertInvalid(() => spec({ user: 'bob' }, ctx), 'container "web": user "bob" is not in the image\'s /etc/passwd', 'use a numeric uid or a user the image defines');
    assertInvalid(() => spec({ stopSignal: 'NOPE' }, ctx), 'container "web": stopSignal: signal "NOPE" is not a known signal', 'use a name such as SIGTERM, TERM or SIGRTMIN+3, or a number from 1 to 64');
  });

  it('stopSignal alone names the field too', () => {
    assertInvalid(() => stopSignal(IMAGE, { stopSignal: '0' }, ctx), 'container "web": stopSignal: signal "0" is not a known signal');
  });
});
