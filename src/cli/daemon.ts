import { join, resolve } from 'node:path';
import { BerthError } from '../errors.js';
import type { StoredEvent } from '../metadata/store.js';
import type { ApplyReport, Desired } from '../reconcile/index.js';
import type { Command } from './context.js';
import { positionals, writeJSON } from './context.js';
import { garbageCollector } from './content.js';
import { parseDurationOption } from './duration.js';
import { downloadsOption, maxDownloads } from './image.js';
import { counted, shortDigest, table } from './format.js';
import { load, protection, reconcileDeps } from './reconcile.js';
import { berthEnv, commandOf, REMOTE_COMMANDS } from './remote.js';

/** `berth daemon`, `berth status`, `berth events`. */

async function loadDesired(files: string[], prune: boolean, state: string): Promise<Desired & { errors: Awaited<ReturnType<typeof load>>['errors'] }> {
  const result = await load(files, state);
  return { desired: result.desired, protect: protection(result, prune), manifestErrors: result.errors.length, errors: result.errors };
}

/** The writer lock of a state directory: held by its daemon, or by an apply while it runs. */
function stateLockPath(state: string): string {
  return join(state, 'lock');
}

const DAEMON_HOLDER = 'berth daemon';

/** Whether a live daemon holds the state's writer lock (by the lock's holder note): restart policies are kept only while one runs. */
export async function daemonRuns(state: string, isAlive: (pid: number) => boolean): Promise<boolean> {
  const { lockHolder } = await import('../lock/index.js');
  const holder = await lockHolder(stateLockPath(state));
  return holder?.what === DAEMON_HOLDER && isAlive(holder.pid);
}

