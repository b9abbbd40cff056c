#!/usr/bin/env -S -u NODE_EXTRA_CA_CERTS BERTH_EXTRA_CA_CERTS=${NODE_EXTRA_CA_CERTS} node
/**
 * The `berth` command. A container command goes first to a running daemon
 * through remote.cjs (cli/remote.ts bundled alone: node:http and little
 * else), as ctr is a client of containerd. Any other line, or one no daemon
 * takes, runs here: main.ts's runLocally from bundle.cjs (scripts/bundle.ts:
 * berth in one CommonJS file) with a V8 code cache per command, or main.js
 * itself where no bundle was built. Start-up is most of a `berth plan` or
 * `berth run`: node 20 loads an ES module graph file by file and keeps no
 * compiled code; one script whose code comes from a cache starts ~50 ms
 * sooner.
 *
 * The first line moves NODE_EXTRA_CA_CERTS aside: node parses that file when
 * it starts (80 ms where it names the system bundle, as on Debian CI hosts),
 * before any code runs. berth reads it only when it opens a registry
 * connection (remotes/hosts.ts), with the same meaning.
 *
 * The code cache of a command (`plan`, `image pull`; one for lines naming
 * none) is written after its first run, next to the bundle under
 * .code-cache/ (owner-only), and made again when V8 rejects it (another
 * node, another bundle). A cache that cannot be read or written only means
 * compiling as usual.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire, wrap } from 'node:module';
import { join } from 'node:path';
import { Script } from 'node:vm';

const bundle = join(__dirname, 'bundle.cjs');
const remote = join(__dirname, 'remote.cjs');

/** What main.ts exports. */
interface Entry {
  runLocally(argv: string[]): Promise<number>;
}

/** What remote.cjs (cli/remote.ts) exports. */
interface Remote {
  serveFromDaemon(argv: string[]): Promise<number | undefined>;
  commandOf(argv: readonly string[]): string | undefined;
}

/** main.ts's exports, from the bundle with this command's code cache. */
function loadBundle(command: string | undefined): Entry {
  // The build keeps the bundle ASCII (scripts/bundle.ts), so latin1 decodes it exactly; node 20's utf8 decoding of
  // its 1 MB takes 7-15 ms, latin1 under 1 ms.
  const source = readFileSync(bundle).toString('latin1');
  const dir = join(__dirname, '.code-cache');
  const file = join(dir, `${(command ?? 'none').replace(' ', '-')}.v8`);
  let cached: Buffer | undefined;
  try {
    cached = readFileSync(file);
  } catch {
    cached = undefined;
  }
  const script = new Script(wrap(source), {
    filename: bundle,
    ...(cached ? { cachedData: cached } : {}),
  });
  if (!cached || script.cachedDataRejected) {
    // After the run, so the cache holds the functions this command compiled. Only then: serialising it costs ~10 ms.
    process.once('beforeExit', () => {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        const temp = `${file}.${process.pid}.tmp`;
        writeFileSync(temp, script.createCachedData(), { mode: 0o600 });
        renameSync(temp, file);
      } catch {
        // A read-only installation runs without a cache.
      }
    });
  }
  const module = { exports: {} as Entry };
  (script.runInThisContext() as (...a: unknown[]) => void).call(module.exports, module.exports, createRequire(bundle), module, bundle, __dirname);
  return module.exports;
}

async function run(argv: string[]): Promise<number> {
  // Unbundled (only tsc ran): the same two steps from dist/src's modules.
  const bundled = existsSync(bundle) && existsSync(remote);
  const client = bundled ? (require(remote) as Remote) : ((await import('./cli/remote.js')) as Remote);
  const served = await client.serveFromDaemon(argv);
  if (served !== undefined) return served;
  const main = bundled ? loadBundle(client.commandOf(argv)) : ((await import('./main.js')) as Entry);
  return main.runLocally(argv);
}

void run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
