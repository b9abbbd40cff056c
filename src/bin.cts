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
 * The code cache of a command (`plan`, `image pull`) is written after its
 * first run, next to the bundle under .code-cache/ (owner-only), and made
 * again when V8 rejects it (another node, another bundle). A cache that
 * cannot be read or written only means compiling as usual.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire, wrap } from 'node:module';
import { join } from 'node:path';
import { Script } from 'node:vm';

const bundle = join(__dirname, 'bundle.cjs');
const remote = join(__dirname, 'remote.cjs');

/** What main.ts exports, and remote.cjs the first of. */
interface Entry {
  serveFromDaemon(argv: string[]): Promise<number | undefined>;
  runLocally(argv: string[]): Promise<number>;
}

/** Global options that take a value, so their value is not taken for the command. */
const VALUED = new Set(['--root', '--state', '--log-level', '-o', '--output', '--registry-config']);

/** "plan", "image-pull": the command words, as a file name. */
function commandKey(argv: readonly string[]): string {
  const words: string[] = [];
  for (let i = 0; i < argv.length && words.length < 2; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a.startsWith('-')) {
      if (VALUED.has(a)) i++;
      continue;
    }
    if (!/^[a-z][a-z-]*$/.test(a)) break;
    words.push(a);
  }
  return words.join('-') || 'none';
}

/** main.ts's exports, from the bundle with this command's code cache. */
function loadBundle(): Entry {
  const source = readFileSync(bundle, 'utf8');
  const dir = join(__dirname, '.code-cache');
  const file = join(dir, `${commandKey(process.argv.slice(2))}.v8`);
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
    // After the run, so the cache holds the functions this command compiled.
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
  if (!existsSync(bundle)) {
    const main = (await import('./main.js')) as Entry;
    return (await main.serveFromDaemon(argv)) ?? (await main.runLocally(argv));
  }
  const served = existsSync(remote) ? await (require(remote) as Pick<Entry, 'serveFromDaemon'>).serveFromDaemon(argv) : undefined;
  return served ?? (await loadBundle().runLocally(argv));
}

void run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
