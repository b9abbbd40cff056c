/**
 * Reconcile benchmark (issue 5): how fast berth says "nothing to do", and
 * how fast the daemon turns a manifest edit into a running container.
 *
 *   npm run bench:reconcile -- [--rounds 3] [--containers 100] [--runs 5] [--edits 5] [--json FILE]
 *
 * A busybox image built in code is pushed to Debian's docker-registry on
 * 127.0.0.1; manifests name it as 127.0.0.1:PORT/..., pullPolicy
 * IfNotPresent, so no timed command needs the network. Each round, each
 * phase on a fresh tmpfs holding --root, --state and the manifests:
 *
 * 1. plan with nothing to do. Manifests: --containers Container documents,
 *    10 per file, each `sleep 100000` under a TERM trap. Timed, spawn to
 *    exit, --runs times each:
 *      `node -e 0`                the anchor: process start alone
 *      `berth validate -f DIR`    + module loading, manifest parse, schema validation (no store)
 *      `berth plan -f DIR`        on an empty store (exit 2: all to pull): + system and LMDB open
 *    then (untimed) `berth apply -f DIR`, checked: exit 0 and every
 *    container running in `berth ps -o json`; then, timed:
 *      `berth plan -f DIR`        converged: + observing the containers (exit 0 each time, checked)
 *    Round 1 also runs that last plan once under `node --cpu-prof` and once
 *    under `strace -f -c`, for where its time goes.
 * 2. edit to running, with `berth daemon -f DIR` watching one manifest of
 *    one container (`trap 'exit 0' TERM; while :; do sleep 0.1; done`, env
 *    EDIT). First, before the daemon starts, the container's own costs are
 *    measured in-process (ContainerService from src/, modules loaded, so no
 *    process start): create, start (conmon + runc create + runc start),
 *    stop + remove, --edits times. Then per edit (the value alternates):
 *    the file is written under a temporary name and renamed into place, as
 *    editors do; the bench waits, without polling berth (which would take
 *    the CPU from the daemon on a small machine), for the new container's
 *    first output in its log, then checks with `berth ps -o json` that a new
 *    container runs. Reported, from the rename: the daemon noticed (its
 *    debug log), berth recorded the new container running (its startedAt,
 *    set just after `runc start` returned), the container printed its first
 *    line (conmon's timestamp), the bench saw it confirmed in `berth ps`.
 *
 * Targets: plan (converged) median under 300 ms; edit to running median
 * under 1 s plus the container's own start (the in-process start median
 * from above; berth's create, and stopping the old one, are in the 1 s). Misses are reported, not an exit code: exit 1 means a command
 * failed or a check did not hold. Needs root, runc, conmon, time,
 * docker-registry, strace. Run it under the bench lock: test/bench/reconcile/run.sh.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, watch } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openTestSystem } from '../../helpers/berth.js';
import { berthCommand, berthMain } from '../../helpers/berth.js';
import { busyboxRegistry } from '../common/busybox.js';
import { Cleanup } from '../common/cleanup.js';
import { GNU_TIME, killMeasured, measure, type Measured } from '../common/measure.js';
import { processesOf } from '../common/procs.js';
import { benchArgs, failed, pad, positiveInt, runBench } from '../common/report.js';
import { max, median, min } from '../common/stats.js';
import { mountTmpfs } from '../common/tmpfs.js';
import { summarizeProfile, type ProfileSummary } from './profile.js';

const REPO = 'bench/busybox';
const TAG = '1';
const PER_FILE = 10;
const PLAN_TARGET_MS = 300;
const EDIT_TARGET_MS = 1000;
const FS_BYTES = 1 << 30;
const EDIT_TIMEOUT_MS = 30_000;
const PROFILE_INTERVAL_US = 250;
const RUNC = '/usr/sbin/runc';
const CONMON = '/usr/bin/conmon';
const STRACE = '/usr/bin/strace';
const execFileP = promisify(execFile);

interface Options {
  rounds: number;
  containers: number;
  runs: number;
  edits: number;
  json: string | undefined;
}

function options(): Options {
  const { values, usage } = benchArgs('node dist/test/bench/reconcile/run.js [--rounds N] [--containers N] [--runs N] [--edits N] [--json FILE]', {
    rounds: { type: 'string' },
    containers: { type: 'string' },
    runs: { type: 'string' },
    edits: { type: 'string' },
    json: { type: 'string' },
  });
  return {
    rounds: positiveInt(values.rounds, 'rounds', 3, usage),
    containers: positiveInt(values.containers, 'containers', 100, usage),
    runs: positiveInt(values.runs, 'runs', 5, usage),
    edits: positiveInt(values.edits, 'edits', 5, usage),
    json: values.json,
  };
}

function preflight(): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (mount, runc)');
  for (const f of [GNU_TIME, '/usr/bin/docker-registry', berthMain, RUNC, CONMON, STRACE]) if (!existsSync(f)) missing.push(f);
  if (missing.length) throw new Error(`cannot run: missing ${missing.join(', ')} (Debian packages: time, docker-registry, runc, conmon, strace; berth: npx tsc -p .)`);
}

// ---- berth on one tmpfs ----

/** berth with --root and --state on one round's tmpfs (the layout openTestSystem uses: lib/ and run/). */
class Berth {
  constructor(readonly dir: string) {}

