import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ApplyReport, Change, Plan, ReconcileDeps } from '../reconcile/index.js';
import { BerthError } from '../errors.js';
import type { LoadResult } from '../manifests/index.js';
import type { System } from '../system.js';
import type { Command, CommandContext, Output } from './context.js';
import { writeJSON } from './context.js';
import { parseDurationOption } from './duration.js';
import { downloadsOption, maxDownloads } from './image.js';
import { counted, shortDigest } from './format.js';

/**
 * `berth validate | plan | apply | explain`: the manifests in, a plan out,
 * the host converged. Exit codes: validate 0 valid, 1 not; plan 0 nothing
 * to do, 2 changes pending, 1 error (a manifest error wins: the plan is
 * shown for the good files but is not the whole truth); apply 0 converged,
 * 1 not.
 */

export const EXIT_CHANGES = 2;

function paths(ctx: CommandContext, usage: string): string[] {
  const v = ctx.line.values.file;
  const list = (Array.isArray(v) ? v : v === undefined ? [] : [v]).filter((x): x is string => typeof x === 'string');
  if (!list.length) throw new BerthError('INVALID_ARGUMENT', 'expected -f PATH (a manifest file or directory)', { hint: `usage: ${usage}` });
  return list.map((p) => resolve(p));
}

/** Reads the manifests; unchanged files come from the parse cache under --state (cache/manifests, owner-only). */
export async function load(files: string[], state: string): Promise<LoadResult & { desired: import('../manifests/index.js').DesiredState }> {
  const m = await import('../manifests/index.js');
  const result = await m.loadManifests(files, { cache: new m.DirectoryParseCache(join(state, 'cache', 'manifests')) });
  if (result.files.length === 0) throw new BerthError('INVALID_ARGUMENT', `no manifest files (*.yaml, *.yml, *.json) in ${files.join(', ')}`);
  return { ...result, desired: m.desiredState(result.objects) };
}

export async function printManifestErrors(out: Output, result: LoadResult): Promise<void> {
  const { formatManifestError } = await import('../manifests/index.js');
  for (const e of result.errors) out.write(formatManifestError(e) + '\n');
}

/**
 * Label on the image names the reconciler pulled, which prune may untag
 * (reconcile/plan.ts). A pull or import by hand writes the record without
 * it, and so takes the name over.
 */
export const ManagedImageLabel = 'berth.io/managed';

/** What the reconciler needs, from the opened system; `downloads` bounds each pull's blob downloads (--max-concurrent-downloads). */
export async function reconcileDeps(sys: System, downloads?: number): Promise<ReconcileDeps> {
  const { canonicalName } = await import('../images/inventory.js');
  const { parsePlatform } = await import('../oci/platform.js');
  return {
    containers: await sys.containers(),
    images: {
      async stored(ref) {
        try {
          return (await sys.images.stored(ref)).manifestDescriptor?.digest;
        } catch {
          return undefined;
        }
      },
      async pull(ref, opts) {
        await (await sys.puller()).pull(ref, {
          unpack: true,
          labels: { [ManagedImageLabel]: 'true' },
          ...(downloads ? { concurrency: downloads } : {}),
          ...(opts?.platform ? { platform: parsePlatform(opts.platform) } : {}),
        });
      },
      async managed() {
        return (await sys.metadata.images.list()).filter((r) => r.labels[ManagedImageLabel] === 'true').map((r) => r.name);
      },
      async untag(name) {
        // Checked again here: the name may have been pulled by hand since the plan was made.
        if ((await sys.metadata.images.get(name))?.labels[ManagedImageLabel] === 'true') await sys.images.remove(name);
      },
    },
    events: sys.events,
    logger: sys.logger.child({ module: 'reconcile' }),
    canonical: canonicalName,
  };
}

const SYMBOL: Record<Change['action'], string> = { pull: '↓', create: '+', replace: '~', update: '~', start: '>', stop: '.', delete: '-', untag: '-' };

function changeLine(c: Change): string {
  switch (c.action) {
    case 'pull':
    case 'untag':
      return `${SYMBOL[c.action]} ${c.action} ${c.image} (${c.reason})`;
    case 'create':
      // No digest yet: a create still waiting for its image.
      return `${SYMBOL.create} create ${c.name} (${c.container.image}${c.digest ? `@${shortDigest(c.digest)}` : ''})`;
    case 'replace':
    case 'update':
      return `${SYMBOL[c.action]} ${c.action} ${c.name}: ${c.reason}`;
    default:
      return `${SYMBOL[c.action]} ${c.action} ${c.name}: ${c.reason}`;
  }
}

