import assert from 'node:assert/strict';
import { symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DirectoryParseCache, formatManifestError, isLeftover, loadManifests, type LoadResult, type ManifestError } from '../../../src/manifests/index.js';
import { parseManifests } from '../../../src/manifests/yaml.js';
import { withTempDir } from '../../helpers/tmp.js';
import { container, image, writeTree } from './fixtures.js';

/** "code file:line:col pointer" for each error, the shape most tests compare. */
const where = (r: { errors: ManifestError[] }): string[] => r.errors.map((e) => `${e.code} ${e.file}:${e.line}:${e.col} ${e.pointer}`);
const names = (r: LoadResult): string[] => r.objects.map((o) => `${o.kind}/${o.name}`);
const only = (r: { errors: ManifestError[] }): ManifestError => {
  assert.equal(r.errors.length, 1, r.errors.map(formatManifestError).join('\n'));
  return r.errors[0]!;
};

/**
 * Loads the tree three times: without the parse cache, with an empty one
 * (filling it), and with the filled one; the three results must be the same,
 * so every case here is also a case of the cache (cache.ts).
 */
async function load(files: Record<string, string>, paths?: (dir: string) => string[]): Promise<LoadResult> {
  return withTempDir('berth-manifests', async (top) => {
    const dir = join(top, 'm');
    await writeTree(dir, files);
    const given = paths ? paths(dir) : [dir];
    const r = await loadManifests(given);
    const cache = new DirectoryParseCache(join(top, 'cache'));
    assert.deepEqual(await loadManifests(given, { cache }), r, 'a cold cache changes nothing');
    assert.deepEqual(await loadManifests(given, { cache }), r, 'a warm cache changes nothing');
    // Paths relative to the temp dir, so tests can name files.
    const rel = (f: string): string => (f.startsWith(`${dir}/`) ? f.slice(dir.length + 1) : f);
    return {
      files: r.files.map(rel),
      errors: r.errors.map((e) => ({ ...e, file: rel(e.file), message: e.message.replaceAll(`${dir}/`, '') })),
      objects: r.objects.map((o) => ({ ...o, source: { ...o.source, file: rel(o.source.file) } })),
    };
  });
}

