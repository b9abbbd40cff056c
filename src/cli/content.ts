import type { GcReport } from '../gc/index.js';
import type { Logger } from '../log.js';
import type { System } from '../system.js';
import type { Command } from './context.js';
import { positionals, writeJSON } from './context.js';
import { counted, formatBytes, shortDigest } from './format.js';

/** `berth content verify`: re-hash every blob and report the bad ones. `berth gc`: remove what nothing uses. */

const verify: Command = {
  name: 'content verify',
  usage: 'berth content verify',
  summary: 're-hash every stored blob; exit 1 if any is corrupt',
  async run(ctx) {
    const sys = await ctx.system();
    let good = 0;
    const bad: string[] = [];
    for await (const blob of sys.content.list()) {
      if (await sys.content.verify(blob.digest)) good++;
      else bad.push(blob.digest);
    }
    if (ctx.globals.output === 'json') writeJSON(ctx.proc.stdout, { good, bad });
    else {
      for (const d of bad) ctx.proc.stdout.write(`corrupt: ${d}\n`);
      ctx.proc.stdout.write(`${counted(good, 'blob')} good, ${bad.length} corrupt\n`);
    }
    if (bad.length) {
      sys.logger.error('corrupt blobs found', { count: bad.length });
      return 1;
    }
    return 0;
  },
};

/** A collection over the System's stores (berth gc, the daemon's scheduler), publishing gc.done on its bus. */
export async function garbageCollector(sys: System, logger: Logger): Promise<(opts?: { dryRun?: boolean }) => Promise<GcReport>> {
  const [{ collectGarbage }, { name, snapshotter }] = await Promise.all([import('../gc/index.js'), sys.snapshotter()]);
  const deps = { content: sys.content, metadata: sys.metadata, snapshotter, snapshotterName: name, events: sys.events, logger, holderRunning: sys.holderRunning };
  return (opts) => collectGarbage(deps, opts);
}

const gc: Command = {
  name: 'gc',
  usage: 'berth gc [--dry-run]',
  summary: 'remove blobs, snapshots and stale partial downloads that no image, container or pull in progress uses',
  options: { 'dry-run': { type: 'boolean' } },
  async run(ctx) {
    positionals(ctx, 0, this.usage);
    const sys = await ctx.system();
    const report = await (await garbageCollector(sys, sys.logger))({ dryRun: Boolean(ctx.line.values['dry-run']) });
    if (ctx.globals.output === 'json') {
      writeJSON(ctx.proc.stdout, report);
      return 0;
    }
    const verb = report.dryRun ? 'would remove' : 'removed';
    for (const b of report.blobs) ctx.proc.stdout.write(`${verb} blob ${b.digest} (${formatBytes(b.size)})\n`);
    for (const s of report.snapshots) ctx.proc.stdout.write(`${verb} snapshot ${shortDigest(s)}\n`);
    for (const i of report.ingests) ctx.proc.stdout.write(`${verb} partial download ${i}\n`);
    for (const l of report.leases) ctx.proc.stdout.write(`${verb} expired lease ${l}\n`);
    for (const k of report.skipped) ctx.proc.stdout.write(`kept ${k.what}: ${k.reason}\n`);
    ctx.proc.stdout.write(
      `${report.dryRun ? 'dry run: would remove' : 'removed'} ${counted(report.blobs.length, 'blob')}, ${counted(report.snapshots.length, 'snapshot')}, ${counted(report.ingests.length, 'partial download')}; ${formatBytes(report.bytes)} of content\n`,
    );
    return 0;
  },
};

export const contentCommands: Command[] = [verify, gc];
