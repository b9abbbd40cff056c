import { spawn } from 'node:child_process';
import { closeSync, constants as fsConstants, lstatSync, mkdirSync, openSync, readFileSync, rmSync, statSync, watch, writeFileSync, type FSWatcher } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { Socket } from 'node:net';
import { join } from 'node:path';
import { BerthError } from '../errors.js';
import type { Logger } from '../log.js';
import { oomKills } from './cgroups.js';
import { runCommand } from '../linux/index.js';
import { findTool, runcMessage } from './command.js';
import type { ContainerRuntime, CreateOptions, ExecOptions, ExitStatus, RuntimeState, RuntimeStatus } from './runtime.js';

/**
 * ContainerRuntime on runc, with one conmon per container as its monitor.
 *
 * Layout under `stateDir` (--state, a tmpfs like /run/berth: a reboot ends
 * every container, and clears this with them):
 *   runc/              runc's --root: one directory per container
 *   exits/<id>         conmon's exit record: the exit code as text
 *   monitor/<id>/      conmon's pid file, the container's pid file, conmon's
 *                      own messages (conmon.log), the cgroup path, and
 *                      conmon's persist dir (where it notes an OOM kill)
 *   sockets/           conmon's attach sockets (unused by berth, but conmon needs them)
 *
 * conmon runs `runc create`, reports the container's pid (or runc's error)
 * on a sync pipe, keeps the container's stdio and writes it to the log, and
 * writes the exit record when the init process exits. It runs in its own
 * session, so neither berth's exit nor a Ctrl-C at berth's terminal reaches
 * it. Not with --sync (the process berth starts would be the monitor, one
 * fork fewer, ~0.6 ms): a monitor that is the exec'd process keeps every
 * page its start-up touched, 3.9 MB RSS and 1.9 MB PSS against 2.1 and 0.7
 * for the child conmon forks, and a host pays that for every container.
 */

export interface RuncRuntimeOptions {
  stateDir: string;
  logger: Logger;
  /** Directories searched for runc and conmon before the system ones (the shell passes PATH). */
  searchPath?: readonly string[];
  /** Replaces the system directories searched after searchPath (tests: a host without the tools). */
  toolDirs?: readonly string[];
  /** How long runc create may take under conmon before it counts as hung. */
  createTimeoutMs?: number;
}

interface Tools {
  runc: string;
  conmon: string;
}

export class RuncRuntime implements ContainerRuntime {
  private tools: Promise<Tools> | undefined;
  private readonly runcRoot: string;
  private readonly exitDir: string;

  constructor(private readonly opts: RuncRuntimeOptions) {
    this.runcRoot = join(opts.stateDir, 'runc');
    this.exitDir = join(opts.stateDir, 'exits');
  }

  /** Finds both tools once; fails naming the package of whichever is missing. */
  private find(): Promise<Tools> {
    return (this.tools ??= (async () => {
      const { searchPath, toolDirs } = this.opts;
      const [runc, conmon] = await Promise.all([findTool('runc', 'runc', searchPath, toolDirs), findTool('conmon', 'conmon', searchPath, toolDirs)]);
      await Promise.all([this.runcRoot, this.exitDir, join(this.opts.stateDir, 'monitor'), join(this.opts.stateDir, 'sockets')].map(privateDir));
      return { runc, conmon };
    })());
  }

  private monitorDir(id: string): string {
    return join(this.opts.stateDir, 'monitor', id);
  }

  private async runc(args: string[], what: string, id: string): Promise<string> {
    const { runc } = await this.find();
    const res = await runCommand(runc, ['--root', this.runcRoot, ...args]);
    if (res.code !== 0) {
      throw new BerthError('FAILED_PRECONDITION', `container ${id}: runc ${what} failed: ${runcMessage(res.stderr)}`, { details: { container: id, exitCode: res.code } });
    }
    return res.stdout;
  }

