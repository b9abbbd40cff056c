import { resolve } from 'node:path';
import type { ContainerService, ContainerView } from '../containers/index.js';
import { BerthError, isBerthError } from '../errors.js';
import type { RestartPolicy } from '../metadata/store.js';
import { parseBytes } from '../oci/quantity.js';
import type { ContainerConfig, ContainerMount } from '../runtime/index.js';
import type { System } from '../system.js';
import type { Command, CommandContext } from './context.js';
import { positionals, writeJSON } from './context.js';
import { daemonRuns } from './daemon.js';
import { formatDuration, formatError, shortDigest, table } from './format.js';
import { PullProgress } from './progress.js';

/** `berth run | create | start | ps | logs | stop | rm | exec`: containers by hand, as with docker or ctr. */

const str = (ctx: CommandContext, k: string): string | undefined => (typeof ctx.line.values[k] === 'string' ? (ctx.line.values[k] as string) : undefined);
const list = (ctx: CommandContext, k: string): string[] => {
  const v = ctx.line.values[k];
  return (Array.isArray(v) ? v : v === undefined ? [] : [v]).filter((x): x is string => typeof x === 'string');
};

const createOptions = {
  name: { type: 'string' },
  env: { type: 'string', short: 'e', multiple: true },
  memory: { type: 'string', short: 'm' },
  cpus: { type: 'string' },
  'pids-limit': { type: 'string' },
  user: { type: 'string', short: 'u' },
  workdir: { type: 'string', short: 'w' },
  entrypoint: { type: 'string' },
  restart: { type: 'string' },
  'read-only': { type: 'boolean' },
  network: { type: 'string' },
  hostname: { type: 'string' },
  volume: { type: 'string', short: 'v', multiple: true },
  tmpfs: { type: 'string', multiple: true },
  'cap-add': { type: 'string', multiple: true },
  'cap-drop': { type: 'string', multiple: true },
  'stop-signal': { type: 'string' },
} as const;

const CREATE_USAGE = '[--name N] [-e K=V]... [--memory M] [--cpus C] [--pids-limit N] [-u USER] [-w DIR] [--entrypoint CMD] [--restart POLICY] [--read-only] [--network host|none] [-v SRC:DST[:ro]]... [--tmpfs DST]... [--cap-add C]... [--cap-drop C]... REF [-- CMD...]';

