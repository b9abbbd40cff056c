import { join } from 'node:path';
import { BerthError } from '../errors.js';
import { acquireLock } from '../lock/index.js';
import type { StoredEvent } from '../metadata/store.js';
import type { Command } from './context.js';
import { positionals } from './context.js';

/** `berth daemon` (supervision; manifests come with the reconciler) and `berth events`. */

const daemon: Command = {
  name: 'daemon',
  usage: 'berth daemon',
  summary: 'supervise containers: restart policies, exits, adoption after a restart of berth',
  async run(ctx) {
    positionals(ctx, 0, this.usage);
    if (!ctx.proc.onSignal) throw new BerthError('INTERNAL', 'the daemon needs signal handling');
    const sys = await ctx.system();
    const service = await sys.containers();
    // The state's one writer: a second daemon (or, later, an apply) is refused, naming this one.
    const lock = await acquireLock(join(ctx.globals.state, 'lock'), { holder: { pid: ctx.proc.pid, what: 'berth daemon' }, timeoutMs: 0, what: `state ${ctx.globals.state}` });
    const { Supervisor } = await import('../containers/index.js');
    const supervisor = new Supervisor({ service, runtime: await sys.runtime(), metadata: sys.metadata, events: sys.events, logger: ctx.logger.child({ module: 'supervisor' }) });
    try {
      const stopped = new Promise<number>((resolve) => ctx.proc.onSignal!((signal) => resolve(signal)));
      await supervisor.start();
      ctx.logger.info('daemon supervising', { containers: (await sys.metadata.containers.list()).length });
      const signal = await stopped;
      ctx.logger.info('daemon stopping; containers keep running', { signal });
    } finally {
      await supervisor.stop();
      await lock.release();
    }
    return 0;
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
        if (!ctx.line.values.follow || stop) break;
        // Another process writes the log; LMDB has no change notification across processes, so this reads again shortly.
        if (batch.length === 0) await new Promise((r) => setTimeout(r, 250));
      }
    } finally {
      unlisten?.();
    }
    return 0;
  },
};

export const daemonCommands: Command[] = [daemon, events];
