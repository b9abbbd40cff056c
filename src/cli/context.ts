import { BerthError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Platform } from '../oci/platform.js';
import type { System } from '../system.js';
import type { GlobalOptions, ParsedLine } from './args.js';

/** What a command handler gets: parsed arguments, output streams, the opened system. */

export interface Output {
  write(s: string): unknown;
  isTTY?: boolean;
}

export interface ProcessInfo {
  env: Record<string, string | undefined>;
  stdout: Output;
  stderr: Output;
  home: string;
  pid: number;
  isAlive: (pid: number) => boolean;
  hostPlatform: Platform;
  /** The process's own stdin, stdout, stderr descriptors, handed to processes that take over the terminal (exec). */
  stdio?: [number, number, number];
  /** Calls fn with the number of SIGINT, SIGTERM or SIGHUP when the process gets one; returns a function that stops. */
  onSignal?: (fn: (signal: number) => void) => () => void;
  /** The directory relative paths on the command line mean (the client's, when the daemon runs the command); absent: this process's. */
  cwd?: string;
  /**
   * Aborted when whoever runs the command is gone (a daemon's client that
   * disconnected): a foreground command then stops what it started instead
   * of waiting for a reader that will never come.
   */
  gone?: AbortSignal;
  /** How to run berth itself from elsewhere (node and its script, absolute), when known. */
  self?: readonly string[];
}

/** How the daemon runs a client's command line with its own open System. */
export interface ServeOptions {
  system: System;
  /** Why this daemon does not run the line (command, resolved globals), or undefined to run it. */
  refuse(command: string, globals: GlobalOptions): string | undefined;
  /** Called once the line is the daemon's to run (it was not refused), before it runs. */
  accepted?(): void;
}

export interface CommandContext {
  line: ParsedLine;
  globals: GlobalOptions;
  proc: ProcessInfo;
  logger: Logger;
  /** Opens the system lazily: commands like `validate` never touch the store. */
  system(): Promise<System>;
  /** Runs another command line in this process with an open System (the daemon serves its clients' container commands so). */
  serve(argv: string[], proc: ProcessInfo, opts: ServeOptions): Promise<number | { refused: string }>;
}

export interface Command {
  /** e.g. "image pull" */
  name: string;
  usage: string;
  summary: string;
  options?: import('./args.js').OptionSpec;
  /** Returns the exit code. */
  run(ctx: CommandContext): Promise<number>;
}

/** Exactly n positional arguments, or INVALID_ARGUMENT showing the usage. */
export function positionals(ctx: CommandContext, n: number, usage: string): string[] {
  const args = ctx.line.positionals;
  if (args.length !== n) {
    throw new BerthError('INVALID_ARGUMENT', `expected ${n === 1 ? 'one argument' : `${n} arguments`}, got ${args.length}`, { hint: `usage: ${usage}` });
  }
  return args;
}

export function writeJSON(out: Output, value: unknown): void {
  out.write(JSON.stringify(value, null, 2) + '\n');
}