function parseEnv(items: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const kv of items) {
    const i = kv.indexOf('=');
    if (i <= 0) throw new BerthError('INVALID_ARGUMENT', `-e ${JSON.stringify(kv)}: expected KEY=VALUE`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return env;
}

/** A bind source is relative to the directory of whoever typed the line (proc.cwd: the client's, when the daemon runs it). */
function parseVolume(v: string, cwd: string | undefined): ContainerMount {
  const [source, target, mode, ...rest] = v.split(':');
  if (!source || !target || rest.length || (mode !== undefined && mode !== 'ro' && mode !== 'rw')) {
    throw new BerthError('INVALID_ARGUMENT', `-v ${JSON.stringify(v)}: expected SOURCE:TARGET[:ro]`);
  }
  return { type: 'bind', source: resolve(cwd ?? '', source), target, ...(mode === 'ro' ? { readonly: true } : {}) };
}

function number(ctx: CommandContext, k: string): number | undefined {
  const v = str(ctx, k);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new BerthError('INVALID_ARGUMENT', `--${k} ${JSON.stringify(v)} is not a number`);
  return n;
}

/** The container's settings from the command line; anything after `--` replaces the image's Cmd, as with docker run. */
function configFrom(ctx: CommandContext): ContainerConfig {
  const c: ContainerConfig = {};
  const env = parseEnv(list(ctx, 'env'));
  if (Object.keys(env).length) c.env = env;
  if (ctx.line.passthrough.length) c.args = ctx.line.passthrough;
  const entrypoint = str(ctx, 'entrypoint');
  if (entrypoint !== undefined) c.command = [entrypoint];
  const memory = str(ctx, 'memory');
  const cpus = number(ctx, 'cpus');
  const pids = number(ctx, 'pids-limit');
  if (memory !== undefined || cpus !== undefined || pids !== undefined) {
    c.resources = { ...(memory !== undefined ? { memory: parseBytes(memory) } : {}), ...(cpus !== undefined ? { cpus } : {}), ...(pids !== undefined ? { pids } : {}) };
  }
  const user = str(ctx, 'user');
  if (user !== undefined) c.user = user;
  const workdir = str(ctx, 'workdir');
  if (workdir !== undefined) c.workingDir = workdir;
  if (ctx.line.values['read-only']) c.readonlyRootfs = true;
  const network = str(ctx, 'network');
  if (network !== undefined) {
    if (network !== 'host' && network !== 'none') throw new BerthError('INVALID_ARGUMENT', `--network ${JSON.stringify(network)} is not one of host, none`);
    c.network = network;
  }
  const hostname = str(ctx, 'hostname');
  if (hostname !== undefined) c.hostname = hostname;
  const mounts = [...list(ctx, 'volume').map((v) => parseVolume(v, ctx.proc.cwd)), ...list(ctx, 'tmpfs').map((target): ContainerMount => ({ type: 'tmpfs', target }))];
  if (mounts.length) c.mounts = mounts;
  const add = list(ctx, 'cap-add');
  const drop = list(ctx, 'cap-drop');
  if (add.length || drop.length) c.capabilities = { ...(add.length ? { add } : {}), ...(drop.length ? { drop } : {}) };
  const stop = str(ctx, 'stop-signal');
  if (stop !== undefined) c.stopSignal = stop;
  return c;
}

async function restartFrom(ctx: CommandContext): Promise<Partial<RestartPolicy> | undefined> {
  const text = str(ctx, 'restart');
  if (text === undefined) return undefined;
  const { parseRestartPolicy } = await import('../containers/restart.js');
  const p = parseRestartPolicy(text);
  if (!p) throw new BerthError('INVALID_ARGUMENT', `--restart ${JSON.stringify(text)} is not one of never, on-failure[:N], always`);
  return p;
}

/**
 * Creates the container from REF, pulling the image first when it is not
 * stored (as docker run does), and with `start` starts it. With
 * `autoRemove` it is removed when it exits (or its start fails); with
 * `attached` too, this caller claims that removal before the container
 * exists (ContainerService.attachForRemoval), and must release it.
 */
async function createFrom(
  ctx: CommandContext,
  sys: System,
  name: string | undefined,
  opts: { autoRemove?: boolean; attached?: boolean; start?: boolean } = {},
): Promise<{ service: ContainerService; name: string; release: () => Promise<void> }> {
  const ref = positionals(ctx, 1, `berth run ${CREATE_USAGE}`)[0]!;
  const config = configFrom(ctx);
  const restart = await restartFrom(ctx);
  const service = await sys.containers();
  const finalName = name ?? `${ref.replace(/^.*\//, '').replace(/[:@].*$/, '').replace(/[^a-zA-Z0-9_.-]/g, '')}-${Math.random().toString(16).slice(2, 8)}`;
  try {
    await sys.images.get(ref);
  } catch (err) {
    if (!isBerthError(err, 'NOT_FOUND')) throw err;
    const progress = new PullProgress(ctx.proc.stderr, Boolean(ctx.proc.stderr.isTTY));
    const unsubscribe = sys.events.subscribe((e) => progress.handle(e));
    try {
      await (await sys.puller()).pull(ref);
    } finally {
      unsubscribe();
    }
  }
  const release = opts.autoRemove && opts.attached ? await service.attachForRemoval(finalName) : async () => {};
  try {
    const req = { name: finalName, image: ref, config, ...(restart ? { restart } : {}), ...(opts.autoRemove ? { autoRemove: true, detached: !opts.attached } : {}) };
    await (opts.start ? service.run(req) : service.create(req));
  } catch (err) {
    await release();
    throw err;
  }
  if (!opts.attached && restart && restart.policy !== 'never' && !(await daemonRuns(ctx.globals.state, ctx.proc.isAlive))) {
    ctx.proc.stderr.write(`berth: warning: no berth daemon runs on ${ctx.globals.state}: container "${finalName}" is restarted by its policy (--restart ${str(ctx, 'restart')}) only while one does\n`);
  }
  return { service, name: finalName, release };
}

const run: Command = {
  name: 'run',
  usage: `berth run [-d] [--rm] ${CREATE_USAGE}`,
  summary: 'create and start a container; without -d, print its output and exit with its exit code',
  options: { ...createOptions, detach: { type: 'boolean', short: 'd' }, rm: { type: 'boolean' } },
  async run(ctx) {
    const sys = await ctx.system();
    const autoRemove = Boolean(ctx.line.values.rm);
    const detach = Boolean(ctx.line.values.detach);
    // A foreground --rm removes the container when it exits, which processes the exit too; a detached one is removed by
    // `berth cleanup`, which its monitor runs when it exits (and by a daemon's supervisor).
    const { service, name, release } = await createFrom(ctx, sys, str(ctx, 'name'), { autoRemove, attached: !detach, start: true });
    try {
      if (detach) {
        ctx.proc.stdout.write(`${name}\n`);
        return 0;
      }
      const code = await attach(ctx, service, name);
      if (autoRemove) await service.remove(name, { force: true });
      else await service.processExit(name);
      return code;
    } finally {
      await release();
    }
  },
};

/**
 * Prints the container's output until it exits and returns its exit code
 * (the exit is left for the caller to process or remove).
 * SIGINT and SIGTERM to berth are passed on to the container, as docker's
 * signal proxy does. When the caller is gone (proc.gone: the daemon's client
 * disconnected) the container is stopped as `berth stop` would, so a
 * foreground `run --rm` still ends removed rather than orphaned.
 */
async function attach(ctx: CommandContext, service: ContainerService, name: string): Promise<number> {
  const rec = await service.record(name);
  const exited = new AbortController();
  const sys = await ctx.system();
  const runtime = await sys.runtime();
  const unforward = ctx.proc.onSignal?.((signal) => void runtime.kill(rec.id, signal).catch(() => {}));
  const gone = ctx.proc.gone;
  // Logged to the System's log (the daemon's): the caller's own stream is gone.
  const onGone = (): void => {
    sys.logger.info('the caller is gone; stopping its foreground container', { name });
    void service.stop(name, 10_000).catch((err: unknown) => sys.logger.warn('stopping a foreground container failed', { name, error: String(err) }));
  };
  if (gone?.aborted) onGone();
  else gone?.addEventListener('abort', onGone, { once: true });
  const output = (async () => {
    const { readLog } = await import('../runtime/logs.js');
    for await (const line of readLog(service.logPath(rec), { follow: { done: async () => false, signal: exited.signal } })) {
      (line.stream === 'stderr' ? ctx.proc.stderr : ctx.proc.stdout).write(line.text + '\n');
    }
  })();
  try {
    const exit = await service.waitExit(name);
    exited.abort();
    await output;
    return exit.code;
  } finally {
    exited.abort();
    unforward?.();
    gone?.removeEventListener('abort', onGone);
  }
}

const create: Command = {
  name: 'create',
  usage: `berth create ${CREATE_USAGE}`,
  summary: 'create a container (snapshot, bundle, spec) without starting it',
  options: createOptions,
  async run(ctx) {
    const { name } = await createFrom(ctx, await ctx.system(), str(ctx, 'name'));
    ctx.proc.stdout.write(`${name}\n`);
    return 0;
  },
};

const start: Command = {
  name: 'start',
  usage: 'berth start NAME...',
  summary: 'start created or exited containers',
  async run(ctx) {
    const service = await (await ctx.system()).containers();
    for (const name of atLeastOne(ctx, this.usage)) {
      await service.start(name);
      ctx.proc.stdout.write(`${name}\n`);
    }
    return 0;
  },
};

function atLeastOne(ctx: CommandContext, usage: string): string[] {
  if (!ctx.line.positionals.length) throw new BerthError('INVALID_ARGUMENT', 'expected at least one container name', { hint: `usage: ${usage}` });
  return ctx.line.positionals;
}

/**
 * Runs fn for each name, a few at a time (containers are independent, and
 * each waits mostly on runc), printing the names done in the order given.
 * A failure does not stop the others; each is reported, and the exit code is 1.
 */
async function eachName(ctx: CommandContext, names: string[], fn: (name: string) => Promise<unknown>): Promise<number> {
  const results: Array<PromiseSettledResult<unknown>> = new Array(names.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < names.length; i = next++) results[i] = await fn(names[i]!).then((value) => ({ status: 'fulfilled' as const, value }), (reason: unknown) => ({ status: 'rejected' as const, reason }));
  };
  await Promise.all(Array.from({ length: Math.min(4, names.length) }, worker));
  let failed = 0;
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') ctx.proc.stdout.write(`${names[i]}\n`);
    else {
      failed++;
      ctx.proc.stderr.write(formatError(r.reason, ctx.globals.logLevel === 'debug'));
    }
  });
  return failed ? 1 : 0;
}