function renderPlan(out: Output, p: Plan): void {
  for (const c of p.changes) {
    out.write(changeLine(c) + '\n');
    if (c.action === 'replace' || c.action === 'update') for (const d of c.diff) out.write(`    ${d.path}: ${JSON.stringify(d.from) ?? '(none)'} → ${JSON.stringify(d.to) ?? '(none)'}${d.replace ? '' : ' (in place)'}\n`);
  }
  for (const n of p.pending) out.write(`? ${n}: create or replace decided after its image is pulled\n`);
  for (const i of p.refresh) out.write(`  refresh ${i} (pullPolicy Always; a change only if its digest moved)\n`);
  for (const c of p.conflicts) out.write(`! ${c.name}: ${c.message}\n`);
  for (const o of p.orphans) out.write(`  orphan ${o}: no manifest declares it (berth apply --prune removes it)\n`);
  const count = (a: Change['action']): number => p.changes.filter((c) => c.action === a).length;
  out.write(
    `plan: ${count('pull')} to pull, ${count('create')} to create, ${count('replace')} to replace, ${count('update')} to update, ${count('start')} to start, ${count('stop')} to stop, ${count('delete')} to delete, ${count('untag')} to untag; ${p.unchanged.length} unchanged\n`,
  );
}

const validate: Command = {
  name: 'validate',
  usage: 'berth validate -f PATH...',
  summary: 'check manifests against the schemas and each other; exit 0 valid, 1 not',
  options: { file: { type: 'string', short: 'f', multiple: true } },
  async run(ctx) {
    const result = await load(paths(ctx, this.usage), ctx.globals.state);
    if (ctx.globals.output === 'json') writeJSON(ctx.proc.stdout, { files: result.files, objects: result.objects.length, errors: result.errors });
    else {
      await printManifestErrors(ctx.proc.stderr, result);
      ctx.proc.stdout.write(`${counted(result.objects.length, 'object')} valid in ${counted(result.files.length, 'file')}; ${counted(result.errors.length, 'error')}\n`);
    }
    return result.errors.length ? 1 : 0;
  },
};

const planCommand: Command = {
  name: 'plan',
  usage: 'berth plan -f PATH... [--prune]',
  summary: 'print what apply would change; exit 0 nothing to do, 2 changes pending, 1 error',
  options: { file: { type: 'string', short: 'f', multiple: true }, prune: { type: 'boolean' } },
  async run(ctx) {
    const result = await load(paths(ctx, this.usage), ctx.globals.state);
    const sys = await ctx.system();
    const { planFor, hasChanges } = await import('../reconcile/index.js');
    const p = await planFor(await reconcileDeps(sys), result.desired, protection(result, Boolean(ctx.line.values.prune)));
    if (ctx.globals.output === 'json') writeJSON(ctx.proc.stdout, { plan: p, errors: result.errors });
    else {
      await printManifestErrors(ctx.proc.stderr, result);
      renderPlan(ctx.proc.stdout, p);
    }
    if (result.errors.length || p.conflicts.length) return 1;
    return hasChanges(p) ? EXIT_CHANGES : 0;
  },
};

/** Prune settings that spare what failed to load. */
export function protection(result: LoadResult, prune: boolean): { prune: boolean; keep: Set<string>; badFiles: Set<string> } {
  return {
    prune,
    keep: new Set(result.errors.flatMap((e) => (e.object ? [e.object.name] : []))),
    badFiles: new Set(result.errors.map((e) => e.file)),
  };
}

/** The report; `manifestErrors` (printed apart, on stderr) keep the summary from saying "converged". */
export function renderReport(out: Output, report: ApplyReport, manifestErrors = 0): void {
  for (const s of report.steps) {
    const mark = s.ok ? 'ok  ' : s.skipped ? 'skip' : 'FAIL';
    out.write(`${mark} ${changeLine(s.change)}${s.ok ? ` (${s.durationMs} ms)` : ''}\n`);
    if (s.error) out.write(`       ${s.error.message}${s.error.hint ? `\n       hint: ${s.error.hint}` : ''}\n`);
  }
  for (const c of report.plan.conflicts) out.write(`FAIL ! ${c.name}: ${c.message}\n`);
  for (const o of report.plan.orphans) out.write(`     orphan ${o}: no manifest declares it (--prune removes it)\n`);
  const failed = report.steps.filter((s) => !s.ok).length + report.plan.conflicts.length;
  const total = report.steps.length + report.plan.conflicts.length;
  let summary = report.converged ? `${counted(report.steps.length, 'change')} applied` : `${failed} of ${total} failed`;
  if (manifestErrors) summary += `; ${counted(manifestErrors, 'manifest error')}, their objects left as they are`;
  out.write(`${report.converged && !manifestErrors ? 'converged' : 'not converged'}: ${summary}\n`);
}

