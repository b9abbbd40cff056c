import { AsyncLocalStorage } from 'node:async_hooks';
import { BerthError } from '../errors.js';
import { createLogger, LogLevels, type LogLevel, type LogRecord } from '../log.js';
import type { System } from '../system.js';
import { parseCommandLine, resolveGlobals, type GlobalOptions, type OptionSpec } from './args.js';
import { contentCommands } from './content.js';
import { containerCommands } from './container.js';
import { daemonCommands } from './daemon.js';
import { reconcileCommands } from './reconcile.js';
import type { Command, ProcessInfo, ServeOptions } from './context.js';
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

/** Summaries start in this column; a longer usage puts its summary on the next line, there. */
const USAGE_COLUMN = 52;

function usage(): string {
  const line = (c: Command): string => (c.usage.length < USAGE_COLUMN ? `  ${c.usage.padEnd(USAGE_COLUMN)} ${c.summary}` : `  ${c.usage}\n  ${' '.repeat(USAGE_COLUMN)} ${c.summary}`);
  return [
    'berth — a declarative container engine for one host',
    '',
    'commands:',
    ...commands.map(line),
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

/**
 * Where a served command's log records go besides the daemon's own log: the
 * client's stderr, at the client's level. Set for the duration of a served
 * command, so records of the daemon's System made on its behalf reach the
 * client too (`berth --log-level debug run ...` through the daemon).
 */
const servedLogs = new AsyncLocalStorage<{ sink: (rec: LogRecord) => void; min: number }>();

function teeToServed(own: (rec: LogRecord) => void, level: LogLevel): (rec: LogRecord) => void {
  const min = LogLevels.indexOf(level);
  return (rec) => {
    const at = LogLevels.indexOf(rec.level);
    if (at >= min) own(rec);
    const served = servedLogs.getStore();
    if (served && at >= served.min) served.sink(rec);
  };
}

/** The names of every command ("plan", "image pull"). */
export function commandNames(): string[] {
  return commands.map((c) => c.name);
}

export function runCli(argv: string[], proc: ProcessInfo): Promise<number> {
  return execute(argv, proc, undefined) as Promise<number>;
}

/**
 * Runs a command line on the daemon's behalf with its open System (which is
 * not closed here): the command's output goes to `proc`, as it would in the
 * client's own process. Returns `{refused}` without running anything when
 * `opts.refuse` turns the line down (the client then runs it itself).
 */
export function serveCli(argv: string[], proc: ProcessInfo, opts: ServeOptions): Promise<number | { refused: string }> {
  return execute(argv, proc, opts);
}

async function execute(argv: string[], proc: ProcessInfo, served: ServeOptions | undefined): Promise<number | { refused: string }> {
  let withStack = false;
  let system: System | undefined;
  try {
    const line = parseCommandLine(argv, table);
    const globals: GlobalOptions = resolveGlobals(line.values, proc.env, proc.home);
    withStack = globals.logLevel === 'debug';
    const command = commands.find((c) => c.name === line.command.join(' '));
    if (served) {
      const why = served.refuse(line.command.join(' '), globals);
      if (why) return { refused: why };
      served.accepted?.();
    }
    if (line.values.help || !command) {
      if (!command && (line.positionals.length || line.command.length)) {
        throw new BerthError('INVALID_ARGUMENT', `unknown command "${[...line.command, ...line.positionals].join(' ')}"`, { hint: 'run: berth --help' });
      }
      proc.stdout.write(command ? `usage: ${command.usage}\n  ${command.summary}\n` : usage());
      return EXIT_OK;
    }
    const sink = logSink(proc, globals.output === 'json');
    // The daemon's logger passes every record on to the served command that caused it (servedLogs), whatever the daemon's own level.
    const logger = command.name === 'daemon' ? createLogger(teeToServed(sink, globals.logLevel), 'debug') : createLogger(sink, globals.logLevel);
    const ctx = {
      line,
      globals,
      proc,
      logger,
      serve: (a: string[], p: ProcessInfo, o: ServeOptions) => serveCli(a, p, o),
      // Loaded on first use: the store (LMDB) is most of berth's start-up, and commands that hand their work to the daemon never open it.
      system: async () => {
        if (served) return served.system;
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
          ...(proc.self ? { self: proc.self } : {}),
        });
        return system;
      },
    };
    if (!served) return await command.run(ctx);
    // Callbacks registered meanwhile (timers, watches) keep the store after the command ended: they must not write to a finished client.
    let open = true;
    const store = { sink: (rec: LogRecord) => void (open && sink(rec)), min: LogLevels.indexOf(globals.logLevel) };
    try {
      return await servedLogs.run(store, () => command.run(ctx));
    } finally {
      open = false;
    }
  } catch (err) {
    proc.stderr.write(formatError(err, withStack));
    return EXIT_FAILURE;
  } finally {
    await system?.close().catch(() => {});
  }
}