  get root(): string {
    return join(this.dir, 'lib');
  }

  args(...args: string[]): string[] {
    return ['--root', this.root, '--state', join(this.dir, 'run'), ...args];
  }

  /** Runs to completion, untimed; stdout, or an error naming the command and its stderr. */
  async run(...args: string[]): Promise<string> {
    try {
      return (await execFileP(berthCommand, this.args(...args), { maxBuffer: 64 << 20 })).stdout;
    } catch (err) {
      const e = err as Error & { stderr?: string; code?: number };
      throw new Error(`berth ${args.join(' ')} exited ${e.code}: ${(e.stderr ?? '').trim().split('\n').slice(-5).join(' | ') || e.message}`);
    }
  }

  async ps(): Promise<View[]> {
    return JSON.parse(await this.run('-o', 'json', 'ps')) as View[];
  }

  /** Best effort, for a failed round: every container's runtime state and monitor gone, before the tmpfs is unmounted. */
  async teardown(): Promise<void> {
    const runcRoot = join(this.dir, 'run', 'runc');
    for (const id of await readdir(runcRoot).catch(() => [] as string[])) await execFileP(RUNC, ['--root', runcRoot, 'delete', '--force', id]).catch(() => {});
    for (const pid of await processesOf('conmon', this.dir)) process.kill(pid, 'SIGKILL');
  }
}

interface View {
  name: string;
  id: string;
  state: string;
  startedAt?: string;
  restarts: number;
}

type Timed = (file: string, args: string[], what: string, code: number) => Promise<number>;

// ---- phase 1: plan with nothing to do ----

function containerDoc(name: string, ref: string, command: string, env?: Record<string, string>): string {
  return [
    'apiVersion: berth/v1',
    'kind: Container',
    `metadata: { name: ${name} }`,
    'spec:',
    `  image: ${ref}`,
    '  pullPolicy: IfNotPresent',
    `  command: ["/bin/sh", "-c", ${JSON.stringify(command)}]`,
    ...(env ? [`  env: ${JSON.stringify(env)}`] : []),
    '',
  ].join('\n');
}

async function writeManyManifests(dir: string, ref: string, n: number): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const names = Array.from({ length: n }, (_, i) => `c${String(i).padStart(3, '0')}`);
  for (let f = 0; f * PER_FILE < n; f++) {
    const docs = names.slice(f * PER_FILE, (f + 1) * PER_FILE).map((name) => containerDoc(name, ref, "trap 'exit 0' TERM; sleep 100000 & wait"));
    await writeFile(join(dir, `containers-${String(f).padStart(2, '0')}.yaml`), docs.join('---\n'));
  }
  return names;
}

interface PlanRound {
  nodeMs: number[];
  validateMs: number[];
  planEmptyMs: number[];
  planMs: number[];
  planPeakRssKiB: number[];
  applyMs: number;
}