function ago(iso: string | undefined, now: number): string {
  return iso ? formatDuration(now - Date.parse(iso)) : '-';
}

/** `supervised`: a daemon runs, which does the restarts that are due. */
function stateText(c: ContainerView, now: number, supervised: boolean): string {
  switch (c.state) {
    case 'running':
      return 'running';
    case 'restarting':
      if (!supervised) return 'restart pending (no daemon)';
      return `restarting in ${formatDuration(Math.max(0, Date.parse(c.nextRestartAt ?? '') - now))}`;
    case 'exited':
      return `exited ${ago(c.finishedAt, now)} ago`;
    default:
      return 'created';
  }
}

const ps: Command = {
  name: 'ps',
  usage: 'berth ps',
  summary: 'list containers: name, image, state, exit code, restarts, uptime',
  async run(ctx) {
    positionals(ctx, 0, this.usage);
    const views = await (await (await ctx.system()).containers()).list();
    if (ctx.globals.output === 'json') {
      writeJSON(ctx.proc.stdout, views);
      return 0;
    }
    const now = Date.now();
    const supervised = !views.some((c) => c.state === 'restarting') || (await daemonRuns(ctx.globals.state, ctx.proc.isAlive));
    ctx.proc.stdout.write(
      table(
        ['NAME', 'IMAGE', 'STATE', 'EXIT', 'RESTARTS', 'UPTIME', 'ID'],
        views.map((c) => [
          c.name,
          `${c.image}@${shortDigest(c.imageDigest)}`,
          stateText(c, now, supervised),
          c.exitCode === undefined ? '-' : `${c.exitCode}${c.oomKilled ? ' (oom)' : ''}`,
          String(c.restarts),
          c.state === 'running' ? ago(c.startedAt, now) : '-',
          c.id,
        ]),
      ),
    );
    return 0;
  },
};