describe('reading files and directories', () => {
  it('reads every document of a multi-document file, in order, with its position', async () => {
    const r = await load({ 'all.yaml': `${container('web')}---\n${image('base')}---\n${container('db')}` });
    assert.deepEqual(where(r), []);
    assert.deepEqual(names(r), ['Container/web', 'Image/base', 'Container/db']);
    assert.deepEqual(r.objects.map((o) => `${o.source.file}:${o.source.line}:${o.source.col}`), ['all.yaml:1:1', 'all.yaml:8:1', 'all.yaml:15:1']);
  });

  it('keeps name order over more files than are read at once', async () => {
    const files: Record<string, string> = {};
    for (let i = 0; i < 70; i++) files[`c${String(i).padStart(2, '0')}.yaml`] = container(`c${String(i).padStart(2, '0')}`);
    const r = await load(files);
    assert.deepEqual(where(r), []);
    assert.deepEqual(names(r), Object.keys(files).sort().map((f) => `Container/${f.replace('.yaml', '')}`));
  });

  it('ignores empty documents, comment-only documents and empty files', async () => {
    const r = await load({ 'a.yaml': `---\n# nothing here\n---\n${container('web')}---\n---\n`, 'empty.yaml': '', 'comments.yml': '# just a comment\n' });
    assert.deepEqual(where(r), []);
    assert.deepEqual(names(r), ['Container/web']);
    assert.deepEqual(r.files, ['a.yaml', 'comments.yml', 'empty.yaml']);
  });

  it('reads .yaml, .yml and .json in subdirectories in name order, and ignores dot files, leftovers and other files', async () => {
    const broken = 'this: is: not: yaml\n';
    const r = await load({
      'b.yaml': container('b'),
      'a.yml': container('a'),
      'c.json': JSON.stringify({ apiVersion: 'berth/v1', kind: 'Image', metadata: { name: 'c' }, spec: { ref: 'busybox' } }),
      'sub/d.YAML': container('d'),
      '.hidden.yaml': broken,
      'b.yaml~': broken,
      '.b.yaml.swp': broken,
      'b.yaml.swp': broken,
      'b.yaml.bak': broken,
      'b.yaml.dpkg-old': broken,
      'b.yaml.dpkg-dist': broken,
      '#b.yaml#': broken,
      '.git/config.yaml': broken,
      'README.md': broken,
      'notes.txt': broken,
    });
    assert.deepEqual(where(r), []);
    assert.deepEqual(r.files, ['a.yml', 'b.yaml', 'c.json', 'sub/d.YAML']);
    assert.deepEqual(names(r), ['Container/a', 'Container/b', 'Image/c', 'Container/d']);
  });

  it('reads a file named on its own whatever its name, and a file given twice once', async () => {
    const r = await load({ 'web.manifest': container('web'), 'dir/db.yaml': container('db') }, (d) => [join(d, 'web.manifest'), join(d, 'dir'), join(d, 'dir', 'db.yaml')]);
    assert.deepEqual(where(r), []);
    assert.deepEqual(r.files, ['web.manifest', 'dir/db.yaml']);
    assert.deepEqual(names(r), ['Container/web', 'Container/db']);
  });

  it('survives a symlink loop and skips dangling symlinks', async () => {
    await withTempDir('berth-manifests', async (dir) => {
      await writeTree(dir, { 'm/web.yaml': container('web') });
      await symlink(join(dir, 'm'), join(dir, 'm', 'loop'));
      await symlink(join(dir, 'gone.yaml'), join(dir, 'm', 'dangling.yaml'));
      const r = await loadManifests([join(dir, 'm')]);
      assert.deepEqual(r.errors, []);
      assert.deepEqual(r.files, [join(dir, 'm', 'web.yaml')]);
    });
  });

  it('reports a path that does not exist without a position, and reads the others', async () => {
    const r = await load({ 'web.yaml': container('web') }, (d) => [join(d, 'missing.yaml'), d]);
    const e = only(r);
    assert.deepEqual({ code: e.code, file: e.file, line: e.line, col: e.col }, { code: 'IO', file: 'missing.yaml', line: 0, col: 0 });
    assert.equal(formatManifestError(e), 'missing.yaml: no such file or directory\n  hint: check the path given with -f');
    assert.deepEqual(names(r), ['Container/web']);
    assert.deepEqual(r.files, ['missing.yaml', 'web.yaml']);
  });

  it('knows editor and package manager leftovers', () => {
    for (const n of ['.web.yaml', 'web.yaml~', 'web.yaml.swp', '.web.yaml.swo', 'web.yaml.bak', 'web.yaml.orig', 'web.yaml.dpkg-old', 'web.yaml.dpkg-new', 'web.yaml.ucf-dist', 'web.yaml.rpmnew', '#web.yaml#']) {
      assert.ok(isLeftover(n), n);
    }
    for (const n of ['web.yaml', 'web.yml', 'web.json', 'back.yaml', 'swp.yaml']) assert.ok(!isLeftover(n), n);
  });
});

describe('YAML syntax errors', () => {
  const cases: Array<[string, string, string, string]> = [
    ['an unclosed quote, where it opens', `${container('web', 'image: "busybox')}`, 'bad.yaml:6:10', 'Missing closing "quote'],
    ['a duplicate key', container('web', 'image: a\nimage: b'), 'bad.yaml:7:3', 'Map keys must be unique'],
    ['a tab as indentation', 'apiVersion: berth/v1\nkind: Container\nmetadata:\n\tname: web\n', 'bad.yaml:4:1', 'Tabs are not allowed as indentation'],
    ['a second document', `${image('base')}---\nfoo: bar: baz\n`, 'bad.yaml:8:6', 'Nested mappings are not allowed in compact mappings'],
  ];
  for (const [what, text, at, message] of cases) {
    it(`reports ${what} at ${at}`, () => {
      const r = parseManifests(text, 'bad.yaml');
      assert.equal(r.errors[0]?.code, 'YAML');
      assert.equal(`${r.errors[0]!.file}:${r.errors[0]!.line}:${r.errors[0]!.col}`, at, formatManifestError(r.errors[0]!));
      assert.equal(r.errors[0]!.message, message);
      assert.ok(r.errors.every((e) => e.hint !== ''));
      assert.deepEqual(r.objects, [], 'a file with an error is skipped whole');
    });
  }

  it('refuses an alias bomb instead of expanding it', () => {
    const text = ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...['b', 'c', 'd', 'e'].map((k, i) => `${k}: &${k} [${Array(10).fill(`*${'abcd'[i]}`).join(', ')}]`)].join('\n');
    const e = only(parseManifests(text, 'bomb.yaml'));
    assert.equal(e.code, 'YAML');
    assert.match(e.message, /alias/i);
  });
});