async function planRound(b: Berth, ref: string, n: number, runs: number, timed: Timed, timedM: (file: string, args: string[]) => Promise<Measured>): Promise<PlanRound & { dir: string }> {
  const dir = join(b.dir, 'manifests');
  const names = await writeManyManifests(dir, ref, n);
  const node = process.execPath;
  const repeat = async (f: () => Promise<number>): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < runs; i++) out.push(await f());
    return out;
  };
  const nodeMs = await repeat(() => timed(node, ['-e', '0'], 'node -e 0', 0));
  const validateMs = await repeat(() => timed(berthCommand, b.args('validate', '-f', dir), 'berth validate', 0));
  // The first command on an empty root creates the store: untimed, so every timed run opens an existing one.
  await timed(berthCommand, b.args('plan', '-f', dir), 'berth plan (empty store, first)', 2);
  const planEmptyMs = await repeat(() => timed(berthCommand, b.args('plan', '-f', dir), 'berth plan (empty store)', 2));

  const t = process.hrtime.bigint();
  await b.run('apply', '-f', dir);
  const applyMs = Number(process.hrtime.bigint() - t) / 1e6;
  const views = await b.ps();
  const running = new Set(views.filter((v) => v.state === 'running').map((v) => v.name));
  const missing = names.filter((x) => !running.has(x));
  if (missing.length || views.length !== n) throw new Error(`after apply: ${running.size} of ${n} running, ${views.length} listed; not running: ${missing.slice(0, 10).join(' ')}`);

  const planMs: number[] = [];
  const planPeakRssKiB: number[] = [];
  for (let i = 0; i < runs; i++) {
    const m = await timedM(berthCommand, b.args('plan', '-f', dir));
    if (m.code !== 0) throw failed('berth plan (converged; expected exit 0, nothing to do)', m);
    planMs.push(m.wallMs);
    planPeakRssKiB.push(m.peakRssKiB);
  }
  return { dir, nodeMs, validateMs, planEmptyMs, planMs, planPeakRssKiB, applyMs };
}

interface PlanProfile {
  wallMs: number;
  /** Spawn to the profiler's start: node's own bootstrap. */
  beforeProfileMs: number;
  summary: ProfileSummary;
  /** strace -f -c of another run: the most frequent syscalls. */
  syscalls: Array<{ name: string; calls: number }>;
  syscallsTotal: number;
}

async function profilePlan(b: Berth, dir: string, scratch: string): Promise<PlanProfile> {
  const profDir = await mkdtemp(join(scratch, 'prof-'));
  const start = process.hrtime.bigint();
  // Unbundled main.js, so the profile names modules; node's flags need node on the command line, and the environment is made as the command's first line makes it.
  const { NODE_EXTRA_CA_CERTS: extraCA, ...rest } = process.env;
  const env = { ...rest, BERTH_EXTRA_CA_CERTS: extraCA ?? '' };
  const m = await measure(process.execPath, ['--cpu-prof', '--cpu-prof-dir', profDir, '--cpu-prof-interval', String(PROFILE_INTERVAL_US), berthMain, ...b.args('plan', '-f', dir)], { scratchDir: scratch, env });
  if (m.code !== 0) throw failed('berth plan under --cpu-prof', m);
  const file = (await readdir(profDir)).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`node --cpu-prof wrote no profile in ${profDir}`);
  const summary = await summarizeProfile(join(profDir, file), PROFILE_INTERVAL_US);

  const out = join(scratch, 'strace.txt');
  await execFileP(STRACE, ['-f', '-c', '-o', out, berthCommand, ...b.args('plan', '-f', dir)]).catch((err: Error & { code?: number }) => {
    if (err.code !== 0) throw new Error(`strace -f -c berth plan failed: ${err.message}`);
  });
  const rows = (await readFile(out, 'utf8')).split('\n').map((l) => l.trim().split(/\s+/));
  // Columns: % time, seconds, usecs/call, calls, [errors], syscall; the total line ends with "total".
  const syscalls = rows
    .filter((r) => r.length >= 5 && /^\d/.test(r[0]!) && r.at(-1) !== 'total')
    .map((r) => ({ name: r.at(-1)!, calls: Number(r[3]) }))
    .sort((a, b) => b.calls - a.calls);
  const total = rows.find((r) => r.at(-1) === 'total');
  return { wallMs: m.wallMs, beforeProfileMs: summary.startUs / 1000 - Number(start) / 1e6, summary, syscalls: syscalls.slice(0, 10), syscallsTotal: total ? Number(total[3]) : NaN };
}

// ---- phase 2: edit to running ----