  async create(id: string, opts: CreateOptions): Promise<{ pid: number }> {
    const { runc, conmon } = await this.find();
    const mon = this.monitorDir(id);
    // A few small files under --state (a tmpfs): written synchronously, as readSmall reads (each
    // trip through libuv's thread pool costs ~0.1 ms; these made eight, one after another).
    rmSync(mon, { recursive: true, force: true });
    rmSync(join(this.exitDir, id), { force: true });
    mkdirSync(join(mon, 'persist'), { recursive: true, mode: 0o700 });
    if (opts.cgroupsPath) writeFileSync(join(mon, 'cgroup'), opts.cgroupsPath, { mode: 0o600 });
    const args = [
      '--api-version', '1',
      '-c', id, '-u', id, '-n', id,
      '-r', runc,
      '-b', opts.bundle,
      '-p', join(mon, 'pid'),
      '-P', join(mon, 'conmon.pid'),
      '-l', `k8s-file:${opts.logPath}`,
      '--log-size-max', String(opts.logMaxBytes),
      '--exit-dir', this.exitDir,
      '--persist-dir', join(mon, 'persist'),
      '--socket-dir-path', join(this.opts.stateDir, 'sockets'),
      '--runtime-arg', '--root', '--runtime-arg', this.runcRoot,
      '--log-level', 'error',
      ...(opts.exitCommand?.length ? ['--exit-command', opts.exitCommand[0]!, ...opts.exitCommand.slice(1).flatMap((a) => ['--exit-command-arg', a])] : []),
    ];
    const logFd = openSync(join(mon, 'conmon.log'), 'a', 0o600);
    try {
      const reply = await new Promise<{ data: number; message?: string }>((resolve, reject) => {
        // cwd: conmon writes some files (an "oom" note) relative to its working directory.
        const child = spawn(conmon, args, { cwd: mon, stdio: ['ignore', 'ignore', logFd, 'pipe'], detached: true, env: { _OCI_SYNCPIPE: '3' } });
        const pipe = child.stdio[3] as NodeJS.ReadableStream | null;
        let text = '';
        const timer = setTimeout(() => {
          pipe?.removeAllListeners();
          reject(new BerthError('TIMEOUT', `container ${id}: conmon did not report the container within ${this.createTimeoutMs()} ms`, { details: { container: id } }));
        }, this.createTimeoutMs());
        const finish = (fn: () => void): void => {
          clearTimeout(timer);
          (pipe as { destroy?: () => void } | null)?.destroy?.();
          fn();
        };
        child.on('error', (e) => finish(() => reject(new BerthError('INTERNAL', `container ${id}: cannot start conmon: ${e.message}`, { cause: e }))));
        child.unref();
        pipe?.on('data', (b: Buffer) => {
          text += b.toString('utf8');
          const line = text.split('\n').find((l) => l.trim().startsWith('{') && l.includes('}'));
          if (!line) return;
          try {
            const msg = JSON.parse(line) as { data: number; message?: string };
            finish(() => resolve(msg));
          } catch {
            // A partial line: wait for the rest.
          }
        });
        pipe?.on('end', () => finish(() => reject(new BerthError('FAILED_PRECONDITION', `container ${id}: conmon exited without reporting the container`, { details: { container: id } }))));
      });
      if (!(reply.data > 0)) {
        const message = (reply.message ?? 'no message').trim();
        throw new BerthError('FAILED_PRECONDITION', `container ${id}: runc create failed: ${runcMessage(message)}`, { details: { container: id } });
      }
      return { pid: reply.data };
    } catch (err) {
      const conmonLog = (await readFile(join(mon, 'conmon.log'), 'utf8').catch(() => '')).trim();
      if (conmonLog) this.opts.logger.warn('conmon reported', { container: id, output: conmonLog.slice(-2000) });
      await this.delete(id, { force: true }).catch(() => {});
      throw err;
    } finally {
      closeSync(logFd);
    }
  }

  private createTimeoutMs(): number {
    return this.opts.createTimeoutMs ?? 60_000;
  }

  async start(id: string): Promise<void> {
    if (await this.startByFifo(id)) return;
    // Not created (no fifo), or no byte came: runc says what is wrong.
    await this.runc(['start', id], 'start', id);
  }

