import { BerthError } from '../errors.js';
import { createLogger, type LogRecord } from '../log.js';
import type { System } from '../system.js';
import { parseCommandLine, resolveGlobals, type OptionSpec } from './args.js';
import { contentCommands } from './content.js';
import { containerCommands } from './container.js';
import { daemonCommands } from './daemon.js';
import { reconcileCommands } from './reconcile.js';
import type { Command, ProcessInfo } from './context.js';
import { formatError } from './format.js';
import { imageCommands } from './image.js';
import { imageTransferCommands } from './image-transfer.js';

/**
 * The shell: argv in, exit code out. Exit codes automation can rely on:
 * 0 success, 1 failure (any error; the message and hint are on stderr),
 * and, for `berth plan`, 2 when changes are pending.
 */

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;

const commands: Command[] = [...reconcileCommands, ...daemonCommands, ...containerCommands, ...imageCommands, ...imageTransferCommands, ...contentCommands];
const table: ReadonlyMap<string, OptionSpec> = new Map(commands.map((c) => [c.name, c.options ?? {}]));

function usage(): string {
  const width = Math.max(...commands.map((c) => c.usage.length));
  return [
    'berth — a declarative container engine for one host',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.usage.padEnd(width)}   ${c.summary}`),
    '',
    'global options (anywhere on the line):',
    '  --root DIR            persistent state (default /var/lib/berth, env BERTH_ROOT)',
    '  --state DIR           runtime state (default /run/berth, env BERTH_STATE)',
    '  --log-level L         debug | info | warn | error (default warn; env BERTH_LOG_LEVEL)',
    '  -o, --output F        text | json',
    '  --registry-config F   k3s-style registries.yaml (env BERTH_REGISTRY_CONFIG)',
    '',
  ].join('\n');
}

function logSink(proc: ProcessInfo, json: boolean): (rec: LogRecord) => void {
  return (rec) => {
    if (json) {
      proc.stderr.write(JSON.stringify({ time: rec.time, level: rec.level, msg: rec.msg, ...rec.fields }) + '\n');
      return;
    }
    const fields = Object.entries(rec.fields)
      .map(([k, v]) => `${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
      .join(' ');
    proc.stderr.write(`${rec.time} ${rec.level.toUpperCase().padEnd(5)} ${rec.msg}${fields ? ' ' + fields : ''}\n`);
  };
}

export async function runCli(argv: string[], proc: ProcessInfo): Promise<number> {
  let withStack = false;
  let system: System | undefined;
  try {
    const line = parseCommandLine(argv, table);
    const globals = resolveGlobals(line.values, proc.env, proc.home);
    withStack = globals.logLevel === 'debug';
    const command = commands.find((c) => c.name === line.command.join(' '));
    if (line.values.help || !command) {
      if (!command && (line.positionals.length || line.command.length)) {
        throw new BerthError('INVALID_ARGUMENT', `unknown command "${[...line.command, ...line.positionals].join(' ')}"`, { hint: 'run: berth --help' });
      }
      proc.stdout.write(command ? `usage: ${command.usage}\n  ${command.summary}\n` : usage());
      return EXIT_OK;
    }
    const logger = createLogger(logSink(proc, globals.output === 'json'), globals.logLevel);
    return await command.run({
      line,
      globals,
      proc,
      logger,
      // Loaded on first use: the store (LMDB) is most of berth's start-up, and commands that hand their work to the daemon never open it.
      system: async () => {
        const { openSystem } = await import('../system.js');
        system ??= await openSystem({
          root: globals.root,
          state: globals.state,
          logger,
          registryConfig: globals.registryConfig,
          extraCAFile: globals.extraCAFile,
          dockerConfig: globals.dockerConfig,
          hostPlatform: proc.hostPlatform,
          pid: proc.pid,
          isAlive: proc.isAlive,
          searchPath: (proc.env.PATH ?? '').split(':').filter((d) => d.startsWith('/')),
          actor: `berth ${line.command.join(' ')}`,
        });
        return system;
      },
    });
  } catch (err) {
    proc.stderr.write(formatError(err, withStack));
    return EXIT_FAILURE;
  } finally {
    await system?.close().catch(() => {});
  }
}
