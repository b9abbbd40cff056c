import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { AnySchemaObject } from 'ajv';
import { parseManifests } from '../../../src/manifests/yaml.js';
import { GENERATED_FILE, generateValidators, newAjv } from '../../../src/manifests/compile.js';
import { editDistance, readSchema, SCHEMA_DIRECTORY, subjectOf, suggest } from '../../../src/manifests/schema.js';

const files = readdirSync(fileURLToPath(SCHEMA_DIRECTORY)).filter((f) => f.endsWith('.schema.json')).sort();
const schemas = new Map(files.map((f) => [f, readSchema(f)]));

/** Every subschema with the path to it (not the conditions of if, which editors do not show). */
function* subschemas(s: unknown, path: string): Generator<[string, AnySchemaObject]> {
  if (Array.isArray(s)) {
    for (const [i, x] of s.entries()) yield* subschemas(x, `${path}/${i}`);
  } else if (s !== null && typeof s === 'object') {
    yield [path, s as AnySchemaObject];
    for (const [k, x] of Object.entries(s)) if (!['enum', 'const', 'required', 'if'].includes(k)) yield* subschemas(x, `${path}/${k}`);
  }
}

function resolved(root: AnySchemaObject, s: AnySchemaObject): AnySchemaObject {
  if (typeof s.$ref !== 'string' || !s.$ref.startsWith('#/')) return s;
  let target: unknown = root;
  for (const seg of s.$ref.slice(2).split('/')) target = (target as Record<string, unknown>)[seg];
  return { ...resolved(root, target as AnySchemaObject), ...s };
}

describe('the schemas in schemas/', () => {
  it('are the ones expected', () => assert.deepEqual(files, ['berth.schema.json', 'container.schema.json', 'image.schema.json']));

  it('compile in ajv strict mode, the combined one with the others', () => {
    const ajv = newAjv();
    for (const f of ['container.schema.json', 'image.schema.json']) {
      const s = schemas.get(f)!;
      assert.equal(s.$schema, 'http://json-schema.org/draft-07/schema#');
      assert.equal(s.$id, f, "a relative $id, so the combined schema finds the others next to it, in ajv and in editors");
      ajv.addSchema(s);
    }
    ajv.compile(schemas.get('berth.schema.json')!);
  });

  for (const [file, root] of schemas) {
    // The combined schema only picks one of the others by kind; they hold the fields.
    const own = file !== 'berth.schema.json';
    it(`${file}: every property has a title and a description${own ? ', every object forbids unknown fields' : ''}`, () => {
      for (const [path, s] of subschemas(root, '#')) {
        if (own && s.properties) assert.equal(s.additionalProperties, false, `${file} ${path} allows unknown fields`);
        for (const [name, p] of Object.entries((s.properties ?? {}) as Record<string, AnySchemaObject>)) {
          const r = resolved(root, p);
          assert.ok(typeof r.title === 'string' && r.title, `${file} ${path}/properties/${name} has no title`);
          assert.ok(typeof r.description === 'string' && r.description, `${file} ${path}/properties/${name} has no description`);
        }
      }
    });
  }

  it(`are what ${GENERATED_FILE} was generated from (else run: npm run schemas)`, () => {
    const source = new URL(`../../../../src/manifests/${GENERATED_FILE}`, import.meta.url);
    assert.ok(readFileSync(source, 'utf8') === generateValidators(), `src/manifests/${GENERATED_FILE} is stale: run npm run schemas`);
  });

  it('accept the example of DESIGN.md, and the combined schema dispatches on kind', () => {
    const text = [
      'apiVersion: berth/v1',
      'kind: Container',
      'metadata: { name: web, labels: { app: web } }',
      'spec:',
      '  image: registry.example:5000/team/web:1.4',
      '  pullPolicy: IfNotPresent',
      '  command: ["/bin/web"]',
      '  args: ["--port", "8080"]',
      '  env: { LOG_LEVEL: info }',
      '  workingDir: /srv',
      '  user: "1000:1000"',
      '  mounts: [{ type: bind, source: /data/web, target: /data }, { type: tmpfs, target: /tmp }]',
      '  restart: { policy: always, backoff: { initial: 1s, max: 60s } }',
      '  resources: { memory: 256Mi, cpus: 0.5, pids: 256 }',
      '  network: host',
      '  dependsOn: [db]',
      '  state: running',
      '---',
      'apiVersion: berth/v1',
      'kind: Image',
      'metadata: { name: base }',
      'spec: { ref: registry.example:5000/team/base:2, platform: linux/arm64 }',
    ].join('\n');
    const r = parseManifests(text, 'design.yaml');
    assert.deepEqual(r.errors, []);
    assert.equal(r.objects.length, 2);

    const ajv = newAjv();
    ajv.addSchema(schemas.get('container.schema.json')!).addSchema(schemas.get('image.schema.json')!);
    const any = ajv.compile(schemas.get('berth.schema.json')!);
    const c = { apiVersion: 'berth/v1', kind: 'Container', metadata: { name: 'a' }, spec: { image: 'busybox' } };
    const i = { apiVersion: 'berth/v1', kind: 'Image', metadata: { name: 'a' }, spec: { ref: 'busybox' } };
    assert.ok(any(c) && any(i));
    assert.ok(!any({ ...c, spec: { ref: 'busybox' } }), 'a Container is checked against the Container schema');
    assert.ok(!any({ ...i, spec: { image: 'busybox' } }), 'an Image against the Image schema');
    assert.ok(!any({ ...c, kind: 'Pod' }));
  });
});

describe('suggestions and subjects', () => {
  it('measures edit distance', () => {
    assert.equal(editDistance('', ''), 0);
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('env', ''), 3);
    assert.equal(editDistance('pullpolicy', 'pullPolicy'.toLowerCase()), 0);
  });

  it('suggests close names only', () => {
    const fields = ['image', 'pullPolicy', 'command', 'args', 'env', 'workingDir', 'mounts', 'restart'];
    assert.equal(suggest('imagePullPolicy', fields), 'pullPolicy');
    assert.equal(suggest('pullpolicy', fields), 'pullPolicy');
    assert.equal(suggest('comand', fields), 'command');
    assert.equal(suggest('mount', fields), 'mounts');
    assert.equal(suggest('workdir', fields), undefined);
    assert.equal(suggest('ports', fields), undefined);
    assert.equal(suggest('volumes', fields), undefined);
  });

  it('names what a pointer points at', () => {
    assert.equal(subjectOf('/spec/mounts/1/target'), 'target');
    assert.equal(subjectOf('/spec/command/0'), 'command[0]');
    assert.equal(subjectOf('/spec/env/A~1B'), 'A/B');
    assert.equal(subjectOf('/2'), 'item [2]');
    assert.equal(subjectOf(''), 'the manifest');
  });
});
