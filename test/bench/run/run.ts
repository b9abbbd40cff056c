/**
 * Run benchmark: berth (runc under conmon) vs containerd (ctr -> containerd
 * -> containerd-shim-runc-v2 -> runc), on a busybox image built in code and
 * served by Debian's docker-registry on 127.0.0.1. berth twice: `berthd`, the
 * CLI as a thin client of a running `berth daemon` (cli/remote.ts), as ctr is
 * of containerd, and `berth` with no daemon (every command a whole berth
 * process), for information.
 *
 *   npm run bench:run -- [--rounds 3] [--containers 20] [--true-runs 5] [--json FILE]
 *
 * Each round runs berthd, ctr, then berth (interleaved round by round, so
 * drift in the machine hits all alike), each on a fresh tmpfs: berth's --root
 * and --state, containerd's root and state (a new containerd, and for berthd
 * a new `berth daemon`, per round, started before and not timed). The
 * image is pulled and unpacked first, untimed, so only running is measured.
 * Then, per contender and round:
 *  1. `run --rm IMAGE true`, --true-runs times (after one untimed
 *     `run --rm IMAGE false` that must exit 1: exit codes really pass through);
 *  2. N sequential `run -d` of `sleep 1000` (the start phase), then removing
 *     all N (the stop+rm phase): SIGKILL, wait for the exit, delete the
 *     runtime state and the container's snapshot and metadata;
 *  3. while the N run: the RSS and PSS of the monitor processes (conmon,
 *     containerd-shim-runc-v2), containerd's RSS growth, and the CLI's peak
 *     RSS for one `run -d`.
 * Wall time is spawn to exit of the CLI (measure.ts). After every phase the
 * result is checked (exit codes, the containers listed, monitor processes
 * and mounts present or gone), so a failing command is never timed as a fast
 * one: a `run --rm` with the wrong exit code is left out of the timing and
 * reported. Needs root, runc, conmon, containerd, time, docker-registry. Exit
 * code 1 if a contender failed to run or verify or exited with a wrong code;
 * target misses are reported only. Where berth's time goes within one run:
 * test/bench/run/phases.ts.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, rmdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { berthCommand } from '../../helpers/berth.js';
import { busyboxRegistry } from '../common/busybox.js';
import { Cleanup } from '../common/cleanup.js';
import { CONTAINERD, CONTAINERD_SHIM, CTR, startContainerd, type Containerd } from '../common/containerd.js';
import { GNU_TIME, killMeasured, measure, type Measured } from '../common/measure.js';
import { memoryOf, mountsUnder, processesOf, vmRSSKiB } from '../common/procs.js';
import { benchArgs, failed, pad, positiveInt, runBench } from '../common/report.js';
import { kibToMB, max, median, min } from '../common/stats.js';
import { mountTmpfs } from '../common/tmpfs.js';

/** berthd: berth's CLI served by a running `berth daemon`; berth: no daemon. */
const CONTENDERS = ['berthd', 'ctr', 'berth'] as const;
type Contender = (typeof CONTENDERS)[number];

const REPO = 'bench/busybox';
const TAG = '1';
/** berth at most this many times containerd's median, per phase. */
const TARGET_RATIO = 1.0;
const FS_BYTES = 512 << 20;
const RUNC = '/usr/sbin/runc';
const CONMON = '/usr/bin/conmon';
const execFileP = promisify(execFile);

interface Options {
  rounds: number;
  containers: number;
  trueRuns: number;
  json: string | undefined;
}

function options(): Options {
  const { values, usage } = benchArgs('node dist/test/bench/run/run.js [--rounds N] [--containers N] [--true-runs N] [--json FILE]', {
    rounds: { type: 'string' },
    containers: { type: 'string' },
    'true-runs': { type: 'string' },
    json: { type: 'string' },
  });
  return {
    rounds: positiveInt(values.rounds, 'rounds', 3, usage),
    containers: positiveInt(values.containers, 'containers', 20, usage),
    trueRuns: positiveInt(values['true-runs'], 'true-runs', 5, usage),
    json: values.json,
  };
}

