#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS BERTH_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node
/**
 * berth's entry point: hands argv, the environment and the streams to the
 * CLI and turns its result into the exit code. The only place besides cli/
 * that touches `process`.
 *
 * The `berth` command is bin.cts, which runs this module from the bundle;
 * run directly, this file's first line does what bin.cts's does (see there).
 */
import { constants as osConstants, homedir } from 'node:os';
import { runCli } from './cli/run.js';
import { hostPlatform } from './oci/platform.js';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// No top-level await: berth.cjs (bin.cts) runs this module bundled as CommonJS.
void runCli(process.argv.slice(2), {
  env: process.env,
  stdout: process.stdout,
  stderr: process.stderr,
  home: homedir(),
  pid: process.pid,
  isAlive,
  hostPlatform: hostPlatform(process.platform, process.arch),
  stdio: [0, 1, 2],
  onSignal(fn) {
    const handlers = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((name) => {
      const h = (): void => fn(osConstants.signals[name]);
      process.on(name, h);
      return [name, h] as const;
    });
    return () => handlers.forEach(([name, h]) => process.off(name, h));
  },
}).then((code) => {
  process.exitCode = code;
});
