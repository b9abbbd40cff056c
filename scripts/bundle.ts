/**
 * Writes dist/src/bundle.cjs and dist/src/remote.cjs (cli/remote.ts alone,
 * the thin client of a running daemon), and makes dist/src/bin.cjs executable.
 * bundle.cjs: berth's modules (tsc's output under dist/src)
 * and their pure-JavaScript dependencies in one CommonJS file, which
 * dist/src/bin.cjs (src/bin.cts) runs with a V8 code cache. Node 20 resolves,
 * reads, compiles and links each of an ES module graph's ~100 files one by
 * one and caches no code for them; one script with cached code starts in
 * a fraction of that. koffi and lmdb's native addon stay outside, loaded
 * from node_modules (lmdb's JavaScript is inside: lmdbAddonDir). Nothing in the bundle
 * may import() a module outside it: code that V8 took from a code cache has
 * lost the host options that dynamic import needs (node 20 then throws "A
 * dynamic import callback was not specified"); the build fails if one does.
 *
 * Each module keeps its own import.meta.url (the URL of its file under
 * dist/src, which tsc wrote), so paths relative to a module (the schemas,
 * worker threads, createRequire) mean what they mean unbundled.
 *
 *   node dist/scripts/bundle.js        (part of npm run build)
 */
import { build, type BuildOptions, type Plugin } from 'esbuild';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('../src/', import.meta.url));

const moduleUrls: Plugin = {
  name: 'module-urls',
  setup(b) {
    b.onLoad({ filter: /\/dist\/src\/.*\.js$/ }, async (args) => {
      const rel = relative(src, args.path);
      // main.js's first line is for running it directly; bin.cts has its own.
      let text = (await readFile(args.path, 'utf8')).replace(/^#!.*\n/, '');
      if (rel === 'lmdb/index.js') {
        // Unbundled, lmdb-js is required from node_modules (see there); the bundle takes it in (lmdbAddonDir).
        const load = "createRequire(import.meta.url)('lmdb')";
        if (!text.includes(load)) throw new Error(`${args.path}: ${load} is gone; update scripts/bundle.ts`);
        text = text.replace(load, "require('lmdb')");
      }
      return { contents: text.replace(/\bimport\.meta\.url\b/g, `__berthModuleUrl(${JSON.stringify(rel)})`), loader: 'js' };
    });
  },
};

/**
 * lmdb's JavaScript (and msgpackr and its other pure-JS dependencies) goes
 * into the bundle too: loaded from node_modules they cost ~50 ms of compiling
 * and module resolution at every start, which the bundle's code cache saves.
 * Its native addon stays in node_modules: lmdb finds it from the directory
 * of its own file, which in the bundle is lmdb's package directory as node
 * resolves it. The build fails if that line is not found (a new lmdb).
 */
const lmdbAddonDir: Plugin = {
  name: 'lmdb-addon-dir',
  setup(b) {
    b.onLoad({ filter: /\/node_modules\/lmdb\/dist\/index\.cjs$/ }, async (args) => {
      const text = await readFile(args.path, 'utf8');
      const line = /^let dirName = .*$/m;
      if (!line.test(text)) throw new Error(`${args.path}: the line that finds lmdb's native addon is gone; update scripts/bundle.ts`);
      // Where require('lmdb') from the bundle's directory finds it: the node_modules above it, nearest first (what
      // node's resolution tries first, without its ~7 ms of exports handling), else by that resolution itself.
      const dir = `(() => {
        const { dirname, join } = require('node:path');
        for (let d = __dirname; d !== dirname(d); d = dirname(d)) {
          const candidate = join(d, 'node_modules', 'lmdb');
          if (require('node:fs').existsSync(join(candidate, 'package.json'))) return candidate;
        }
        return join(dirname(require('node:module').createRequire(__filename).resolve('lmdb')), '..');
      })()`;
      return { contents: text.replace(line, () => `let dirName = ${dir};`), loader: 'js' };
    });
  },
};

/**
 * msgpackr (lmdb's value encoding) loads msgpackr-extract, an optional native
 * string decoder, at start: 16 ms of every command for records of a few
 * hundred bytes, where msgpackr's own decoder is as quick. In the bundle it
 * is a module that exports nothing, which msgpackr takes for "not installed".
 */
const noMsgpackrExtract: Plugin = {
  name: 'no-msgpackr-extract',
  setup(b) {
    b.onResolve({ filter: /^msgpackr-extract$/ }, () => ({ path: 'msgpackr-extract', namespace: 'berth-absent' }));
    b.onLoad({ filter: /.*/, namespace: 'berth-absent' }, () => ({ contents: 'module.exports = undefined;', loader: 'js' }));
  },
};

const common = {
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  // bun:ffi: in lmdb, behind `process.isBun && false`.
  external: ['koffi', 'bun:ffi', 'cbor-x'],
  plugins: [moduleUrls, lmdbAddonDir, noMsgpackrExtract],
  banner: { js: "const __berthModuleUrl = (rel) => require('node:url').pathToFileURL(require('node:path').join(__dirname, rel)).href;" },
  legalComments: 'none',
  logLevel: 'warning',
} satisfies BuildOptions;

// Everything, for the lines this process runs; and the thin client alone, for the lines a daemon serves.
for (const [entry, out] of [['main.js', 'bundle.cjs'], ['cli/remote.js', 'remote.cjs']] as const) {
  const result = await build({ ...common, entryPoints: [`${src}${entry}`], outfile: `${src}${out}` });
  if (result.errors.length) throw new Error(`bundling ${entry} failed`);
  let text = await readFile(`${src}${out}`, 'utf8');
  // V8 keeps a source holding any non-ASCII character as two bytes per character, which costs ~15 ms at every start
  // for this 1 MB script. esbuild escapes such characters in code but copies comments as they are; \uXXXX means the
  // same character in a string, template or regular expression, and nothing in a comment.
  if (/[^\x00-\x7f]/.test(text)) {
    text = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    await writeFile(`${src}${out}`, text);
  }
  const dynamic = /[^\w$.]import\(\s*["'`]/.exec(text);
  if (dynamic) throw new Error(`${out} imports a module outside the bundle dynamically (${text.slice(dynamic.index, dynamic.index + 60)}); bundle it or require() it`);
}
// tsc does not keep the execute bit; the command is run as a program (its first line matters).
await chmod(`${src}bin.cjs`, 0o755);
