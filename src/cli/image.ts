import { resolve } from 'node:path';
import { BerthError } from '../errors.js';
import { parsePlatform } from '../oci/platform.js';
import type { Command, CommandContext } from './context.js';
import { positionals, writeJSON } from './context.js';
import { formatBytes, table } from './format.js';
import { PullProgress } from './progress.js';

/** `berth image …`: pull, ls, inspect, rm. */

function oneRef(ctx: CommandContext, usage: string): string {
  return positionals(ctx, 1, usage)[0]!;
}

/** `--max-concurrent-downloads N` (Docker's and ctr's name): blobs one pull downloads at once, 3 when absent. */
export const downloadsOption = { 'max-concurrent-downloads': { type: 'string' } } as const;

export function maxDownloads(ctx: CommandContext): number | undefined {
  const v = ctx.line.values['max-concurrent-downloads'];
  if (typeof v !== 'string') return undefined;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > 64) {
    throw new BerthError('INVALID_ARGUMENT', `--max-concurrent-downloads ${JSON.stringify(v)} is not a whole number from 1 to 64`);
  }
  return n;
}

const pull: Command = {
  name: 'image pull',
  usage: 'berth image pull REF [--platform os/arch[/variant]] [--no-unpack] [--max-concurrent-downloads N]',
  summary: 'fetch an image, verify and store it, unpack it into snapshots',
  options: { platform: { type: 'string' }, 'no-unpack': { type: 'boolean' }, ...downloadsOption },
  async run(ctx) {
    const ref = oneRef(ctx, this.usage);
    const platform = typeof ctx.line.values.platform === 'string' ? parsePlatform(ctx.line.values.platform) : undefined;
    const concurrency = maxDownloads(ctx);
    const sys = await ctx.system();
    const out = ctx.proc.stdout;
    const json = ctx.globals.output === 'json';
    const progress = new PullProgress(ctx.proc.stderr, Boolean(ctx.proc.stderr.isTTY));
    const unsubscribe = sys.events.subscribe((e) => (json ? out.write(JSON.stringify(e) + '\n') : progress.handle(e)));
    try {
      const res = await (await sys.puller()).pull(ref, { ...(platform ? { platform } : {}), ...(concurrency ? { concurrency } : {}), unpack: !ctx.line.values['no-unpack'] });
      if (json) out.write(JSON.stringify({ name: res.record.name, digest: res.record.target.digest, manifest: res.manifest.digest, fetchedBytes: res.fetchedBytes, durationMs: res.durationMs }) + '\n');
      else out.write(`${res.record.name} ${res.record.target.digest}\n`);
      return 0;
    } finally {
      unsubscribe();
    }
  },
};

const ls: Command = {
  name: 'image ls',
  usage: 'berth image ls',
  summary: 'list images: name, digest, size, platform',
  async run(ctx) {
    const images = await (await ctx.system()).images.list();
    if (ctx.globals.output === 'json') writeJSON(ctx.proc.stdout, images);
    else ctx.proc.stdout.write(table(['NAME', 'DIGEST', 'SIZE', 'PLATFORM'], images.map((i) => [i.name, i.digest, formatBytes(i.size), i.platform ?? '-'])));
    return 0;
  },
};

const inspect: Command = {
  name: 'image inspect',
  usage: 'berth image inspect REF',
  summary: 'print an image record, its manifest and config as JSON',
  async run(ctx) {
    writeJSON(ctx.proc.stdout, await (await ctx.system()).images.inspect(oneRef(ctx, this.usage)));
    return 0;
  },
};

const rm: Command = {
  name: 'image rm',
  usage: 'berth image rm REF...',
  summary: 'remove image names (berth gc then frees the content and snapshots nothing else uses)',
  async run(ctx) {
    if (!ctx.line.positionals.length) throw new BerthError('INVALID_ARGUMENT', 'expected at least one image reference', { hint: `usage: ${this.usage}` });
    const sys = await ctx.system();
    for (const ref of ctx.line.positionals) {
      const removed = await sys.images.remove(ref);
      ctx.proc.stdout.write(`${removed.name}\n`);
    }
    return 0;
  },
};

const unpack: Command = {
  name: 'image unpack',
  usage: 'berth image unpack REF DIR',
  summary: "write the image's root filesystem to DIR as a plain directory",
  async run(ctx) {
    const [ref, dir] = positionals(ctx, 2, this.usage) as [string, string];
    const sys = await ctx.system();
    const { writeRootfs } = await import('../images/rootfs.js');
    await writeRootfs(sys.content, await sys.images.inspect(ref), resolve(dir), sys.logger);
    ctx.proc.stdout.write(`${resolve(dir)}\n`);
    return 0;
  },
};

const bundle: Command = {
  name: 'bundle create',
  usage: 'berth bundle create --image REF DIR',
  summary: 'write an OCI bundle: DIR/config.json and DIR/rootfs/',
  options: { image: { type: 'string' } },
  async run(ctx) {
    const ref = ctx.line.values.image;
    const [dir, ...extra] = ctx.line.positionals;
    if (typeof ref !== 'string' || !dir || extra.length) throw new BerthError('INVALID_ARGUMENT', 'expected --image REF and one directory', { hint: `usage: ${this.usage}` });
    const sys = await ctx.system();
    const { createBundle } = await import('../images/rootfs.js');
    await createBundle(sys.content, await sys.images.inspect(ref), resolve(dir), sys.logger);
    ctx.proc.stdout.write(`${resolve(dir)}\n`);
    return 0;
  },
};

export const imageCommands: Command[] = [pull, ls, inspect, rm, unpack, bundle];
