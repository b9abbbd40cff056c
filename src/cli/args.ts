import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BerthError } from '../errors.js';
import { LogLevels, type LogLevel } from '../log.js';

/**
 * Command-line parsing on node:util's parseArgs (no dependency needed): a
 * table of commands, each with its own options; global options are accepted
 * anywhere on the line. Anything after `--` is passed through untouched.
 */

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface GlobalOptions {
  root: string;
  state: string;
  logLevel: LogLevel;
  output: 'text' | 'json';
  registryConfig: string | undefined;
  dockerConfig: string;
  /** NODE_EXTRA_CA_CERTS as the launcher (main.ts's first line) passed it on: certificates trusted next to the system roots. */
  extraCAFile: string | undefined;
}

export const globalOptionSpec: OptionSpec = {
  root: { type: 'string' },
  state: { type: 'string' },
  'log-level': { type: 'string' },
  output: { type: 'string', short: 'o' },
  'registry-config': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

export interface ParsedLine {
  /** The command words, e.g. ["image", "pull"]. */
  command: string[];
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  positionals: string[];
  /** Arguments after `--`. */
  passthrough: string[];
}

/**
 * Splits argv into the command words (the longest prefix of non-option words
 * that names a command in `commands`) and parses the rest with the global
 * options plus the command's own.
 */
export function parseCommandLine(argv: string[], commands: ReadonlyMap<string, OptionSpec>): ParsedLine {
  const dash = argv.indexOf('--');
  const head = dash === -1 ? argv : argv.slice(0, dash);
  const passthrough = dash === -1 ? [] : argv.slice(dash + 1);

  // Command words are the first non-option words, skipping global options' values.
  const words: number[] = [];
  for (let i = 0; i < head.length && words.length < 3; i++) {
    const a = head[i]!;
    if (a.startsWith('-')) {
      const name = a.startsWith('--') ? a.slice(2) : Object.entries(globalOptionSpec).find(([, s]) => s.short === a.slice(1))?.[0];
      if (name && !name.includes('=') && globalOptionSpec[name]?.type === 'string') i++;
      continue;
    }
    words.push(i);
  }
  let command: string[] = [];
  for (let n = words.length; n > 0; n--) {
    const candidate = words.slice(0, n).map((i) => head[i]!);
    if (commands.has(candidate.join(' '))) {
      command = candidate;
      break;
    }
  }
  const rest = head.filter((_, i) => !words.slice(0, command.length).includes(i));
  const spec = { ...globalOptionSpec, ...(commands.get(command.join(' ')) ?? {}) };
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: spec, allowPositionals: true, strict: true });
  } catch (err) {
    const where = command.length ? `berth ${command.join(' ')}` : 'berth';
    const unknown = (err as NodeJS.ErrnoException).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'([^']+)'/.exec((err as Error).message)?.[1] : undefined;
    throw new BerthError('INVALID_ARGUMENT', unknown ? `unknown option ${unknown} for ${where}` : (err as Error).message, { hint: `run: ${where} --help` });
  }
  return { command, values: parsed.values, positionals: parsed.positionals, passthrough };
}

export function resolveGlobals(values: ParsedLine['values'], env: Record<string, string | undefined>, home: string): GlobalOptions {
  const str = (k: string): string | undefined => (typeof values[k] === 'string' ? (values[k] as string) : undefined);
  const logLevel = str('log-level') ?? env.BERTH_LOG_LEVEL ?? 'warn';
  if (!(LogLevels as readonly string[]).includes(logLevel)) {
    throw new BerthError('INVALID_ARGUMENT', `--log-level ${JSON.stringify(logLevel)} is not one of ${LogLevels.join(', ')}`);
  }
  const output = str('output') ?? 'text';
  if (output !== 'text' && output !== 'json') throw new BerthError('INVALID_ARGUMENT', `-o ${JSON.stringify(output)} is not one of text, json`);
  return {
    root: str('root') ?? env.BERTH_ROOT ?? '/var/lib/berth',
    state: str('state') ?? env.BERTH_STATE ?? '/run/berth',
    logLevel: logLevel as LogLevel,
    output,
    registryConfig: str('registry-config') ?? env.BERTH_REGISTRY_CONFIG,
    dockerConfig: env.DOCKER_CONFIG ?? `${home}/.docker`,
    extraCAFile: env.BERTH_EXTRA_CA_CERTS || undefined,
  };
}
