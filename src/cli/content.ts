import type { Command } from './context.js';
import { writeJSON } from './context.js';
import { counted } from './format.js';

/** `berth content verify`: re-hash every blob and report the bad ones. */

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

export const contentCommands: Command[] = [verify];