const logs: Command = {
  name: 'logs',
  usage: 'berth logs NAME [-f] [--tail N]',
  summary: "print a container's output (stdout to stdout, stderr to stderr); -f follows until it stops",
  options: { follow: { type: 'boolean', short: 'f' }, tail: { type: 'string', short: 'n' } },
  async run(ctx) {
    const name = positionals(ctx, 1, this.usage)[0]!;
    const tailText = str(ctx, 'tail');
    const tail = tailText === undefined || tailText === 'all' ? undefined : Number(tailText);
    if (tail !== undefined && !(Number.isSafeInteger(tail) && tail >= 0)) throw new BerthError('INVALID_ARGUMENT', `--tail ${JSON.stringify(tailText)} is not a number of lines`);
    const service = await (await ctx.system()).containers();
    const rec = await service.record(name);
    const follow = ctx.line.values.follow
      ? {
          // Following ends when the container is neither running nor about to restart.
          done: async () => {
            const v = await service.get(name).catch(() => undefined);
            return !v || (v.state !== 'running' && v.state !== 'restarting');
          },
          // A daemon's client that went away reads no more.
          ...(ctx.proc.gone ? { signal: ctx.proc.gone } : {}),
        }
      : undefined;
    const { readLog } = await import('../runtime/logs.js');
    for await (const line of readLog(service.logPath(rec), { ...(tail !== undefined ? { tail } : {}), ...(follow ? { follow } : {}) })) {
      (line.stream === 'stderr' ? ctx.proc.stderr : ctx.proc.stdout).write(line.text + '\n');
    }
    return 0;
  },
};

