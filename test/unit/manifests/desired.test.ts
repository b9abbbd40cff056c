import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { desiredState, type ContainerSettings, type DesiredContainer, type DesiredImage } from '../../../src/manifests/index.js';
import { parseManifests } from '../../../src/manifests/yaml.js';
import { generateSpec, type ContainerConfig } from '../../../src/runtime/index.js';
import { container } from './fixtures.js';

function one(text: string): DesiredContainer | DesiredImage {
  const r = parseManifests(text, 'm.yaml');
  assert.deepEqual(r.errors, []);
  assert.equal(r.objects.length, 1);
  return r.objects[0]!;
}
const desiredContainer = (spec: string): DesiredContainer => one(container('web', spec)) as DesiredContainer;

// Type-level: the manifests' settings and the runtime's config are the same type, so
// one is handed to the other without a mapping and neither can grow a field alone.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const settingsAreConfig: Equal<ContainerSettings, ContainerConfig> = true;
const keysMatch: Equal<keyof ContainerSettings, keyof ContainerConfig> = true;

describe('desired state', () => {
  it('ContainerSettings is runtime/ContainerConfig', () => {
    assert.ok(settingsAreConfig && keysMatch);
  });

  it('fills in the defaults', () => {
    const c = desiredContainer('image: busybox:1.36');
    assert.deepEqual(c, {
      kind: 'Container',
      name: 'web',
      labels: {},
      image: 'busybox:1.36',
      pullPolicy: 'IfNotPresent',
      config: {},
      restart: { policy: 'always', initialMs: 1000, maxMs: 60_000 },
      stopTimeoutMs: 10_000,
      dependsOn: [],
      state: 'running',
      source: { file: 'm.yaml', line: 1, col: 1 },
    });
  });

  const pull: Array<[string, string]> = [
    ['image: busybox', 'Always'],
    ['image: busybox:latest', 'Always'],
    ['image: 127.0.0.1:5000/team/app', 'Always'],
    ['image: busybox:1.36', 'IfNotPresent'],
    [`image: busybox@sha256:${'a'.repeat(64)}`, 'IfNotPresent'],
    [`image: busybox:latest@sha256:${'a'.repeat(64)}`, 'IfNotPresent'],
    ['image: busybox\npullPolicy: Never', 'Never'],
    ['image: busybox:1.36\npullPolicy: Always', 'Always'],
  ];
  for (const [spec, policy] of pull) {
    it(`pulls ${JSON.stringify(spec)} with ${policy}`, () => assert.equal(desiredContainer(spec).pullPolicy, policy));
  }

  it('normalises sizes to bytes, durations to milliseconds, modes to numbers', () => {
    const c = desiredContainer(
      [
        'image: a',
        'resources: { memory: 256Mi, cpus: 0.5, pids: 64 }',
        'mounts:',
        '  - { type: tmpfs, target: /tmp, size: 64m, mode: "1777" }',
        '  - { type: tmpfs, target: /run, size: 1048576 }',
        '  - { type: bind, source: /data, target: /data, readonly: true, options: [nosuid] }',
        'stopTimeout: 1m30s',
        'restart: { policy: on-failure, maxRetries: 5, backoff: { initial: 500ms, max: 2 } }',
      ].join('\n'),
    );
    assert.deepEqual(c.config, {
      resources: { memory: 256 * 2 ** 20, cpus: 0.5, pids: 64 },
      mounts: [
        { type: 'tmpfs', target: '/tmp', size: 64 * 2 ** 20, mode: 0o1777 },
        { type: 'tmpfs', target: '/run', size: 1048576 },
        { type: 'bind', source: '/data', target: '/data', readonly: true, options: ['nosuid'] },
      ],
    });
    assert.equal(c.stopTimeoutMs, 90_000);
    assert.deepEqual(c.restart, { policy: 'on-failure', maxRetries: 5, initialMs: 500, maxMs: 2000 });
  });

  it('keeps the settings as written, labels, dependencies and state', () => {
    const c = one(
      'apiVersion: berth/v1\nkind: Container\nmetadata: { name: web, labels: { app: web } }\nspec:\n  image: a\n  command: []\n  args: [--port, "8080"]\n  env: { A: "1" }\n  user: "1000:1000"\n  workingDir: /srv\n  hostname: web-1\n  network: host\n  readonlyRootfs: true\n  capabilities: { add: [NET_ADMIN], drop: [ALL] }\n  stopSignal: SIGINT\n  dependsOn: [db]\n  state: stopped\n',
    ) as DesiredContainer;
    assert.deepEqual(c.config, {
      command: [],
      args: ['--port', '8080'],
      env: { A: '1' },
      user: '1000:1000',
      workingDir: '/srv',
      hostname: 'web-1',
      network: 'host',
      readonlyRootfs: true,
      capabilities: { add: ['NET_ADMIN'], drop: ['ALL'] },
      stopSignal: 'SIGINT',
    });
    assert.deepEqual([c.labels, c.dependsOn, c.state], [{ app: 'web' }, ['db'], 'stopped']);
  });

  it('normalises an Image platform and keeps the reference as written', () => {
    const i = one('apiVersion: berth/v1\nkind: Image\nmetadata: { name: base }\nspec: { ref: "busybox:1.36", platform: linux/aarch64 }\n');
    assert.deepEqual(i, { kind: 'Image', name: 'base', labels: {}, ref: 'busybox:1.36', platform: 'linux/arm64', source: { file: 'm.yaml', line: 1, col: 1 } });
  });

  it('splits objects by kind, in order', () => {
    const r = parseManifests([container('a'), 'apiVersion: berth/v1\nkind: Image\nmetadata: { name: i }\nspec: { ref: a }\n', container('b')].join('---\n'), 'm.yaml');
    const s = desiredState(r.objects);
    assert.deepEqual([s.containers.map((c) => c.name), s.images.map((i) => i.name)], [['a', 'b'], ['i']]);
  });

  it('hands its config to the runtime, which makes a spec of it', () => {
    const c = desiredContainer('image: a\ncommand: [/bin/web]\nresources: { memory: 64Mi }\nmounts: [{ type: tmpfs, target: /tmp, size: 1Mi, mode: "1777" }]\nnetwork: host');
    const spec = generateSpec({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: {} }, c.config, { name: c.name });
    assert.deepEqual(spec.process.args, ['/bin/web']);
    assert.equal(spec.linux.resources.memory?.limit, 64 * 2 ** 20);
    assert.ok(spec.mounts.some((m) => m.destination === '/tmp' && m.options.includes('size=1048576') && m.options.includes('mode=1777')));
    assert.ok(!spec.linux.namespaces.some((n) => n.type === 'network'));
  });
});