const apply: Command = {
  name: 'apply',
  usage: 'berth apply -f PATH... [--dry-run] [--prune] [--wait] [--timeout D] [--max-concurrent-downloads N]',
  summary: 'converge the host on the manifests; exit 0 converged, 1 not',
  options: {
    file: { type: 'string', short: 'f', multiple: true },
    'dry-run': { type: 'boolean' },
    prune: { type: 'boolean' },
    wait: { type: 'boolean' },
    timeout: { type: 'string' },
    ...downloadsOption,
  },
  async run(ctx) {
    const files = paths(ctx, this.usage);
    const downloads = maxDownloads(ctx);
    const prune = Boolean(ctx.line.values.prune);
    const timeoutMs = parseDurationOption(ctx.line.values.timeout, '--timeout', 60_000);
    const json = ctx.globals.output === 'json';
    if (ctx.line.values['dry-run']) return planCommand.run.call(planCommand, ctx);
    const socket = join(ctx.globals.state, 'api.sock');
    let report: ApplyReport & { manifestErrors?: LoadResult['errors'] };
    let result: Awaited<ReturnType<typeof load>> | undefined;
    if (existsSync(socket) && (await daemonAnswers(socket))) {
      // One writer: the daemon applies, and we report its result.
      if (downloads) ctx.logger.warn('a daemon runs on this state: its pulls use its own --max-concurrent-downloads', { state: ctx.globals.state });
      const { callDaemon } = await import('../api/client.js');
      report = await callDaemon(socket, 'POST', '/reconcile', { paths: files, prune }, timeoutMs || undefined);
    } else {
      result = await load(files, ctx.globals.state);
      const sys = await ctx.system();
      const { acquireLock } = await import('../lock/index.js');
      const lock = await acquireLock(join(ctx.globals.state, 'lock'), { holder: { pid: ctx.proc.pid, what: 'berth apply' }, timeoutMs, what: `state ${ctx.globals.state}` });
      try {
        const { apply: applyDesired } = await import('../reconcile/index.js');
        report = { ...(await applyDesired(await reconcileDeps(sys, downloads), result.desired, protection(result, prune))), manifestErrors: result.errors };
        if (ctx.line.values.wait && report.converged) report.converged = await waitReady(sys, result.desired.containers.filter((c) => c.state === 'running').map((c) => c.name), timeoutMs, ctx.proc.stderr);
      } finally {
        await lock.release();
      }
    }
    const errors = report.manifestErrors ?? [];
    if (json) writeJSON(ctx.proc.stdout, report);
    else {
      if (result) await printManifestErrors(ctx.proc.stderr, result);
      else {
        const { formatManifestError } = await import('../manifests/index.js');
        for (const e of errors) ctx.proc.stderr.write(formatManifestError(e) + '\n');
      }
      renderReport(ctx.proc.stdout, report, errors.length);
    }
    return report.converged && errors.length === 0 ? 0 : 1;
  },
};

async function daemonAnswers(socket: string): Promise<boolean> {
  const { callDaemon } = await import('../api/client.js');
  return callDaemon(socket, 'GET', '/status', undefined, 2000).then(
    () => true,
    () => false,
  );
}

/** Waits until every named container runs (and has not restarted meanwhile), up to timeoutMs. */
async function waitReady(sys: System, names: string[], timeoutMs: number, out: Output): Promise<boolean> {
  const svc = await sys.containers();
  const deadline = Date.now() + (timeoutMs || 60_000);
  for (;;) {
    const views = await Promise.all(names.map((n) => svc.get(n).catch(() => undefined)));
    const notReady = names.filter((_, i) => views[i]?.state !== 'running');
    if (!notReady.length) return true;
    if (Date.now() >= deadline) {
      out.write(`not ready after ${timeoutMs} ms: ${notReady.join(', ')}\n`);
      return false;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

const explain: Command = {
  name: 'explain',
  usage: 'berth explain NAME [-f PATH...]',
  summary: 'why a container was replaced (from the event log) or, with -f, will be, field by field',
  options: { file: { type: 'string', short: 'f', multiple: true } },
  async run(ctx) {
    const name = ctx.line.positionals[0];
    if (!name || ctx.line.positionals.length > 1) throw new BerthError('INVALID_ARGUMENT', 'expected one container name', { hint: `usage: ${this.usage}` });
    const sys = await ctx.system();
    const out = ctx.proc.stdout;
    if (ctx.line.values.file !== undefined) {
      const result = await load(paths(ctx, this.usage), ctx.globals.state);
      const { planFor } = await import('../reconcile/index.js');
      const p = await planFor(await reconcileDeps(sys), result.desired, { prune: false });
      const c = p.changes.find((x) => 'name' in x && x.name === name);
      if (!c) out.write(p.pending.includes(name) ? `${name}: decided after its image is pulled\n` : `${name}: nothing to change\n`);
      else renderPlan(out, { ...p, changes: [c], pending: [], refresh: [], conflicts: [], orphans: [], unchanged: [] });
      return 0;
    }
    const events = await sys.metadata.events.since(0, 100_000);
    const last = events.filter((e) => e.event.type === 'container.replaced' && e.event.name === name).at(-1);
    if (!last || last.event.type !== 'container.replaced') {
      out.write(`${name}: no replacement on record (berth explain ${name} -f DIR tells whether one is due)\n`);
      return 0;
    }
    out.write(`${name} was replaced at ${last.time} (event ${last.seq}): ${last.event.reason}\n`);
    for (const d of last.event.diff) out.write(`    ${d.path}: ${JSON.stringify(d.from) ?? '(none)'} → ${JSON.stringify(d.to) ?? '(none)'}\n`);
    return 0;
  },
};

export const reconcileCommands: Command[] = [validate, planCommand, apply, explain];
