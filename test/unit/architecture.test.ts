/**
 * DESIGN.md's layer table, enforced: imports point down the table, never up,
 * never sideways within a layer (layer 0 excepted), never in a cycle; process
 * and console only in the shell; every file under src/ belongs to a module.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkArchitecture, importsOf, maskSource, moduleOf, readSourceTree, resolveImport, type Violation } from '../helpers/imports.js';

// Compiled to dist/test/unit/; the sources checked are the .ts files of the repository.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const tree = (files: Record<string, string>): Map<string, string> => new Map(Object.entries(files));
const rules = (vs: Violation[]): string[] => vs.map((v) => `${v.rule} ${v.file} ${v.subject}`).sort();

describe('architecture of src/', () => {
  const real = readSourceTree(ROOT);

  it('reads the real tree', () => {
    assert.ok(real.has('src/errors.ts') && real.has('src/oci/digest.ts'), `found ${[...real.keys()].join(', ')}`);
    assert.ok(importsOf(real.get('src/oci/descriptor.ts')!).some((i) => i.specifier === '../errors.js'));
  });

  it('follows the layer table of DESIGN.md', () => {
    const violations = checkArchitecture(real);
    assert.deepEqual(violations.map((v) => v.message), [], `\n${violations.map((v) => `  ${v.message}`).join('\n')}\n`);
  });
});

describe('the checker itself', () => {
  const good = {
    'src/errors.ts': "export class BerthError extends Error {}\n",
    'src/log.ts': "export interface Logger {}\n",
    'src/events.ts': "import type { Digest } from './oci/digest.js';\nexport type E = { digest: Digest };\n",
    'src/oci/digest.ts': "import { BerthError } from '../errors.js';\nexport type Digest = string;\n",
    'src/oci/platform.ts': "export function hostPlatform(p = process.platform, a = process.arch) { return { p, a }; }\n",
    'src/oci/index.ts': "export * from './digest.js';\nexport * from './platform.js';\n",
    'src/content/store.ts': "import type { Digest } from '../oci/index.js';\nexport interface ContentStore { get(d: Digest): void }\n",
    'src/content/index.ts': "export * from './store.js';\n",
    'src/remotes/resolver.ts': "import type { Logger } from '../log.js';\nexport interface Resolver { log: Logger }\n",
    'src/images/pull.ts': [
      'import {',
      '  type ContentStore,',
      "} from '../content/index.js';",
      "import type { Resolver } from '../remotes/resolver.js';",
      "import { BerthError } from '../errors.js';",
      '// console.log("comments do not count"); import { x } from "../reconcile/x.js";',
      "const s = 'process.env and console.log in strings do not count';",
      "const t = `import y from '../cli/y.js' ${s.replace(/process\\./g, '')}`;",
      'export async function pull(c: ContentStore, r: Resolver) { return [c, r, s, t, BerthError]; }',
    ].join('\n'),
    'src/images/index.ts': "export * from './pull.js';\n",
    'src/reconcile/plan.ts': "import type { pull } from '../images/index.js';\nexport type P = typeof pull;\n",
    'src/system.ts': "import { pull } from './images/index.js';\nimport type { P } from './reconcile/plan.js';\nexport const system = { pull } as { pull: P };\n",
    'src/cli/index.ts': "import { system } from '../system.js';\nexport function main() { console.log(system); process.exitCode = 0; }\n",
    'src/main.ts': "import { main } from './cli/index.js';\nmain();\n",
  };

  it('finds nothing wrong in a conforming tree', () => {
    assert.deepEqual(checkArchitecture(tree(good)).map((v) => v.message), []);
  });

  it('reports an upward import, naming file, import and rule', () => {
    const vs = checkArchitecture(tree({ ...good, 'src/content/bad.ts': "import { pull } from '../images/pull.js';\nexport const x = pull;\n" }));
    assert.deepEqual(rules(vs), ['upward-import src/content/bad.ts:1 ../images/pull.js']);
    const m = vs[0]!.message;
    for (const part of ['src/content/bad.ts:1', '"../images/pull.js"', 'content (layer 1) must not import images (layer 2)']) assert.ok(m.includes(part), m);
  });

  it('reports layer 0 importing upward', () => {
    const vs = checkArchitecture(tree({ ...good, 'src/oci/bad.ts': "export type { ContentStore } from '../content/store.js';\n" }));
    assert.deepEqual(rules(vs), ['upward-import src/oci/bad.ts:1 ../content/store.js']);
  });

  it('reports sibling imports within a layer', () => {
    const vs = checkArchitecture(
      tree({
        ...good,
        'src/content/bad.ts': "import type { Resolver } from '../remotes/resolver.js';\nexport type R = Resolver;\n",
        'src/containers/run.ts': "\n\nconst m = await import('../images/pull.js');\nexport { m };\n",
      }),
    );
    assert.deepEqual(rules(vs), ['sibling-import src/containers/run.ts:3 ../images/pull.js', 'sibling-import src/content/bad.ts:1 ../remotes/resolver.js']);
    assert.ok(vs.some((v) => v.message.includes('content must not import remotes, a sibling module of the same layer 1')));
  });

  it('reports a cycle with its path, even through type imports and re-exports', () => {
    const vs = checkArchitecture(
      tree({
        ...good,
        'src/content/a.ts': "import type { B } from './b.js';\nexport type A = B[];\n",
        'src/content/b.ts': "export type B = string;\nexport type { A } from './a.js';\n",
      }),
    );
    assert.deepEqual(rules(vs), ['cycle src/content/a.ts:1 ./b.js']);
    assert.ok(vs[0]!.message.includes('src/content/a.ts → src/content/b.ts → src/content/a.ts'), vs[0]!.message);
  });

  it('reports a cycle among layer-0 files, which may otherwise import each other', () => {
    const vs = checkArchitecture(
      tree({
        ...good,
        'src/errors.ts': "import type { Logger } from './log.js';\nexport type E = Logger;\n",
        'src/log.ts': "import type { Digest } from './oci/digest.js';\nexport interface Logger { d: Digest }\n",
      }),
    );
    assert.deepEqual(rules(vs), ['cycle src/errors.ts:1 ./log.js']);
    assert.ok(vs[0]!.message.includes('src/errors.ts → src/log.ts → src/oci/digest.ts → src/errors.ts'), vs[0]!.message);
  });

  it('reports a file importing itself', () => {
    const vs = checkArchitecture(tree({ ...good, 'src/gc/mark.ts': "export * from './mark.js';\n" }));
    assert.deepEqual(rules(vs), ['cycle src/gc/mark.ts:1 ./mark.js']);
  });

  it('reports files that belong to no module', () => {
    const vs = checkArchitecture(tree({ ...good, 'src/utils/strings.ts': 'export const a = 1;\n', 'src/helpers.ts': 'export const b = 2;\n', 'src/oci.ts': 'export const c = 3;\n' }));
    assert.deepEqual(rules(vs), ['unknown-module src/helpers.ts src/helpers.ts', 'unknown-module src/oci.ts src/oci.ts', 'unknown-module src/utils/strings.ts src/utils/strings.ts']);
    assert.ok(vs.every((v) => v.message.includes('layer table')));
  });

  it('reports process and console below layer 5, outside comments and strings', () => {
    const vs = checkArchitecture(
      tree({
        ...good,
        'src/content/log.ts': "/* console.log in a comment */\nexport function f() {\n  console.warn('x');\n  return globalThis.process.env.HOME;\n}\n",
        'src/oci/platform.ts': `${good['src/oci/platform.ts']}export const home = process.env.HOME;\n`,
        'src/gc/run.ts': "import { argv } from 'node:process';\nexport const a = argv;\n",
      }),
    );
    assert.deepEqual(rules(vs), [
      'process-console src/content/log.ts:3 console.warn',
      'process-console src/content/log.ts:4 process.env',
      'process-console src/gc/run.ts:1 node:process',
      'process-console src/oci/platform.ts:2 process.env',
    ]);
  });

  it('reports imports that do not resolve or leave src/', () => {
    const vs = checkArchitecture(tree({ ...good, 'src/gc/x.ts': "import { a } from './missing.js';\nimport { b } from '../../test/helpers/imports.js';\nimport schema from '../../schemas/x.json' with { type: 'json' };\nexport { a, b, schema };\n" }));
    assert.deepEqual(rules(vs), ['outside-src src/gc/x.ts:2 ../../test/helpers/imports.js', 'unresolved-import src/gc/x.ts:1 ./missing.js']);
  });

  it('allows main.ts and cli/ to use the API, but not the API to use cli/', () => {
    const vs = checkArchitecture(
      tree({
        ...good,
        'src/api/server.ts': "import { main } from '../cli/index.js';\nexport const s = main;\n",
        'src/cli/daemon.ts': "import { s } from '../api/server.js';\nexport const d = s;\n",
      }),
    );
    assert.deepEqual(rules(vs), ['sibling-import src/api/server.ts:1 ../cli/index.js']);
  });
});