  /**
   * What `runc start` does (libcontainer's exec()), without the ~6 ms of
   * starting runc. runc init waits to open runc's exec fifo for writing
   * until a reader opens it; then it writes a byte and execs the container's
   * process, which closes the fifo (close-on-exec). So: open the fifo for
   * reading, read it to its end, and remove it, which is how runc tells a
   * running container from a created one (readStateFile reads it the same
   * way). The same as `runc start` for bundles without hooks (runc 1.2 runs
   * poststart hooks in start; berth's specs have none).
   *
   * O_NONBLOCK: the open never waits on a writer, and the read waits in
   * node's event loop (the fifo as a pipe handle), not in a thread. An init
   * process that dies before it writes is found as runc finds it, by looking
   * at it every 100 ms. Resolves false, having started nothing, when the
   * container is not in the created state or no byte came.
   */
  private async startByFifo(id: string): Promise<boolean> {
    const st = await this.state(id);
    if (st?.status !== 'created') return false;
    const fifo = join(this.runcRoot, id, 'exec.fifo');
    let fd: number;
    try {
      fd = openSync(fifo, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
    } catch {
      return false;
    }
    const got = await new Promise<number>((resolve) => {
      const pipe = new Socket({ fd, readable: true, writable: false });
      let bytes = 0;
      let done = false;
      const finish = (): void => {
        if (done) return;
        done = true;
        clearInterval(look);
        pipe.destroy();
        resolve(bytes);
      };
      pipe.on('data', (b: Buffer) => (bytes += b.length));
      pipe.on('end', finish);
      pipe.on('error', finish);
      // A process that ran and exited between two looks has its byte and end of file waiting: the poll phase after this timer delivers them first.
      const look = setInterval(() => {
        if (!processAlive(st.pid)) setImmediate(finish);
      }, 100);
    });
    if (got === 0) return false;
    rmSync(fifo, { force: true });
    return true;
  }

  async kill(id: string, signal: number): Promise<void> {
    const { runc } = await this.find();
    const res = await runCommand(runc, ['--root', this.runcRoot, 'kill', id, String(signal)]);
    if (res.code === 0) return;
    const st = await this.state(id);
    if (!st) throw new BerthError('NOT_FOUND', `container ${id} does not exist in the runtime`, { details: { container: id } });
    if (st.status === 'stopped') return;
    throw new BerthError('FAILED_PRECONDITION', `container ${id}: runc kill failed: ${runcMessage(res.stderr)}`, { details: { container: id } });
  }

  async delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    if (await this.exists(id)) {
      const { runc } = await this.find();
      const res = await runCommand(runc, ['--root', this.runcRoot, 'delete', ...(opts.force ? ['--force'] : []), id]);
      if (res.code !== 0 && (await this.exists(id))) {
        throw new BerthError('FAILED_PRECONDITION', `container ${id}: runc delete failed: ${runcMessage(res.stderr)}`, {
          hint: 'stop the container first, or remove it with --force',
          details: { container: id },
        });
      }
    }
    await rm(join(this.exitDir, id), { force: true });
    await rm(this.monitorDir(id), { recursive: true, force: true });
  }

  private async exists(id: string): Promise<boolean> {
    return stat(join(this.runcRoot, id, 'state.json')).then(() => true, () => false);
  }

  /**
   * The container's state, read from runc's own state file the way runc
   * derives it (libcontainer's currentStatus): the init process alive and
   * the same process (its start time in /proc/<pid>/stat matches) and the
   * exec fifo still there means created, without the fifo running, else
   * stopped. Spawning `runc state` costs 30-70 ms per container, which
   * `berth ps` and `berth plan` would pay for every container. Paused is
   * not told apart (berth never pauses). A state file this code cannot
   * read falls back to `runc state`. The files are read synchronously (see
   * readSmall).
   */
  async state(id: string): Promise<RuntimeState | undefined> {
    const dir = join(this.runcRoot, id);
    const text = readSmall(join(dir, 'state.json'));
    if (text === undefined) return undefined;
    return readStateFile(text, dir, id) ?? this.stateByRunc(id);
  }

  private async stateByRunc(id: string): Promise<RuntimeState | undefined> {
    const { runc } = await this.find();
    const res = await runCommand(runc, ['--root', this.runcRoot, 'state', id]);
    if (res.code !== 0) {
      if (!(await this.exists(id))) return undefined;
      throw new BerthError('FAILED_PRECONDITION', `container ${id}: runc state failed: ${runcMessage(res.stderr)}`, { details: { container: id } });
    }
    return parseState(res.stdout, id);
  }

  async list(): Promise<RuntimeState[]> {
    const out = await this.runc(['list', '--format', 'json'], 'list', '*');
    const items = (JSON.parse(out || 'null') as unknown[] | null) ?? [];
    return items.map((x) => toState(x as RawState));
  }

  async exitStatus(id: string, known?: RuntimeState): Promise<ExitStatus | undefined> {
    const record = await this.readExitRecord(id);
    if (record) return record;
    // runc may report the init process stopped before conmon wrote the record; only a dead conmon means it never will.
    if ((known ?? (await this.state(id)))?.status !== 'stopped' || (await this.monitorAlive(id))) return undefined;
    // conmon may have written the record and exited since the first read.
    return (await this.readExitRecord(id)) ?? { code: 255, oomKilled: await this.oomKilled(id), at: new Date(), lost: true };
  }

  private async readExitRecord(id: string): Promise<ExitStatus | undefined> {
    const file = join(this.exitDir, id);
    const text = readSmall(file);
    // An empty or partial file is not a record yet.
    if (text === undefined || !/^-?\d+\s*$/.test(text)) return undefined;
    const info = statSync(file, { throwIfNoEntry: false });
    if (!info) return undefined;
    const code = Number(text.trim());
    const status: ExitStatus = { code, oomKilled: await this.oomKilled(id), at: info.mtime };
    if (code > 128 && code < 128 + 65) status.signal = code - 128;
    return status;
  }