const daemon: Command = {
  name: 'daemon',
  usage: 'berth daemon [-f DIR...] [--no-prune] [--resync D] [--gc-delay D] [--no-gc] [--max-concurrent-downloads N]',
  summary: 'watch manifests and keep the host converged (pruning what was removed), supervise containers, serve the API',
  options: { file: { type: 'string', short: 'f', multiple: true }, 'no-prune': { type: 'boolean' }, resync: { type: 'string' }, 'gc-delay': { type: 'string' }, 'no-gc': { type: 'boolean' }, ...downloadsOption },
  async run(ctx) {
    positionals(ctx, 0, this.usage);
    if (!ctx.proc.onSignal) throw new BerthError('INTERNAL', 'the daemon needs signal handling');
    const v = ctx.line.values.file;
    const files = (Array.isArray(v) ? v : v === undefined ? [] : [v]).filter((x): x is string => typeof x === 'string').map((f) => resolve(f));
    const prune = !ctx.line.values['no-prune'];
    const resyncMs = parseDurationOption(ctx.line.values.resync, '--resync', 30_000);
    const gcDelayMs = parseDurationOption(ctx.line.values['gc-delay'], '--gc-delay', 60_000);
    const downloads = maxDownloads(ctx);
    const stopped = new Promise<number>((r) => ctx.proc.onSignal!((signal) => r(signal)));
    // The state's one writer: a second daemon or an apply is refused, naming this one.
    const { acquireLock } = await import('../lock/index.js');
    const lock = await acquireLock(stateLockPath(ctx.globals.state), { holder: { pid: ctx.proc.pid, what: DAEMON_HOLDER }, timeoutMs: 0, what: `state ${ctx.globals.state}` });
    const cleanup: Array<() => Promise<void> | void> = [() => lock.release()];
    try {
      const sys = await ctx.system();
      const service = await sys.containers();
      const [{ Supervisor }, reconcile, { Metrics }, { startApiServer }] = await Promise.all([
        import('../containers/index.js'),
        import('../reconcile/index.js'),
        import('../api/metrics.js'),
        import('../api/server.js'),
      ]);
      const metrics = new Metrics();
      cleanup.push(sys.events.subscribe((e) => metrics.observe(e)));
      const supervisor = new Supervisor({ service, runtime: await sys.runtime(), metadata: sys.metadata, events: sys.events, logger: ctx.logger.child({ module: 'supervisor' }) });
      await supervisor.start();
      cleanup.push(() => supervisor.stop());
      if (!ctx.line.values['no-gc']) {
        // Garbage is collected a while after names move or go and containers go (what the daemon's own work does).
        const logger = ctx.logger.child({ module: 'gc' });
        const [{ GcScheduler }, collect] = await Promise.all([import('../gc/index.js'), garbageCollector(sys, logger)]);
        const gc = new GcScheduler(() => collect(), gcDelayMs, logger);
        cleanup.push(sys.events.subscribe((e) => gc.observe(e)));
        cleanup.push(() => gc.stop());
      }
      const deps = await reconcileDeps(sys, downloads);
      let last: { report: ApplyReport; desired: Desired } | undefined;
      // Manifest errors are logged when they change, not at every resync.
      const { formatManifestError } = await import('../manifests/index.js');
      let reported = '';
      const loadWatched = async (): Promise<Awaited<ReturnType<typeof loadDesired>>> => {
        const d = await loadDesired(files, prune, ctx.globals.state);
        const lines = d.errors.map(formatManifestError);
        const text = lines.join('\n');
        if (text !== reported) {
          for (const error of lines) ctx.logger.warn('manifest error; its objects are left as they are', { error });
          if (!text) ctx.logger.info('manifests valid again');
          reported = text;
        }
        return d;
      };
      // One controller serialises every run: the watch's, the resync's and the API's.
      const controller = new reconcile.Controller({
        reconcile: deps,
        load: loadWatched,
        events: sys.events,
        logger: ctx.logger.child({ module: 'controller' }),
        resyncMs,
        onReport: (report, desired, durationMs) => {
          last = { report, desired };
          metrics.reconciled(durationMs, report.converged);
        },
      });
      if (files.length) {
        const { watch } = await import('chokidar');
        const { isLeftover } = await import('../manifests/index.js');
        const watcher = watch(files, { ignoreInitial: true, ignored: (path: string) => isLeftover(path.slice(path.lastIndexOf('/') + 1)) });
        watcher.on('all', (event, path) => {
          ctx.logger.debug('manifest changed', { event, path });
          controller.trigger('manifest change');
        });
        watcher.on('error', (err) => ctx.logger.error('watching manifests failed', { error: (err as Error).message }));
        cleanup.push(() => watcher.close());
        controller.start();
        cleanup.push(() => controller.stop());
      }
      const api = await startApiServer(
        join(ctx.globals.state, 'api.sock'),
        {
          async status() {
            const views = await service.list();
            const images = new Map<string, string>();
            for (const img of last?.desired.desired.images ?? []) {
              const d = await deps.images.stored(img.ref);
              if (d) images.set(deps.canonical(img.ref), d);
            }
            return { objects: reconcile.statusOf(views, last?.desired.desired, last?.report, images, deps.canonical), lastReconcile: last ? { converged: last.report.converged, manifestErrors: last.desired.manifestErrors } : null };
          },
          events: (since) => sys.metadata.events.since(since),
          // Streams read the log once a batch is in it (events are stored in batches, not as they are published).
          onEvents: (fn) => sys.onEventsStored(fn),
          async metrics() {
            const byState: Record<string, number> = {};
            for (const v of await service.list()) byState[v.state] = (byState[v.state] ?? 0) + 1;
            return metrics.render({ containersByState: byState, manifestErrors: last?.desired.manifestErrors ?? 0 });
          },
          async cli(req, session) {
            const cwd = req.cwd;
            const same = (a: string | undefined, b: string | undefined): boolean => (a === undefined || b === undefined ? a === b : resolve(cwd, a) === resolve(b));
            const env = berthEnv(req.env);
            const began = Date.now();
            // Events are stored by group commit, a millisecond or so after they happen; a command's client does not wait for
            // that. A reader does: what the daemon's commands did is in the log when `berth events` reads it through here.
            if (commandOf(req.argv) === 'events') await sys.flushEvents();
            const result = await ctx.serve(
              req.argv,
              {
                env,
                cwd,
                home: env.HOME ?? ctx.proc.home,
                stdout: { write: (s: string) => session.stdout(s), isTTY: req.tty?.stdout === true },
                stderr: { write: (s: string) => session.stderr(s), isTTY: req.tty?.stderr === true },
                pid: ctx.proc.pid,
                isAlive: ctx.proc.isAlive,
                hostPlatform: ctx.proc.hostPlatform,
                onSignal: (fn) => session.onSignal(fn),
                gone: session.gone,
              },
              {
                system: sys,
                accepted: () => session.accepted(),
                // Another root, state, registry configuration or credentials than this daemon's: the client runs the line itself.
                refuse(command, g) {
                  if (!REMOTE_COMMANDS.has(command)) return `the daemon does not run "berth ${command}"`;
                  const mine = ctx.globals;
                  if (!same(g.root, mine.root)) return `the daemon serves --root ${mine.root}, not ${g.root}`;
                  if (!same(g.state, mine.state)) return `the daemon serves --state ${mine.state}, not ${g.state}`;
                  if (!same(g.registryConfig, mine.registryConfig)) return `the daemon uses --registry-config ${mine.registryConfig ?? '(none)'}, not ${g.registryConfig ?? '(none)'}`;
                  if (!same(g.dockerConfig, mine.dockerConfig)) return `the daemon reads credentials from ${mine.dockerConfig}, not ${g.dockerConfig}`;
                  if (!same(g.extraCAFile, mine.extraCAFile)) return `the daemon trusts NODE_EXTRA_CA_CERTS=${mine.extraCAFile ?? '(none)'}, not ${g.extraCAFile ?? '(none)'}`;
                  return undefined;
                },
              },
            );
            if (typeof result === 'number') ctx.logger.debug('served command', { argv: req.argv, cwd, exit: result, durationMs: Date.now() - began });
            else ctx.logger.debug('command line left to the client', { argv: req.argv, reason: result.refused });
            return result;
          },
          async reconcile(req) {
            const paths = req.paths?.length ? req.paths.map((p) => resolve(p)) : files;
            if (!paths.length) throw new BerthError('INVALID_ARGUMENT', 'this daemon watches no manifests; name them', { hint: 'berth apply -f PATH' });
            // A daemon that keeps its own manifests converged would prune what other manifests made at its next run.
            if (files.length && [...paths].sort().join('\0') !== [...files].sort().join('\0')) {
              throw new BerthError('FAILED_PRECONDITION', `the daemon (pid ${ctx.proc.pid}) keeps ${files.join(', ')} converged; it does not apply other manifests`, {
                hint: `edit the manifests under ${files.join(', ')}, or run berth apply -f ${files.join(' -f ')}`,
              });
            }
            const { report, desired } = await controller.runWith('api', () => loadDesired(paths, req.paths?.length ? (req.prune ?? false) : prune, ctx.globals.state));
            return { ...report, manifestErrors: (desired as Awaited<ReturnType<typeof loadDesired>>).errors };
          },
        },
        ctx.logger.child({ module: 'api' }),
      );
      cleanup.push(() => api.close());
      ctx.logger.info('daemon supervising', { manifests: files, containers: (await sys.metadata.containers.list()).length });
      const signal = await stopped;
      ctx.logger.info('daemon stopping; containers keep running', { signal });
    } finally {
      for (const fn of cleanup.reverse()) await Promise.resolve(fn()).catch(() => {});
    }
    return 0;
  },
};

