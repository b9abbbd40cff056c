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
}

export interface CommandContext {
  line: ParsedLine;
  globals: GlobalOptions;
  proc: ProcessInfo;
  logger: Logger;
  /** Opens the system lazily: commands like `validate` never touch the store. */
  system(): Promise<System>;
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

export function writeJSON(out: Output, value: unknown): void {
  out.write(JSON.stringify(value, null, 2) + '\n');
}