describe('schema errors', () => {
  const web = [
    'apiVersion: berth/v1', //                                   1
    'kind: Container', //                                        2
    'metadata:', //                                              3
    '  name: web', //                                            4
    'spec:', //                                                  5
    '  image: registry.example:5000/team/web:1.4', //            6
    '  imagePullPolicy: IfNotPresent', //                        7
    '  env: { LOG_LEVEL: info, PORT: 8080 }', //                 8
    '  mounts:', //                                              9
    '    - { type: bind, source: /data/web, target: /data }', // 10
    '    - type: tmpfs', //                                      11
    '      target: tmp', //                                      12
    '  restart: { policy: sometimes }', //                       13
    '  network: bridge', //                                      14
    '  resources:', //                                           15
    '    memory: 256Mx', //                                      16
    '    cpus: "2"', //                                          17
  ].join('\n');

  it('reports every problem of a file at the line and column of the value, in plain English', () => {
    const r = parseManifests(web, 'web.yaml');
    assert.deepEqual(r.objects, []);
    assert.deepEqual(
      r.errors.map((e) => formatManifestError(e)),
      [
        'web.yaml:7:3: unknown field "imagePullPolicy" (at /spec/imagePullPolicy)\n  hint: did you mean "pullPolicy"?',
        'web.yaml:8:33: PORT must be a string, not a number (8080) (at /spec/env/PORT)\n  hint: quote the value to make it a string: "8080"',
        'web.yaml:12:15: target "tmp" is not a valid absolute path (at /spec/mounts/1/target)\n  hint: An absolute path, starting with /.',
        'web.yaml:13:22: policy must be one of never, on-failure, always, not "sometimes" (at /spec/restart/policy)\n  hint: always (the default): restart whatever the exit code, so a declared service keeps running, also after it is killed by hand. on-failure: restart after a non-zero exit code, at most maxRetries times. never: leave it exited (one-shot jobs).',
        'web.yaml:14:12: network must be one of host, none, not "bridge" (at /spec/network)\n  hint: none: a network namespace of its own with only loopback (the default). host: the host\'s network namespace.',
        'web.yaml:16:13: memory "256Mx" is not a valid size (at /spec/resources/memory)\n  hint: Bytes, or a size with a binary unit: 1048576, 512k, 64Mi, 1g, 1.5Gi.',
        'web.yaml:17:11: cpus must be a number, not a string ("2") (at /spec/resources/cpus)\n  hint: How many CPUs\' worth of time the container may use, for example 0.5 or 2 (at least 0.01).',
      ],
    );
    assert.ok(r.errors.every((e) => e.code === 'SCHEMA' && e.object?.name === 'web'));
  });

  it('suggests the closest field for an unknown one, or lists the allowed ones', () => {
    const typo = only(parseManifests(container('web', 'image: a\nenvv: {}'), 'w.yaml'));
    assert.equal(typo.message, 'unknown field "envv"');
    assert.equal(typo.hint, 'did you mean "env"?');
    assert.equal(`${typo.line}:${typo.col}`, '7:3');
    const far = only(parseManifests(container('web', 'image: a\nports: ["80:80"]'), 'w.yaml'));
    assert.match(far.hint, /^the fields allowed here are image, pullPolicy, command, args, env/);
    const meta = only(parseManifests('apiVersion: berth/v1\nkind: Image\nmetadata:\n  name: a\n  label: {}\nspec: { ref: a }\n', 'i.yaml'));
    assert.deepEqual([meta.message, meta.hint, meta.line, meta.col], ['unknown field "label"', 'did you mean "labels"?', 5, 3]);
  });

  it('points a missing field at the key of the mapping that lacks it', () => {
    const e = only(parseManifests('apiVersion: berth/v1\nkind: Container\nmetadata: { name: web }\nspec:\n  command: [x]\n', 'w.yaml'));
    assert.deepEqual([e.line, e.col, e.pointer, e.message], [4, 1, '/spec/image', 'missing required field "image"']);
    assert.match(e.hint, /^add image — The image to run/);
  });

  it('checks nested items: mounts, capabilities, dependsOn', () => {
    const r = parseManifests(container('web', 'image: a\nmounts:\n  - type: bind\n    source: /a\n  - type: nfs\n  - { type: tmpfs, target: /t, mode: 1777 }\ncapabilities: { add: [NET-ADMIN] }\ndependsOn: [db, db, "bad name"]'), 'w.yaml');
    assert.deepEqual(
      r.errors.map((e) => `${e.line}:${e.col} ${e.pointer} ${e.message}`),
      [
        '8:7 /spec/mounts/0/target missing required field "target"',
        '10:13 /spec/mounts/1/type type must be one of bind, tmpfs, not "nfs"',
        '11:40 /spec/mounts/2/mode mode must be a string, not a number (1777)',
        '12:25 /spec/capabilities/add/0 add[0] "NET-ADMIN" is not a valid capability',
        '13:19 /spec/dependsOn/1 dependsOn lists "db" twice (items 0 and 1)',
        '13:23 /spec/dependsOn/2 dependsOn[2] "bad name" is not a valid name',
      ],
    );
  });

  it('dispatches on kind: a missing, unknown or misspelt kind, and a document that is no mapping', () => {
    const missing = only(parseManifests('apiVersion: berth/v1\nmetadata: { name: a }\n', 'a.yaml'));
    assert.deepEqual([missing.message, missing.pointer, missing.line, missing.col], ['missing required field "kind"', '/kind', 1, 1]);
    const unknown = only(parseManifests('apiVersion: berth/v1\nkind: Deployment\nmetadata: { name: a }\n', 'a.yaml'));
    assert.deepEqual([unknown.message, unknown.hint, unknown.line, unknown.col], ['unknown kind "Deployment"', 'berth knows the kinds Container, Image', 2, 7]);
    const lower = only(parseManifests('apiVersion: berth/v1\nkind: container\nmetadata: { name: a }\n', 'a.yaml'));
    assert.equal(lower.hint, 'did you mean "Container"?');
    const scalar = only(parseManifests('just a string\n', 'a.yaml'));
    assert.equal(scalar.message, 'a manifest must be a mapping with apiVersion, kind, metadata and spec, not a string');
  });

  it('refuses another apiVersion', () => {
    const e = only(parseManifests(container('web').replace('berth/v1', 'berth/v2'), 'a.yaml'));
    assert.deepEqual([e.message, e.line, e.col], ['apiVersion must be "berth/v1", not "berth/v2"', 1, 13]);
  });

  it('reports values the schema cannot judge: references, platforms, restart settings', () => {
    const r = parseManifests(
      [
        container('a', 'image: "Upper/Case:tag"'),
        container('b', 'image: a\nrestart: { policy: always, maxRetries: 3 }'),
        container('c', 'image: a\nrestart: { backoff: { initial: 2m, max: 1m } }'),
        container('d', 'image: a\nrestart: { backoff: { initial: 0s } }'),
        'apiVersion: berth/v1\nkind: Image\nmetadata: { name: e }\nspec: { ref: a, platform: linux }\n',
      ].join('---\n'),
      'v.yaml',
    );
    assert.deepEqual(
      r.errors.map((e) => `${e.line}:${e.col} ${e.pointer} ${e.message}`),
      [
        '6:10 /spec/image invalid image reference "Upper/Case:tag": repository name "Upper/Case" must be lowercase',
        '14:42 /spec/restart/maxRetries maxRetries applies only to the policy on-failure, not always',
        '22:34 /spec/restart/backoff/initial backoff.initial "2m" is longer than backoff.max "1m"',
        '30:34 /spec/restart/backoff/initial the initial backoff must be longer than 0',
        '35:27 /spec/platform invalid platform "linux": "linux" is an operating system, not an architecture',
      ],
    );
    assert.ok(r.errors.every((e) => e.hint.length > 0));
  });

  it('reads JSON files, one object or a list, with positions and pointers into the list', async () => {
    const good = { apiVersion: 'berth/v1', kind: 'Container', metadata: { name: 'a' }, spec: { image: 'busybox' } };
    const bad = { apiVersion: 'berth/v1', kind: 'Container', metadata: { name: 'b' }, spec: { image: 'busybox', mounts: [{ type: 'bind', source: '/a', target: 'rel' }] } };
    const r = await load({ 'one.json': JSON.stringify(good, null, 2), 'list.json': JSON.stringify([good, bad], null, 2).replace('"a"', '"c"') });
    assert.deepEqual(names(r), ['Container/a']);
    const e = only(r);
    assert.deepEqual([e.file, e.line, e.col, e.pointer], ['list.json', 24, 21, '/1/spec/mounts/0/target']);
  });
});