const EDIT_COMMAND = "echo started $EDIT; trap 'exit 0' TERM; while :; do sleep 0.1; done";
const EDIT_NAME = 'edited';

interface OwnCosts {
  createMs: number[];
  startMs: number[];
  stopRemoveMs: number[];
}

/** The container's own create, start and stop+remove, in-process: no process start, no daemon. */
async function ownCosts(b: Berth, ref: string, n: number): Promise<OwnCosts> {
  const { sys } = await openTestSystem(b.dir);
  const ms = (t: bigint): number => Number(process.hrtime.bigint() - t) / 1e6;
  try {
    const svc = await sys.containers();
    const out: OwnCosts = { createMs: [], startMs: [], stopRemoveMs: [] };
    for (let i = 0; i < n; i++) {
      const name = `probe${i}`;
      let t = process.hrtime.bigint();
      await svc.create({ name, image: ref, config: { command: ['/bin/sh', '-c', EDIT_COMMAND], env: { EDIT: 'probe' } } });
      out.createMs.push(ms(t));
      t = process.hrtime.bigint();
      await svc.start(name);
      out.startMs.push(ms(t));
      if ((await svc.get(name)).state !== 'running') throw new Error(`${name}: not running after start`);
      t = process.hrtime.bigint();
      await svc.stop(name, 5000);
      await svc.remove(name, { force: true });
      out.stopRemoveMs.push(ms(t));
    }
    return out;
  } finally {
    await sys.close();
  }
}

interface DaemonLog {
  t: number;
  msg: string;
  fields: Record<string, unknown>;
}

interface Edit {
  /** ms after the rename, each; undefined when not seen. */
  noticedMs?: number;
  /** The old container's exit file written (conmon), its bundle removed; the new bundle made, runc's state for it made. */
  oldExitedMs?: number;
  oldRemovedMs?: number;
  newBundleMs?: number;
  runcCreateMs?: number;
  reconciledMs?: number;
  /** The reconcile's own duration, as the daemon logged it. */
  reconcileMs?: number;
  runningMs: number;
  outputMs?: number;
  confirmedMs: number;
  /** The daemon's log lines from the rename until the confirmation: ms after the rename, message, a few fields. */
  daemonLog: string[];
}

/** An entry appearing in or leaving a watched directory, when the bench heard of it (inotify). */
interface Sighting {
  t: number;
  dir: string;
  name: string;
  exists: boolean;
}

/**
 * Watches the directories a replacement passes through, to time its steps
 * from outside the daemon without polling: the old container's exit file
 * (state/exits), its bundle going and the new one's coming (root/bundles),
 * runc's state directory for the new one (state/runc, made by runc create).
 */
function watchSteps(dirs: Record<string, string>): { sightings: Sighting[]; close(): void } {
  const sightings: Sighting[] = [];
  const watchers = Object.entries(dirs).map(([dir, path]) =>
    watch(path, (_type, name) => {
      if (name) sightings.push({ t: performance.timeOrigin + performance.now(), dir, name, exists: existsSync(join(path, name)) });
    }),
  );
  return { sightings, close: () => watchers.forEach((w) => w.close()) };
}

/** A log record's fields, short: what names the step, not every detail. */
function brief(fields: Record<string, unknown>): string {
  return Object.entries(fields)
    .filter(([k]) => k !== 'module')
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ')
    .slice(0, 140);
}

/** The time in a CRI log line (conmon): "2024-01-01T00:00:00.123456789+00:00 stdout F text". */
function logLineTime(line: string): number {
  return Date.parse(line.slice(0, line.indexOf(' ')).replace(/(\.\d{3})\d+/, '$1'));
}

/**
 * Resolves with the time of the first log line of a container printing
 * `marker`, watching the log directory (inotify) rather than polling.
 */