  /** conmon's own OOM note, else the cgroup's oom_kill counter (v1 and v2); read before delete removes the cgroup. */
  private async oomKilled(id: string): Promise<boolean> {
    const mon = this.monitorDir(id);
    // conmon notes an OOM kill in its persist dir, and (2.1) in its working directory, which is `mon`.
    for (const note of [join(mon, 'persist', 'oom'), join(mon, 'oom')]) if (await stat(note).then(() => true, () => false)) return true;
    const cgroup = await readFile(join(mon, 'cgroup'), 'utf8').catch(() => undefined);
    return cgroup ? ((await oomKills(cgroup)) ?? 0) > 0 : false;
  }

  /** Whether the container's conmon still runs (its pid file names a live conmon). */
  private async monitorAlive(id: string): Promise<boolean> {
    const pid = Number((await readFile(join(this.monitorDir(id), 'conmon.pid'), 'utf8').catch(() => '')).trim());
    if (!Number.isSafeInteger(pid) || pid <= 0) return false;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return cmdline.split('\0')[0]?.endsWith('conmon') ?? false;
  }

  watchExits(onExit: (id: string) => void): () => void {
    let watcher: FSWatcher | undefined;
    let stopped = false;
    void this.find().then(
      () => {
        if (stopped) return;
        watcher = watch(this.exitDir, (_event, name) => {
          // conmon writes `<id>.XXXXXX` and renames it to `<id>`; container ids have no dot.
          if (name && !String(name).includes('.')) onExit(String(name));
        });
        watcher.on('error', (err) => this.opts.logger.error('watching exit records failed', { dir: this.exitDir, error: err.message }));
      },
      (err: Error) => this.opts.logger.error('cannot watch exit records', { error: err.message }),
    );
    return () => {
      stopped = true;
      watcher?.close();
    };
  }

  async exec(id: string, args: readonly string[], opts: ExecOptions): Promise<number> {
    const { runc } = await this.find();
    const flags = [...(opts.env ?? []).flatMap((e) => ['--env', e]), ...(opts.cwd ? ['--cwd', opts.cwd] : [])];
    // stdio passes straight through: the process's output and runc's own errors reach the caller as they are.
    const res = await runCommand(runc, ['--root', this.runcRoot, 'exec', ...flags, id, ...args], { stdio: opts.stdio });
    if (res.code === undefined) throw new BerthError('INTERNAL', `container ${id}: cannot run ${runc}: ${res.error?.message}`, { cause: res.error });
    return res.code;
  }
}

/** runc's state.json, the fields read here (libcontainer State). */
interface StateFile {
  init_process_pid?: number;
  init_process_start?: number | string;
  config?: { labels?: string[] };
}

/**
 * A small file's text (runc's state.json, /proc/<pid>/stat, an exit record),
 * undefined when it cannot be read. Synchronous on purpose: these are a few
 * KiB on tmpfs or procfs, read in microseconds, while each promise-based
 * readFile is four trips through libuv's thread pool; `berth ps` and `plan`
 * read three of them per container.
 */
function readSmall(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

function readStateFile(text: string, dir: string, id: string): RuntimeState | undefined {
  let s: StateFile;
  try {
    s = JSON.parse(text) as StateFile;
  } catch {
    return undefined;
  }
  const pid = s.init_process_pid;
  if (typeof pid !== 'number' || s.init_process_start === undefined) return undefined;
  const bundle = s.config?.labels?.find((l) => l.startsWith('bundle='))?.slice('bundle='.length) ?? '';
  const stat = readSmall(`/proc/${pid}/stat`);
  // Field 22 (starttime) counts from the fields after the command name, which may itself hold spaces and parentheses.
  const startTime = stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  if (!stat || startTime !== String(s.init_process_start)) return { id, status: 'stopped', pid: 0, bundle };
  // Only stat the fifo: opening it for reading is what `runc start` does to let the process run.
  let created: boolean;
  try {
    created = lstatSync(join(dir, 'exec.fifo'), { throwIfNoEntry: false }) !== undefined;
  } catch {
    created = true; // there, but not ours to stat: runc would say created too
  }
  return { id, status: created ? 'created' : 'running', pid, bundle };
}

/** Whether the process exists and is not a zombie (/proc/<pid>/stat's state field). */
function processAlive(pid: number): boolean {
  const stat = readSmall(`/proc/${pid}/stat`);
  return stat !== undefined && stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
}

interface RawState {
  id: string;
  status: string;
  pid: number;
  bundle: string;
}

function toState(raw: RawState): RuntimeState {
  return { id: raw.id, status: raw.status as RuntimeStatus, pid: raw.pid ?? 0, bundle: raw.bundle };
}

function parseState(text: string, id: string): RuntimeState {
  try {
    return toState(JSON.parse(text) as RawState);
  } catch (err) {
    throw new BerthError('INTERNAL', `container ${id}: runc state printed something that is not JSON`, { cause: err });
  }
}

async function privateDir(path: string): Promise<void> {
  await mkdir(path, { recursive: true, mode: 0o700 });
  await chmod(path, 0o700);
}