const status: Command = {
  name: 'status',
  usage: 'berth status',
  summary: 'per object: state, image digest, restarts, last error, conditions Ready/Progressing/Degraded',
  async run(ctx) {
    positionals(ctx, 0, this.usage);
    const socket = join(ctx.globals.state, 'api.sock');
    const { callDaemon } = await import('../api/client.js');
    type Status = { objects: import('../reconcile/status.js').ObjectStatus[]; lastReconcile?: { converged: boolean; manifestErrors: number } | null };
    const served = await callDaemon<Status>(socket, 'GET', '/status', undefined, 5000).catch(() => undefined);
    // No daemon: what the records and the runtime say.
    const st: Status = served ?? { objects: (await import('../reconcile/status.js')).statusOf(await (await (await ctx.system()).containers()).list()) };
    if (ctx.globals.output === 'json') {
      writeJSON(ctx.proc.stdout, st);
      return 0;
    }
    const cond = (o: Status['objects'][number], t: string): string => {
      const c = o.conditions.find((x) => x.type === t);
      return c ? (c.status ? c.reason : '-') : '-';
    };
    ctx.proc.stdout.write(
      table(
        ['KIND', 'NAME', 'STATE', 'DIGEST', 'RESTARTS', 'READY', 'PROGRESSING', 'DEGRADED', 'LAST ERROR'],
        st.objects.map((o) => [o.kind, o.name, o.state, o.imageDigest ? shortDigest(o.imageDigest) : '-', String(o.restarts ?? '-'), cond(o, 'Ready'), cond(o, 'Progressing'), cond(o, 'Degraded'), o.lastError ?? '']),
      ),
    );
    const manifestErrors = st.lastReconcile?.manifestErrors ?? 0;
    if (manifestErrors) ctx.proc.stdout.write(`${counted(manifestErrors, 'manifest error')} in the daemon's last load (the daemon's log and berth validate -f DIR show them)\n`);
    if (!served) ctx.proc.stdout.write(`no daemon runs on ${ctx.globals.state}: this is what the records say; restarts and reconciles wait for berth daemon\n`);
    return manifestErrors || st.objects.some((o) => o.conditions.some((c) => c.type === 'Degraded' && c.status)) ? 1 : 0;
  },
};