function firstOutput(logDir: string, marker: string, timeoutMs: number): { seen: Promise<number>; cancel(): void } {
  const checked = new Map<string, number>();
  let cancel = (): void => {};
  const seen = new Promise<number>((resolve, reject) => {
    let busy = false;
    let again = false;
    const check = async (): Promise<void> => {
      if (busy) return void (again = true);
      busy = true;
      try {
        do {
          again = false;
          for (const f of await readdir(logDir).catch(() => [] as string[])) {
            const text = await readFile(join(logDir, f), 'utf8').catch(() => '');
            if (text.length === checked.get(f)) continue;
            checked.set(f, text.length);
            const line = text.split('\n').find((l) => l.endsWith(` ${marker}`));
            if (line) return done(undefined, logLineTime(line));
          }
        } while (again);
      } finally {
        busy = false;
      }
    };
    const watcher = watch(logDir, () => void check());
    const timer = setTimeout(() => done(new Error(`no container printed "${marker}" within ${timeoutMs} ms`)), timeoutMs);
    const done = (err: Error | undefined, t?: number): void => {
      watcher.close();
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(t!);
    };
    cancel = () => done(new Error('cancelled'));
    void check();
  });
  return { seen, cancel };
}

async function editRound(b: Berth, ref: string, edits: number, cleanup: Cleanup): Promise<{ own: OwnCosts; edits: Edit[] }> {
  await b.run('image', 'pull', ref);
  const own = await ownCosts(b, ref, edits);

  const dir = join(b.dir, 'manifests');
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'edited.yaml');
  const write = async (value: string): Promise<void> => {
    // Written beside it under a name the watcher ignores, then renamed over it: one event, a whole file.
    const tmp = join(dir, '.edited.yaml.tmp');
    await writeFile(tmp, containerDoc(EDIT_NAME, ref, EDIT_COMMAND, { EDIT: value }));
    await rename(tmp, file);
  };
  await write('a0');
  const logDir = join(b.root, 'logs');
  await mkdir(logDir, { recursive: true });

  const logs: DaemonLog[] = [];
  const daemon: ChildProcess = spawn(berthCommand, b.args('-o', 'json', '--log-level', 'debug', 'daemon', '-f', dir), { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((r) => daemon.once('exit', () => r()));
  const stopDaemon = cleanup.defer('stop the daemon', async () => {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
  });
  let rest = '';
  let stderrTail = '';
  daemon.stderr!.on('data', (d: Buffer) => {
    const lines = (rest + d.toString()).split('\n');
    rest = lines.pop()!;
    for (const l of lines) {
      stderrTail = (stderrTail + l + '\n').slice(-4000);
      try {
        // -o json: one object a line, the record's fields beside time, level and msg.
        const { time, level: _level, msg, ...fields } = JSON.parse(l) as { time: string; level: string; msg: string } & Record<string, unknown>;
        logs.push({ t: Date.parse(time), msg, fields });
      } catch {
        // not a log record
      }
    }
  });
  const current = async (): Promise<View | undefined> => (await b.ps()).find((v) => v.name === EDIT_NAME);
  const steps = watchSteps({ exits: join(b.dir, 'run', 'exits'), bundles: join(b.root, 'bundles'), runc: join(b.dir, 'run', 'runc') });
  try {
    const first = firstOutput(logDir, 'started a0', EDIT_TIMEOUT_MS);
    await first.seen.catch((err: Error) => {
      throw new Error(`the daemon did not start ${EDIT_NAME}: ${err.message}; daemon stderr: ${stderrTail.slice(-800)}`);
    });
    let view = await current();
    if (view?.state !== 'running') throw new Error(`${EDIT_NAME} printed but is ${view?.state ?? 'not listed'}`);

    const out: Edit[] = [];
    for (let i = 1; i <= edits; i++) {
      // Let the previous run's tail (event flush, the supervisor noticing the old exit) pass first.
      await new Promise((r) => setTimeout(r, 1000));
      const value = `${i % 2 ? 'b' : 'a'}${i}`;
      const output = firstOutput(logDir, `started ${value}`, EDIT_TIMEOUT_MS);
      const oldId: string = view!.id;
      output.seen.catch(() => {}); // awaited below; a failed write must not leave it unhandled
      const t0 = performance.timeOrigin + performance.now();
      let printedAt: number;
      try {
        await write(value);
        printedAt = await output.seen.catch((err: Error) => {
          throw new Error(`edit ${i} (EDIT=${value}): ${err.message}; daemon stderr: ${stderrTail.slice(-800)}`);
        });
      } finally {
        output.cancel();
      }
      // berth records running just before (or about when) the process prints; one ps, then a few more if need be.
      const deadline = Date.now() + 5000;
      for (view = await current(); view?.id === oldId || view?.state !== 'running'; view = await current()) {
        if (Date.now() > deadline) throw new Error(`edit ${i}: the new container printed but berth ps shows ${EDIT_NAME} ${view?.id ?? '-'} ${view?.state ?? 'not listed'} (old id ${oldId})`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const confirmedMs = performance.timeOrigin + performance.now() - t0;
      if (!view.startedAt) throw new Error(`edit ${i}: berth ps shows no startedAt for the running ${EDIT_NAME}`);
      const after = logs.filter((l) => l.t >= Math.floor(t0));
      const noticed = after.find((l) => l.msg === 'manifest changed');
      const reconciled = after.find((l) => l.msg === 'reconciled' && (l.fields.changes as number) > 0);
      const step = (key: keyof Edit, dir: string, name: string, exists: boolean): Partial<Edit> => {
        const x = steps.sightings.find((e) => e.t >= t0 && e.dir === dir && e.name === name && e.exists === exists);
        return x ? { [key]: x.t - t0 } : {};
      };
      out.push({
        ...(noticed ? { noticedMs: noticed.t - t0 } : {}),
        ...step('oldExitedMs', 'exits', oldId, true),
        ...step('oldRemovedMs', 'bundles', oldId, false),
        ...step('newBundleMs', 'bundles', view.id, true),
        ...step('runcCreateMs', 'runc', view.id, true),
        ...(reconciled ? { reconciledMs: reconciled.t - t0, reconcileMs: reconciled.fields.durationMs as number } : {}),
        runningMs: Date.parse(view.startedAt) - t0,
        outputMs: printedAt - t0,
        confirmedMs,
        daemonLog: after.filter((l) => l.t - t0 <= confirmedMs).map((l) => `${String(Math.round(l.t - t0)).padStart(5)} ms  ${l.msg} ${brief(l.fields)}`),
      });
    }
    return { own, edits: out };
  } finally {
    steps.close();
    await stopDaemon();
    // The daemon leaves containers running by design; remove ours before the tmpfs goes.
    await b.run('rm', '-f', EDIT_NAME).catch(() => '');
  }
}

// ---- report ----

interface Stat {
  samples: number;
  median: number;
  min: number;
  max: number;
}

const stat = (xs: number[]): Stat => ({ samples: xs.length, median: median(xs), min: min(xs), max: max(xs) });

interface Results {
  plan: PlanRound[];
  profile?: PlanProfile;
  own: OwnCosts[];
  edits: Edit[];
  errors: string[];
}

function report(opts: Options, r: Results, machine: { cpus: number; loadBefore: number; loadAfter: number }): { text: string; targets: Array<{ name: string; limit: string; value?: number; pass?: boolean }> } {
  const f = (x: number | undefined, d = 0): string => (x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));
  const rows = [['measurement', 'samples', 'median', 'min', 'max']];
  const line = (label: string, xs: number[]): Stat => {
    const s = stat(xs);
    rows.push([label, String(s.samples), f(s.median), f(s.min), f(s.max)]);
    return s;
  };
  const all = <K extends keyof PlanRound>(k: K): number[] => r.plan.flatMap((p) => p[k] as number[]);
  const n = opts.containers;
  line('node -e 0 (process start)', all('nodeMs'));
  line(`berth validate, ${n} manifests`, all('validateMs'));
  line('berth plan, empty store (exit 2)', all('planEmptyMs'));
  const plan = line(`berth plan, ${n} running (exit 0)`, all('planMs'));
  const own = {
    create: line('own: create (in-process)', r.own.flatMap((o) => o.createMs)),
    start: line('own: start (in-process)', r.own.flatMap((o) => o.startMs)),
  };
  line('own: stop + remove (in-process)', r.own.flatMap((o) => o.stopRemoveMs));
  const ed = (g: (e: Edit) => number | undefined): number[] => r.edits.map(g).filter((x): x is number => x !== undefined);
  line('edit -> daemon noticed (log)', ed((e) => e.noticedMs));
  line('edit -> old container exited', ed((e) => e.oldExitedMs));
  line('edit -> old bundle removed', ed((e) => e.oldRemovedMs));
  line('edit -> new bundle made (create)', ed((e) => e.newBundleMs));
  line('edit -> runc state made (runc create)', ed((e) => e.runcCreateMs));
  const running = line('edit -> new container running (record)', ed((e) => e.runningMs));
  line('edit -> its first output (conmon)', ed((e) => e.outputMs));
  line('edit -> reconcile logged done', ed((e) => e.reconciledMs));
  line('  the reconcile itself (durationMs)', ed((e) => e.reconcileMs));
  line('edit -> confirmed by berth ps', ed((e) => e.confirmedMs));
  const applies = r.plan.map((p) => p.applyMs / 1000);

  const editLimit = EDIT_TARGET_MS + own.start.median;
  const targets = [
    { name: `plan, ${n} running, median`, limit: `< ${PLAN_TARGET_MS} ms`, value: plan.median, pass: plan.samples ? plan.median < PLAN_TARGET_MS : undefined },
    {
      name: 'edit -> running, median',
      limit: `< ${EDIT_TARGET_MS} + own start = ${f(editLimit)} ms`,
      value: running.median,
      pass: running.samples && own.start.samples ? running.median < editLimit : undefined,
    },
  ];
  const text: string[] = [
    `reconcile benchmark: ${opts.rounds} round(s); busybox from docker-registry on 127.0.0.1, pullPolicy IfNotPresent`,
    `  each phase of each round on a fresh tmpfs (--root, --state, manifests); ${opts.runs} timed runs per command per round, ${opts.edits} edits per round`,
    `  1. ${n} containers in ${Math.ceil(n / PER_FILE)} files of ${PER_FILE} (sleep 100000, TERM trap); wall time = spawn to exit`,
    `     apply to converge (untimed): ${applies.map((s) => `${s.toFixed(1)} s`).join(', ')}; plan peak RSS median ${f(median(all('planPeakRssKiB')) / 1024, 1)} MiB`,
    '  2. berth daemon -f DIR, one container; edit = rename of a rewritten file (env EDIT); times from the rename',
    '     own create/start/stop: ContainerService in-process (snapshot + mount + spec / conmon + runc create + start / TERM + wait + remove)',
    `  1-min load average ${machine.loadBefore.toFixed(2)} before, ${machine.loadAfter.toFixed(2)} after, on ${machine.cpus} CPUs`,
    '',
    pad(rows.map((row, i) => (i === 0 ? row.map((c, j) => (j >= 2 ? `${c} (ms)` : c)) : row))),
    '',
  ];
  const last = r.edits.at(-1);
  if (last) text.push('the last edit, as the daemon logged it (ms after the rename):', ...last.daemonLog.map((l) => `  ${l}`), '');
  if (r.profile) text.push(...profileText(r.profile, f), '');
  if (r.errors.length) text.push(...r.errors.map((e) => `FAILED: ${e.split('\n').filter((l) => l.trim()).slice(0, 3).join(' | ')}`), '');
  text.push(pad([['target', 'limit', 'median', 'result'], ...targets.map((t) => [t.name, t.limit, `${f(t.value)} ms`, t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : 'FAIL'])]), '');
  return { text: text.join('\n'), targets };
}

function profileText(p: PlanProfile, f: (x: number | undefined, d?: number) => string): string[] {
  const s = p.summary;
  const cpu = s.parts.reduce((a, x) => a + x.ms, 0);
  const shown = s.parts.filter((x) => x.ms >= 5);
  const small = s.parts.filter((x) => x.ms < 5);
  return [
    `where one converged plan's time goes (round 1; node --cpu-prof of dist/src/main.js unbundled, so time is told by module; ${PROFILE_INTERVAL_US} us interval; wall ${f(p.wallMs)} ms under the profiler):`,
    `  spawn -> profiler start (node bootstrap) ${f(p.beforeProfileMs)} ms; profiled ${f(s.profiledMs)} ms, of which ${f(s.gapsMs)} ms the thread did not run (gaps between samples); after it (exit) ${f(p.wallMs - p.beforeProfileMs - s.profiledMs)} ms`,
    pad([
      ['part (innermost frame that names one)', 'ms', '%', 'first at', 'last at'],
      ...shown.map((x) => [x.part, f(x.ms), f((100 * x.ms) / cpu), f(x.firstMs), f(x.lastMs)]),
      ...(small.length ? [[`${small.length} smaller parts`, f(small.reduce((a, x) => a + x.ms, 0)), '', '', '']] : []),
    ]).replace(/^/gm, '  '),
    '  most self time:',
    pad([['function', 'where', 'ms'], ...s.selfTop.map((h) => [h.fn, h.where, f(h.ms, 1)])]).replace(/^/gm, '    '),
    "  berth's functions, time including callees (synchronous stacks only; an await ends the stack):",
    pad([['function', 'where', 'ms'], ...s.berthTop.map((h) => [h.fn, h.where, f(h.ms, 1)])]).replace(/^/gm, '    '),
    `  syscalls (strace -f -c, another run; ${f(p.syscallsTotal)} in all): ${p.syscalls.map((x) => `${x.name} ${x.calls}`).join(', ')}`,
  ];
}

// ---- main ----

async function main(): Promise<number> {
  const opts = options();
  preflight();
  const cleanup = new Cleanup();
  cleanup.onSignals(killMeasured);
  try {
    const { scratch, ref } = await busyboxRegistry(cleanup, 'reconcile', REPO, TAG);

    const timedM = (file: string, args: string[]): Promise<Measured> => measure(file, args, { scratchDir: scratch });
    const timed: Timed = async (file, args, what, code) => {
      const m = await timedM(file, args);
      if (m.code !== code) throw failed(`${what} (expected exit ${code})`, m);
      return m.wallMs;
    };
    const results: Results = { plan: [], own: [], edits: [], errors: [] };
    const loadBefore = loadavg()[0]!;
    const phase = async (label: string, fn: (b: Berth) => Promise<void>): Promise<void> => {
      if (cleanup.closed) throw new Error('interrupted');
      const fs = await mountTmpfs(FS_BYTES, `reconcile-${label}-`, scratch);
      const unmount = cleanup.defer(`unmount ${fs.path}`, () => fs.unmount());
      const b = new Berth(fs.path);
      const teardown = cleanup.defer(`tear down ${label}`, () => b.teardown());
      try {
        await fn(b);
      } catch (err) {
        if (cleanup.closed) throw new Error('interrupted');
        results.errors.push(`${label}: ${(err as Error).message}`);
        console.error(`${label} FAILED: ${(err as Error).message}`);
      } finally {
        if (!cleanup.closed) {
          await teardown().catch((err: Error) => console.error(`cleanup: ${err.message}`));
          await unmount().catch((err: Error) => console.error(`cleanup: ${err.message}`));
        }
      }
    };
    for (let r = 1; r <= opts.rounds; r++) {
      await phase(`round ${r} plan`, async (b) => {
        const p = await planRound(b, ref, opts.containers, opts.runs, timed, timedM);
        results.plan.push(p);
        console.error(
          `round ${r} plan: node ${median(p.nodeMs).toFixed(0)} ms, validate ${median(p.validateMs).toFixed(0)} ms, empty ${median(p.planEmptyMs).toFixed(0)} ms, ` +
            `converged ${median(p.planMs).toFixed(0)} ms (medians); apply ${(p.applyMs / 1000).toFixed(1)} s`,
        );
        if (r === 1) results.profile = await profilePlan(b, p.dir, scratch);
        const t = process.hrtime.bigint();
        await b.run('rm', '-f', ...(await b.ps()).map((v) => v.name));
        console.error(`round ${r} plan: removed ${opts.containers} containers in ${(Number(process.hrtime.bigint() - t) / 1e9).toFixed(1)} s (untimed)`);
      });
      await phase(`round ${r} edit`, async (b) => {
        const e = await editRound(b, ref, opts.edits, cleanup);
        results.own.push(e.own);
        results.edits.push(...e.edits);
        console.error(
          `round ${r} edit: running after ${e.edits.map((x) => x.runningMs.toFixed(0)).join(', ')} ms; own start median ${median(e.own.startMs).toFixed(0)} ms, create ${median(e.own.createMs).toFixed(0)} ms`,
        );
      });
    }
    const machine = { cpus: cpus().length, loadBefore, loadAfter: loadavg()[0]! };
    const { text, targets } = report(opts, results, machine);
    process.stdout.write(text);
    if (opts.json) await writeFile(opts.json, JSON.stringify({ benchmark: 'reconcile', date: new Date().toISOString(), options: opts, ref, machine, ...results, targets }, null, 2) + '\n');
    return results.errors.length ? 1 : 0;
  } finally {
    await cleanup.run();
  }
}

runBench('reconcile', main);