describe('import reading', () => {
  it('finds every kind of import and re-export, skipping comments and strings', () => {
    const text = [
      "import a from './a.js';",
      "import type { B } from './b.js';",
      "import { c, type C } from './c.js';",
      "import * as d from './d.js';",
      "import './e.js';",
      'import {',
      '  f,',
      '  g as h,',
      "} from './f.js';",
      "export * from './g.js';",
      "export * as ns from './h.js';",
      "export { i } from './i.js';",
      "export type { J } from './j.js';",
      "const k = await import('./k.js');",
      "// import z from './comment.js';",
      "/* export * from './block.js'; */",
      "const s = \"import y from './string.js'\";",
      'const t = `${"x"}import w from \'./template.js\'`;',
      "const re = /import v from '.\\/regex.js'/;",
      "import { from } from './l.js';",
      "export const fromage = 'from';",
    ].join('\n');
    assert.deepEqual(
      importsOf(text).map((i) => `${i.line}:${i.specifier}`),
      ['1:./a.js', '2:./b.js', '3:./c.js', '4:./d.js', '5:./e.js', '9:./f.js', '10:./g.js', '11:./h.js', '12:./i.js', '13:./j.js', '14:./k.js', '20:./l.js'],
    );
  });

  it('masks without moving offsets', () => {
    const text = "a = `x${ {b: '}'}.b }y` / 2; // c\n/* d */ e(/[/]'/g, \"f\")";
    const masked = maskSource(text);
    assert.equal(masked.length, text.length);
    assert.equal(masked, "a = ` ${ {b: ' '}.b } ` / 2;     \n        e(/    /g, \" \")");
  });

  it('resolves .js to .ts and folders to index.ts', () => {
    const t = tree({ 'src/images/index.ts': '', 'src/images/pull.ts': '', 'src/system.ts': '' });
    assert.deepEqual(resolveImport(t, 'src/system.ts', './images/pull.js'), { path: 'src/images/pull.ts', exists: true });
    assert.deepEqual(resolveImport(t, 'src/system.ts', './images/index.js'), { path: 'src/images/index.ts', exists: true });
    assert.deepEqual(resolveImport(t, 'src/system.ts', './images'), { path: 'src/images/index.ts', exists: true });
    assert.deepEqual(resolveImport(t, 'src/images/pull.ts', '../system.js'), { path: 'src/system.ts', exists: true });
    assert.deepEqual(resolveImport(t, 'src/system.ts', './gone.js'), { path: 'src/gone.ts', exists: false });
  });

  it('maps paths to modules and layers', () => {
    assert.deepEqual(moduleOf('src/oci/digest.ts'), { module: 'oci', layer: 0 });
    assert.deepEqual(moduleOf('src/errors.ts'), { module: 'errors', layer: 0 });
    assert.deepEqual(moduleOf('src/content/local/store.ts'), { module: 'content', layer: 1 });
    assert.deepEqual(moduleOf('src/gc/mark.ts'), { module: 'gc', layer: 2 });
    assert.deepEqual(moduleOf('src/reconcile/plan.ts'), { module: 'reconcile', layer: 3 });
    assert.deepEqual(moduleOf('src/system.ts'), { module: 'system', layer: 4 });
    assert.deepEqual(moduleOf('src/main.ts'), { module: 'main', layer: 5 });
    assert.deepEqual(moduleOf('src/api/server.ts'), { module: 'api', layer: 5 });
    assert.equal(moduleOf('src/system/x.ts'), undefined);
    assert.equal(moduleOf('src/content.ts'), undefined);
    assert.equal(moduleOf('src/utils/x.ts'), undefined);
  });
});