function preflight(): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (mount, runc)');
  for (const f of [GNU_TIME, '/usr/bin/docker-registry', berthCommand, RUNC, CONMON, CONTAINERD, CTR, CONTAINERD_SHIM]) if (!existsSync(f)) missing.push(f);
  if (missing.length) throw new Error(`cannot run: missing ${missing.join(', ')} (Debian packages: time, docker-registry, runc, conmon, containerd; berth: npx tsc -p .)`);
}

// ---- contenders: the same operations through each engine's CLI ----

type Cmd = readonly [file: string, args: readonly string[]];

/**
 * One contender on one round's tmpfs. Commands are returned, not run, so the
 * round below times and checks both the same way.
 */
interface Engine {
  /** The process that monitors one container: its executable's name. */
  monitor: string;
  /** Pull (and unpack) the image; untimed. */
  pull(): Cmd;
  runRm(id: string, cmd: string): Cmd;
  runDetached(name: string): Cmd;
  /** Kill (SIGKILL), wait, delete and remove every named container: the commands, run one after the other. */
  removeAll(names: readonly string[]): Cmd[];
  /** Names of the containers that exist, and of those running (untimed). */
  listed(): Promise<{ all: string[]; running: string[] }>;
  /** The monitor processes of this round. */
  monitors(): Promise<number[]>;
  /** The daemon's pid (containerd, berth daemon), for its RSS; berth without one has none. */
  daemonPid?: number;
  /** Best effort: removes whatever a failed round left (containers, processes), before the tmpfs goes. */
  teardown(): Promise<void>;
}

