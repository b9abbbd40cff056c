import { resolve } from 'node:path';
import { Writable } from 'node:stream';
import { BerthError } from '../errors.js';
import type { ImageExporter, ImageImporter } from '../images/index.js';
import { formatPlatform, parsePlatform } from '../oci/platform.js';
import type { System } from '../system.js';
import type { Command, CommandContext } from './context.js';
import { positionals, writeJSON } from './context.js';
import { formatBytes } from './format.js';

/** `berth image import|export`: images to and from files, the air-gap path. */

// Loaded on use: tar-stream and the archive code are not needed by other commands.
async function importer(sys: System, ctx: CommandContext): Promise<ImageImporter> {
  const { ImageImporter } = await import('../images/import.js');
  return new ImageImporter({ content: sys.content, metadata: sys.metadata, events: sys.events, logger: sys.logger.child({ module: 'images' }), hostPlatform: ctx.proc.hostPlatform, leaseHolder: sys.leaseHolder });
}

async function exporter(sys: System): Promise<ImageExporter> {
  const { ImageExporter } = await import('../images/export.js');
  return new ImageExporter({ content: sys.content, metadata: sys.metadata, logger: sys.logger.child({ module: 'images' }) });
}

const importCommand: Command = {
  name: 'image import',
  usage: 'berth image import PATH [--name REF] [--platform os/arch[/variant]] [--no-unpack]',
  summary: 'load an image from an OCI layout directory, an OCI archive (.tar, .tar.gz) or a docker save tar, and unpack it',
  options: { name: { type: 'string' }, platform: { type: 'string' }, 'no-unpack': { type: 'boolean' } },
  async run(ctx) {
    const [path] = positionals(ctx, 1, this.usage);
    const { name, platform } = ctx.line.values;
    const sys = await ctx.system();
    const res = await (await importer(sys, ctx)).import(resolve(path!), {
      ...(typeof name === 'string' ? { name } : {}),
      ...(typeof platform === 'string' ? { platform: parsePlatform(platform) } : {}),
    });
    // Like `ctr import`: an imported image is ready to run, which needs its snapshots.
    if (!ctx.line.values['no-unpack']) {
      const unpacker = await sys.unpacker();
      for (const i of res.images) {
        const detail = await sys.images.inspect(i.record.name);
        if (detail.manifest && detail.config) await unpacker.unpackStored(i.record.name, detail.manifest, detail.config);
      }
    }
    if (ctx.globals.output === 'json') {
      writeJSON(ctx.proc.stdout, {
        format: res.format,
        images: res.images.map((i) => ({ name: i.record.name, digest: i.record.target.digest, manifest: i.manifest.digest, platform: formatPlatform(i.platform) })),
        storedBytes: res.storedBytes,
        durationMs: res.durationMs,
      });
    } else {
      for (const i of res.images) ctx.proc.stdout.write(`${i.record.name} ${i.record.target.digest}\n`);
    }
    return 0;
  },
};

const exportCommand: Command = {
  name: 'image export',
  usage: 'berth image export REF FILE',
  summary: 'write an image as an OCI archive to FILE (- for stdout), for skopeo, ctr import or berth image import',
  async run(ctx) {
    const [ref, file] = positionals(ctx, 2, this.usage);
    const sys = await ctx.system();
    if (file === '-') {
      const out: unknown = ctx.proc.stdout;
      if (!(out instanceof Writable)) throw new BerthError('INTERNAL', 'standard output is not a stream');
      if (ctx.proc.stdout.isTTY) throw new BerthError('INVALID_ARGUMENT', 'refusing to write an archive to a terminal', { hint: 'redirect standard output to a file or a pipe, or give a FILE' });
      await (await exporter(sys)).exportToStream(ref!, out);
      return 0;
    }
    const res = await (await exporter(sys)).exportToFile(ref!, resolve(file!));
    if (ctx.globals.output === 'json') writeJSON(ctx.proc.stdout, { name: res.name, digest: res.target.digest, file: resolve(file!), blobs: res.blobs.length, bytes: res.bytes });
    else ctx.proc.stdout.write(`${res.name} ${res.target.digest} → ${file} (${res.blobs.length} blobs, ${formatBytes(res.bytes)})\n`);
    return 0;
  },
};

export const imageTransferCommands: Command[] = [importCommand, exportCommand];