const stop: Command = {
  name: 'stop',
  usage: 'berth stop [-t SECONDS] NAME...',
  summary: 'stop containers: their stop signal, then SIGKILL after the timeout (default 10 s)',
  options: { time: { type: 'string', short: 't' } },
  async run(ctx) {
    const t = number(ctx, 'time') ?? 10;
    const service = await (await ctx.system()).containers();
    return eachName(ctx, atLeastOne(ctx, this.usage), (name) => service.stop(name, t * 1000));
  },
};

const rm: Command = {
  name: 'rm',
  usage: 'berth rm [-f] NAME...',
  summary: 'remove containers (their snapshot, bundle and log); -f kills a running one first',
  options: { force: { type: 'boolean', short: 'f' } },
  async run(ctx) {
    const service = await (await ctx.system()).containers();
    return eachName(ctx, atLeastOne(ctx, this.usage), (name) => service.remove(name, { force: Boolean(ctx.line.values.force) }));
  },
};

const exec: Command = {
  name: 'exec',
  usage: 'berth exec [-e K=V]... [-w DIR] NAME -- CMD...',
  summary: 'run a command in a running container; exits with its exit code',
  options: { env: { type: 'string', short: 'e', multiple: true }, workdir: { type: 'string', short: 'w' } },
  async run(ctx) {
    const name = positionals(ctx, 1, this.usage)[0]!;
    if (!ctx.line.passthrough.length) throw new BerthError('INVALID_ARGUMENT', 'expected a command after --', { hint: `usage: ${this.usage}` });
    const sys = await ctx.system();
    const v = await (await sys.containers()).get(name);
    if (v.state !== 'running') throw new BerthError('FAILED_PRECONDITION', `container "${name}" is not running (${v.state})`, { hint: `start it first: berth start ${name}` });
    const env = Object.entries(parseEnv(list(ctx, 'env'))).map(([k, x]) => `${k}=${x}`);
    const workdir = str(ctx, 'workdir');
    return (await sys.runtime()).exec(v.id, ctx.line.passthrough, { env, ...(workdir ? { cwd: workdir } : {}), stdio: ctx.proc.stdio ?? ['ignore', 'ignore', 'ignore'] });
  },
};

const cleanup: Command = {
  name: 'cleanup',
  usage: 'berth cleanup NAME',
  summary: 'remove a --rm container that has exited and that no caller waits on (its monitor runs this when it exits)',
  options: {},
  async run(ctx) {
    const name = positionals(ctx, 1, this.usage)[0]!;
    await (await (await ctx.system()).containers()).removeIfAutoRemoved(name);
    return 0;
  },
};

export const containerCommands: Command[] = [run, create, start, ps, logs, stop, rm, exec, cleanup];