/** Runs a setup or check command (untimed) to completion; its whole stdout, or an error with its stderr. */
async function untimed(cmd: Cmd): Promise<string> {
  try {
    return (await execFileP(cmd[0], cmd[1], { maxBuffer: 64 << 20 })).stdout;
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${[basename(cmd[0]), ...cmd[1]].join(' ')} failed: ${(e.stderr ?? '').trim().split('\n').slice(-5).join(' | ') || e.message}`);
  }
}

/** Runs a command to completion, timed (measure.ts: wall time and peak RSS). */
function timed(cmd: Cmd, scratch: string): Promise<Measured> {
  return measure(cmd[0], cmd[1], { scratchDir: scratch });
}

/** `berth daemon` on a round's --root/--state (no manifests), as containerd is started for ctr. */
interface BerthDaemon {
  pid: number;
  stop(): Promise<void>;
}

async function startBerthDaemon(dir: string): Promise<BerthDaemon> {
  const child = spawn(berthCommand, ['--root', join(dir, 'root'), '--state', join(dir, 'state'), '--log-level', 'info', 'daemon'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const deadline = Date.now() + 20_000;
  while (!err.includes('daemon supervising')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`berth daemon did not start: ${err.trim().split('\n').slice(-3).join(' | ')}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function berthEngine(dir: string, ref: string, daemon?: BerthDaemon): Engine {
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const berth = (...args: string[]): Cmd => [berthCommand, ['--root', root, '--state', state, ...args]];
  const runcRoot = join(state, 'runc');
  return {
    monitor: 'conmon',
    pull: () => berth('image', 'pull', ref),
    runRm: (_id, cmd) => berth('run', '--rm', ref, '--', cmd),
    runDetached: (name) => berth('run', '-d', '--name', name, ref, '--', 'sleep', '1000'),
    removeAll: (names) => [berth('rm', '-f', ...names)],
    async listed() {
      const views = JSON.parse(await untimed(berth('-o', 'json', 'ps'))) as Array<{ name: string; state: string }>;
      return { all: views.map((v) => v.name), running: views.filter((v) => v.state === 'running').map((v) => v.name) };
    },
    monitors: () => processesOf('conmon', dir),
    ...(daemon ? { daemonPid: daemon.pid } : {}),
    async teardown() {
      const ids = await readdir(runcRoot).catch(() => [] as string[]);
      for (const id of ids) await untimed([RUNC, ['--root', runcRoot, 'delete', '--force', id]]).catch(() => '');
      for (const pid of await processesOf('conmon', dir)) process.kill(pid, 'SIGKILL');
    },
  };
}

function ctrEngine(cd: Containerd, ns: string, ref: string): Engine {
  const ctr = (...args: string[]): Cmd => [CTR, ['--address', cd.address, '--namespace', ns, ...args]];
  const ids = async (...args: string[]): Promise<string[][]> =>
    (await untimed(ctr(...args)))
      .split('\n')
      .slice(1)
      .map((l) => l.trim().split(/\s+/))
      .filter((cols) => cols[0]);
  return {
    monitor: 'containerd-shim-runc-v2',
    pull: () => ctr('image', 'pull', '--plain-http', ref),
    runRm: (id, cmd) => ctr('run', '--rm', ref, id, cmd),
    runDetached: (name) => ctr('run', '-d', ref, name, 'sleep', '1000'),
    // task rm -f: SIGKILL, wait for the exit, delete the task (runc delete, shim exits); container rm: metadata and snapshot.
    removeAll: (names) => [ctr('task', 'rm', '-f', ...names), ctr('container', 'rm', ...names)],
    async listed() {
      const tasks = await ids('task', 'ls');
      const containers = await ids('container', 'ls');
      return { all: containers.map((c) => c[0]!), running: tasks.filter((t) => t[2] === 'RUNNING').map((t) => t[0]!) };
    },
    monitors: () => processesOf('containerd-shim-runc-v2', cd.address),
    daemonPid: cd.pid,
    async teardown() {
      const tasks = await ids('task', 'ls').catch(() => []);
      if (tasks.length) await untimed(ctr('task', 'rm', '-f', ...tasks.map((t) => t[0]!))).catch(() => '');
      const containers = await ids('container', 'ls').catch(() => []);
      if (containers.length) await untimed(ctr('container', 'rm', ...containers.map((c) => c[0]!))).catch(() => '');
      await cd.stop();
      for (const pid of await processesOf('containerd-shim-runc-v2', cd.address)) process.kill(pid, 'SIGKILL');
      // What the namespace leaves behind, empty once every task is deleted: the shims' runc root, and
      // the parent cgroup (/NAMESPACE) runc made its containers' cgroups in, in every hierarchy.
      await rmdir(join('/run/containerd/runc', ns)).catch(() => {});
      for (const h of await readdir('/sys/fs/cgroup').catch(() => [] as string[])) await rmdir(join('/sys/fs/cgroup', h, ns)).catch(() => {});
    },
  };
}

// ---- one round of one contender ----

interface Memory {
  /** Monitor processes found while the N containers ran. */
  processes: number;
  rssKiB: number;
  pssKiB: number;
  /** containerd's VmRSS after the N started minus before. */
  daemonGrowthKiB?: number;
  daemonRssKiB?: number;
}

/** A `run --rm` whose exit code was not the command's: not timed. */
interface WrongExit {
  cmd: string;
  expected: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

interface Run {
  contender: Contender;
  round: number;
  /** The `run --rm true` that exited 0. */
  trueMs: number[];
  wrongExits: WrongExit[];
  /** The N `run -d`, each spawn to exit; their sum is the start phase. */
  startMs: number[];
  /** The removal commands (one for berth, two for ctr), summed. */
  removeMs: number;
  /** Peak RSS of each `run -d` CLI process (GNU time). */
  cliPeakRssKiB: number[];
  memory: Memory;
}

const names = (n: number): string[] => Array.from({ length: n }, (_, i) => `c${i + 1}`);

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join('\n') === [...b].sort().join('\n');
}

/** Throws unless nothing of this contender's containers is left: none listed, no monitor, no container mounts. */
async function checkEmpty(e: Engine, c: Contender, dir: string, imageMounts: number, after: string): Promise<void> {
  const { all } = await e.listed();
  if (all.length) throw new Error(`${c}: after ${after}, containers still listed: ${all.join(', ')}`);
  // Monitors exit just after their container's delete; give them a moment before calling it a leak.
  const left = await monitorsGone(e);
  if (left.length) throw new Error(`${c}: after ${after}, ${left.length} ${e.monitor} process(es) still run: ${left.join(', ')}`);
  const mounts = await mountsUnder(dir);
  if (mounts.length > imageMounts) throw new Error(`${c}: after ${after}, mounts left under ${dir}: ${mounts.join(', ')}`);
}

/** Polls until the engine's monitors are gone; returns those still there after `timeoutMs`. */
async function monitorsGone(e: Engine, timeoutMs = 5000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await e.monitors();
    if (!left.length || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function round(c: Contender, e: Engine, dir: string, n: number, trueRuns: number, roundNo: number, scratch: string): Promise<Omit<Run, 'contender' | 'round'>> {
  const time = async (cmd: Cmd, what: string): Promise<Measured> => {
    const m = await timed(cmd, scratch);
    if (m.code !== 0) throw failed(what, m);
    return m;
  };
  await untimed(e.pull());
  // The tmpfs itself; anything else mounted below it now (nothing, for both) may stay.
  const imageMounts = (await mountsUnder(dir)).length;

  // 1. run --rm true. First, untimed, `false`: its exit code must come back, so the 0s below mean `true` ran.
  //    A run that exits with the wrong code is a wrong result: never timed, counted in wrongExits, reported.
  const wrongExits: WrongExit[] = [];
  const wrong = (cmd: string, want: number, m: Measured): void => {
    wrongExits.push({ cmd, expected: want, code: m.code, signal: m.signal, stderr: m.stderrTail.trim().split('\n').slice(-3).join(' | ') });
  };
  for (let i = 1; ; i++) {
    const m = await timed(e.runRm(`f${roundNo}-${i}`, 'false'), scratch);
    if (m.code === 1) break;
    wrong('run --rm IMAGE false', 1, m);
    if (i === 3) throw new Error(`${c}: run --rm IMAGE false never exited with 1 in 3 tries: ${wrongExits.map((w) => w.code).join(', ')}`);
  }
  const trueMs: number[] = [];
  for (let i = 1; i <= trueRuns; i++) {
    const m = await timed(e.runRm(`t${roundNo}-${i}`, 'true'), scratch);
    if (m.code === 0) trueMs.push(m.wallMs);
    else wrong('run --rm IMAGE true', 0, m);
  }
  if (!trueMs.length) throw new Error(`${c}: no run --rm IMAGE true exited with 0 (${wrongExits.map((w) => w.code).join(', ')})`);
  await checkEmpty(e, c, dir, imageMounts, 'run --rm');

  // 2a. Start N, one after the other, as a script would.
  const want = names(n);
  const daemonBefore = e.daemonPid === undefined ? undefined : await vmRSSKiB(e.daemonPid);
  const startMs: number[] = [];
  const cliPeakRssKiB: number[] = [];
  for (const name of want) {
    const m = await time(e.runDetached(name), `${c} run -d ${name}`);
    startMs.push(m.wallMs);
    cliPeakRssKiB.push(m.peakRssKiB);
  }
  const { all, running } = await e.listed();
  if (!sameSet(running, want) || !sameSet(all, want)) throw new Error(`${c}: after ${n} run -d, ${running.length} running (${running.join(' ')}), ${all.length} listed; expected ${want.join(' ')}`);

  // 3. Memory, while the N run.
  const pids = await e.monitors();
  const mems = (await Promise.all(pids.map(memoryOf))).filter((m) => m !== undefined);
  if (mems.length < n) throw new Error(`${c}: ${n} containers run but only ${mems.length} ${e.monitor} process(es) were found`);
  const memory: Memory = {
    processes: mems.length,
    rssKiB: mems.reduce((s, m) => s + m.rssKiB, 0),
    pssKiB: mems.reduce((s, m) => s + m.pssKiB, 0),
  };
  if (e.daemonPid !== undefined && daemonBefore !== undefined) {
    const after = await vmRSSKiB(e.daemonPid);
    memory.daemonRssKiB = after;
    memory.daemonGrowthKiB = after - daemonBefore;
  }

  // 2b. Stop and remove all N.
  let removeMs = 0;
  for (const cmd of e.removeAll(want)) removeMs += (await time(cmd, `${c} remove ${n} containers`)).wallMs;
  await checkEmpty(e, c, dir, imageMounts, `removing ${n}`);

  return { trueMs, wrongExits, startMs, removeMs, cliPeakRssKiB, memory };
}

// ---- report ----

interface Stat {
  samples: number;
  median: number;
  min: number;
  max: number;
}

const stat = (xs: number[]): Stat => ({ samples: xs.length, median: median(xs), min: min(xs), max: max(xs) });

interface Summary {
  contender: Contender;
  rounds: number;
  error?: string;
  trueMs: Stat;
  /** Runs of `run --rm` (true, false) that exited with the wrong code. */
  wrongExits: WrongExit[];
  startMs: Stat;
  removeMs: Stat;
  cliPeakRssMB: number;
  monitorProcessesPerContainer: number;
  monitorRssMBPerContainer: number;
  monitorPssMBPerContainer: number;
  daemonGrowthMBPerContainer?: number;
  daemonRssMB?: number;
}

function summarize(c: Contender, runs: Run[], n: number, error: string | undefined): Summary {
  const mine = runs.filter((r) => r.contender === c);
  const per = (f: (m: Memory) => number | undefined): number => median(mine.map((r) => f(r.memory)).filter((x): x is number => x !== undefined));
  const growth = per((m) => m.daemonGrowthKiB);
  const daemonRss = per((m) => m.daemonRssKiB);
  return {
    contender: c,
    rounds: mine.length,
    ...(error ? { error } : {}),
    trueMs: stat(mine.flatMap((r) => r.trueMs)),
    wrongExits: mine.flatMap((r) => r.wrongExits),
    startMs: stat(mine.map((r) => r.startMs.reduce((a, b) => a + b, 0))),
    removeMs: stat(mine.map((r) => r.removeMs)),
    cliPeakRssMB: kibToMB(median(mine.flatMap((r) => r.cliPeakRssKiB))),
    monitorProcessesPerContainer: per((m) => m.processes) / n,
    monitorRssMBPerContainer: kibToMB(per((m) => m.rssKiB) / n),
    monitorPssMBPerContainer: kibToMB(per((m) => m.pssKiB) / n),
    ...(Number.isNaN(growth) ? {} : { daemonGrowthMBPerContainer: kibToMB(growth / n), daemonRssMB: kibToMB(daemonRss) }),
  };
}

interface Target {
  name: string;
  limit: string;
  value: number | undefined;
  pass: boolean | undefined;
}

function targets(s: Map<Contender, Summary>, n: number): Target[] {
  const ok = (c: Contender): Summary | undefined => {
    const x = s.get(c);
    return x && !x.error && x.rounds > 0 ? x : undefined;
  };
  // The targets are berth's as users run it on a host with the daemon; berth without one is information (the report's table).
  const berth = ok('berthd');
  const ctr = ok('ctr');
  const ratio = (f: (x: Summary) => Stat): number | undefined => (berth && ctr ? f(berth).median / f(ctr).median : undefined);
  return [
    ['berthd / ctr  run --rm true', ratio((x) => x.trueMs)],
    [`berthd / ctr  start ${n}`, ratio((x) => x.startMs)],
    [`berthd / ctr  stop+rm ${n}`, ratio((x) => x.removeMs)],
  ].map(([name, value]) => ({
    name: name as string,
    limit: `<= ${TARGET_RATIO.toFixed(1)}x`,
    value: value as number | undefined,
    pass: value === undefined ? undefined : (value as number) <= TARGET_RATIO,
  }));
}

interface Machine {
  cpus: number;
  loadBefore: number;
  loadAfter: number;
}

function report(opts: Options, machine: Machine, summaries: Summary[], tgs: Target[]): string {
  const n = opts.containers;
  const f = (x: number | undefined, d = 2): string => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));
  const head = [
    `run benchmark: busybox image (1 layer, ~1 MiB) from docker-registry on 127.0.0.1; ${opts.rounds} round(s), interleaved ${CONTENDERS.join(' -> ')}`,
    '  each round on a fresh tmpfs (berth --root/--state; containerd root/state, a new containerd per round); image pulled and unpacked before timing',
    '  wall time = spawn to exit of the CLI process:',
    '    berthd: the berth process only, a thin client (node start + one module) of a running berth daemon, whose startup is not timed;',
    '            the daemon does metadata + snapshot + bundle/spec + conmon/runc create + runc start (+ wait, delete, snapshot removal)',
    '    ctr:    the ctr process only; containerd is already running, its startup is not timed',
    '    berth:  no daemon: node start + module loading + opening the store + all the daemon does above, in the one process',
    `  1. run --rm IMAGE true, ${opts.trueRuns} per round (after an untimed run of false, checked to exit 1)`,
    `  2. start: ${n} x "run -d ... sleep 1000" one after another (berth run -d --name cN; ctr run -d IMAGE cN); sum of the ${n} wall times`,
    `     stop+rm: berth rm -f c1..c${n} (one command)  vs  ctr task rm -f c1..c${n} + ctr container rm c1..c${n} (two commands, summed):`,
    '     both SIGKILL, wait for the exit, delete the runtime state, remove snapshot and metadata',
    '     (ctr run -d gives the container no log; berth run -d logs through conmon to a file)',
    `  1-min load average ${machine.loadBefore.toFixed(2)} before, ${machine.loadAfter.toFixed(2)} after, on ${machine.cpus} CPUs`,
    '',
  ];
  const rows = [['measurement', 'contender', 'samples', 'median', 'min', 'max', '/ ctr']];
  const ratioOf = (s: Summary, g: (x: Summary) => Stat): string => {
    const c = summaries.find((x) => x.contender === 'ctr' && !x.error);
    return s.contender !== 'ctr' && !s.error && c ? `${(g(s).median / g(c).median).toFixed(2)}x` : '';
  };
  const block = (label: string, unit: 'ms' | 's', g: (x: Summary) => Stat): void => {
    const [scale, d] = unit === 'ms' ? [1, 0] : [1000, 2];
    summaries.forEach((s, i) => {
      const st = g(s);
      rows.push([i === 0 ? `${label} (${unit})` : '', s.contender, String(st.samples), f(st.median / scale, d), f(st.min / scale, d), f(st.max / scale, d), ratioOf(s, g)]);
    });
  };
  block('run --rm true', 'ms', (s) => s.trueMs);
  block(`start ${n}`, 's', (s) => s.startMs);
  block(`stop+rm ${n}`, 's', (s) => s.removeMs);

  const mrows = [
    ['contender', 'monitor', 'procs/container', 'RSS MB/container', 'PSS MB/container', 'daemon growth MB/container', 'daemon RSS MB', 'CLI peak RSS MB (run -d)'],
    ...summaries.map((s) => [
      s.contender,
      s.contender === 'ctr' ? 'containerd-shim-runc-v2' : 'conmon',
      f(s.monitorProcessesPerContainer),
      f(s.monitorRssMBPerContainer),
      f(s.monitorPssMBPerContainer),
      s.daemonGrowthMBPerContainer === undefined ? '- (no daemon)' : f(s.daemonGrowthMBPerContainer),
      s.daemonRssMB === undefined ? '-' : `${f(s.daemonRssMB, 1)} (${s.contender === 'ctr' ? 'containerd' : 'berth daemon'})`,
      f(s.cliPeakRssMB, 1),
    ]),
  ];
  const failures = [
    ...summaries.filter((s) => s.wrongExits.length).map((s) => {
      const codes = [...new Set(s.wrongExits.map((w) => `${w.cmd} exited ${w.signal ?? w.code} (expected ${w.expected})`))];
      return `  ${s.contender}: ${s.wrongExits.length} run(s) exited with the wrong code, not timed: ${codes.join('; ')}`;
    }),
    ...summaries.filter((s) => s.error).map((s) => `  ${s.contender} FAILED: ${s.error!.split('\n').filter((l) => l.trim()).slice(0, 2).join(' | ')}`),
  ];
  const trows = [['target', 'limit', 'value', 'result'], ...tgs.map((t) => [t.name, t.limit, t.value === undefined ? '-' : `${t.value.toFixed(2)}x`, t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : 'FAIL'])];
  return [
    ...head,
    pad(rows),
    '',
    `memory while ${n} containers run (medians over rounds):`,
    pad(mrows),
    '  RSS counts shared pages (binary, libc) once per process; PSS divides them among the processes sharing them.',
    `  daemon growth = the daemon's (containerd's, berth daemon's) VmRSS with ${n} running minus before the first start, / ${n}.`,
    ...(failures.length ? ['', ...failures] : []),
    '',
    pad(trows),
    '',
  ].join('\n');
}

// ---- main ----

async function main(): Promise<number> {
  const opts = options();
  preflight();
  const cleanup = new Cleanup();
  cleanup.onSignals(killMeasured);
  try {
    const { scratch, ref, digest } = await busyboxRegistry(cleanup, 'run', REPO, TAG);

    const runs: Run[] = [];
    const errors = new Map<Contender, string>();
    const loadBefore = loadavg()[0]!;
    for (let r = 1; r <= opts.rounds; r++) {
      for (const c of CONTENDERS) {
        if (errors.has(c)) continue;
        if (cleanup.closed) throw new Error('interrupted');
        const undo: Array<() => Promise<void>> = [];
        try {
          const fs = await mountTmpfs(FS_BYTES, `run-${c}-${r}-`, scratch);
          undo.push(cleanup.defer(`unmount ${fs.path}`, () => fs.unmount()));
          let engine: Engine;
          if (c === 'berth') {
            engine = berthEngine(fs.path, ref);
          } else if (c === 'berthd') {
            const d = await startBerthDaemon(fs.path);
            undo.push(cleanup.defer('stop berth daemon', () => d.stop()));
            engine = berthEngine(fs.path, ref, d);
          } else {
            const cd = await startContainerd(join(fs.path, 'containerd'));
            undo.push(cleanup.defer('stop containerd', () => cd.stop()));
            engine = ctrEngine(cd, `berth-bench-${process.pid}-${r}`, ref);
          }
          undo.push(cleanup.defer(`tear down ${c}'s containers`, () => engine.teardown()));
          const res = await round(c, engine, fs.path, opts.containers, opts.trueRuns, r, scratch);
          runs.push({ contender: c, round: r, ...res });
          const sum = res.startMs.reduce((a, b) => a + b, 0);
          for (const w of res.wrongExits) console.error(`round ${r} ${c.padEnd(5)} ${w.cmd} exited ${w.signal ?? w.code}, expected ${w.expected} (not timed)${w.stderr ? `: ${w.stderr}` : ''}`);
          console.error(
            `round ${r} ${c.padEnd(5)} run --rm true median ${median(res.trueMs).toFixed(0)} ms; start ${opts.containers} ${(sum / 1000).toFixed(2)} s; ` +
              `stop+rm ${(res.removeMs / 1000).toFixed(2)} s; ${res.memory.processes} ${engine.monitor} RSS ${kibToMB(res.memory.rssKiB).toFixed(1)} MB`,
          );
        } catch (err) {
          if (cleanup.closed) throw new Error('interrupted');
          errors.set(c, (err as Error).message);
          console.error(`round ${r} ${c.padEnd(5)} FAILED (no further ${c} runs): ${(err as Error).message}`);
        } finally {
          // Once a signal started the cleanup stack, it tears down in order (containers before their tmpfs); racing it would not.
          if (!cleanup.closed) for (const u of undo.reverse()) await u().catch((err: Error) => console.error(`cleanup: ${err.message}`));
        }
      }
    }

    const summaries = CONTENDERS.map((c) => summarize(c, runs, opts.containers, errors.get(c)));
    const tgs = targets(new Map(summaries.map((s) => [s.contender, s])), opts.containers);
    const machine: Machine = { cpus: cpus().length, loadBefore, loadAfter: loadavg()[0]! };
    process.stdout.write(report(opts, machine, summaries, tgs));
    if (opts.json) {
      const doc = { benchmark: 'run', date: new Date().toISOString(), options: opts, image: { ref, manifest: digest }, machine, runs, summaries, targets: tgs };
      await writeFile(opts.json, JSON.stringify(doc, null, 2) + '\n');
    }
    return errors.size || runs.some((r) => r.wrongExits.length) ? 1 : 0;
  } finally {
    await cleanup.run();
  }
}

runBench('run', main);