function formatEvent(e: StoredEvent): string {
  const { type, ...fields } = e.event as { type: string } & Record<string, unknown>;
  const rest = Object.entries(fields)
    .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${String(e.seq).padStart(6)} ${e.time} ${type} ${rest}\n`;
}

const events: Command = {
  name: 'events',
  usage: 'berth events [--since SEQ] [-f]',
  summary: 'print stored events after SEQ (default: all kept); -f keeps printing new ones',
  options: { since: { type: 'string' }, follow: { type: 'boolean', short: 'f' } },
  async run(ctx) {
    positionals(ctx, 0, this.usage);
    const sinceText = typeof ctx.line.values.since === 'string' ? ctx.line.values.since : '0';
    let after = Number(sinceText);
    if (!Number.isSafeInteger(after) || after < 0) throw new BerthError('INVALID_ARGUMENT', `--since ${JSON.stringify(sinceText)} is not a sequence number`);
    const log = (await ctx.system()).metadata.events;
    const json = ctx.globals.output === 'json';
    let stop = false;
    const unlisten = ctx.line.values.follow ? ctx.proc.onSignal?.(() => (stop = true)) : undefined;
    try {
      for (;;) {
        const batch = await log.since(after);
        for (const e of batch) ctx.proc.stdout.write(json ? JSON.stringify(e) + '\n' : formatEvent(e));
        after = batch.at(-1)?.seq ?? after;
        // Served by a daemon, a follower ends with its client.
        if (!ctx.line.values.follow || stop || ctx.proc.gone?.aborted) break;
        // The log is written by other processes; LMDB does not notify across processes, so this reads again shortly.
        if (batch.length === 0) await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      unlisten?.();
    }
    return 0;
  },
};

export const daemonCommands: Command[] = [daemon, status, events];