describe('checks across files', () => {
  it('reports a duplicate name at the second occurrence, naming the first, and applies neither', async () => {
    const r = await load({ 'a.yaml': `${image('web')}---\n${container('web')}`, 'b.yaml': `${container('db')}---\n${container('web')}` });
    const e = only(r);
    assert.deepEqual([e.code, e.file, e.line, e.col, e.pointer], ['DUPLICATE', 'b.yaml', 11, 9, '/metadata/name']);
    assert.equal(e.message, 'Container "web" is defined twice: first at a.yaml:11');
    assert.deepEqual(e.object, { kind: 'Container', name: 'web' });
    assert.deepEqual(names(r), ['Image/web', 'Container/db'], 'an Image and a Container may share a name');
  });

  it('reports dependsOn naming no container, with a suggestion, and drops what depends on it', async () => {
    const r = await load({
      'a.yaml': container('web', 'image: a\ndependsOn: [dbb]'),
      'b.yaml': `${container('db')}---\n${container('proxy', 'image: a\ndependsOn: [web]')}---\n${image('base')}---\n${container('job', 'image: a\ndependsOn: [base]')}`,
    });
    assert.deepEqual(where(r), ['DEPENDENCY a.yaml:7:15 /spec/dependsOn/0', 'DEPENDENCY b.yaml:14:15 /spec/dependsOn/0', 'DEPENDENCY b.yaml:29:15 /spec/dependsOn/0']);
    assert.deepEqual(
      r.errors.map((e) => [e.message, e.hint]),
      [
        ['depends on "dbb", but there is no Container named "dbb"', 'did you mean "db"?'],
        ['depends on "web", which is not applied: it depends on "dbb", which does not exist', 'fix "web" first; until then "proxy" is not applied either'],
        ['depends on "base", but there is no Container named "base"', '"base" is an Image; dependsOn names Containers'],
      ],
    );
    assert.deepEqual(names(r), ['Container/db', 'Image/base']);
  });

  it('names a dependency in a skipped file as skipped', async () => {
    const r = await load({ 'a.yaml': container('db', 'image: a\nbogus: 1'), 'b.yaml': container('web', 'image: a\ndependsOn: [db]') });
    assert.deepEqual(where(r), ['SCHEMA a.yaml:7:3 /spec/bogus', 'DEPENDENCY b.yaml:7:15 /spec/dependsOn/0']);
    assert.equal(r.errors[1]!.message, 'depends on "db", which is not applied: its file a.yaml has errors');
    assert.deepEqual(names(r), []);
  });

  it('reports a cycle with its path, drops its members and their dependants, and keeps the rest', async () => {
    const r = await load({
      'a.yaml': container('a', 'image: x\ndependsOn: [b]'),
      'b.yaml': `${container('b', 'image: x\ndependsOn: [c, d]')}---\n${container('c', 'image: x\ndependsOn: [a]')}`,
      'd.yaml': `${container('d')}---\n${container('e', 'image: x\ndependsOn: [c]')}---\n${container('self', 'image: x\ndependsOn: [self]')}`,
    });
    assert.deepEqual(
      r.errors.map((e) => `${e.code} ${e.file}:${e.line}:${e.col} ${e.message}`),
      ['CYCLE a.yaml:7:15 dependency cycle: a → b → c → a', 'DEPENDENCY d.yaml:14:15 depends on "c", which is not applied: it is part of the dependency cycle a → b → c → a', 'CYCLE d.yaml:22:15 dependency cycle: self → self'],
    );
    assert.deepEqual(names(r), ['Container/d']);
  });

  it('applies the good files when one is bad, and says which failed', async () => {
    const r = await load({ 'a.yaml': container('a'), 'b.yaml': `${container('b')}---\n${container('c', 'image: [oops')}`, 'c.yaml': container('d') });
    assert.deepEqual(names(r), ['Container/a', 'Container/d']);
    assert.deepEqual([...new Set(r.errors.map((e) => `${e.code} ${e.file}`))], ['YAML b.yaml']);
    assert.deepEqual(r.files, ['a.yaml', 'b.yaml', 'c.yaml']);
  });

  it('never puts a stack trace in a message', async () => {
    const r = await load({ 'a.yaml': '{{{{', 'b.yaml': container('b', 'image: ""'), 'c.json': '[1, 2' });
    assert.ok(r.errors.length >= 3);
    for (const e of r.errors) assert.doesNotMatch(formatManifestError(e), /\n\s+at |Error:/);
  });
});
