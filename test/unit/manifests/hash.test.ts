import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canonicalJSON, canonicalSpec, diffSpecs, sameOutsideHash, specHash, specHashVersion, specMatches, type DesiredContainer } from '../../../src/manifests/index.js';
import { parseManifests } from '../../../src/manifests/yaml.js';
import { container, desired } from './fixtures.js';

const DIGEST = `sha256:${'ab'.repeat(32)}`;
const OTHER = `sha256:${'cd'.repeat(32)}`;
const hash = (c: DesiredContainer, digest = DIGEST): string => specHash(c, digest);
const fromYAML = (spec: string, name = 'web'): DesiredContainer => {
  const r = parseManifests(container(name, spec), `${name}.yaml`);
  assert.deepEqual(r.errors, []);
  return r.objects[0] as DesiredContainer;
};

const FULL = desired({
  config: {
    command: ['/bin/web'],
    args: [],
    env: { B: '2', A: '1' },
    user: '1000:1000',
    network: 'host',
    mounts: [
      { type: 'bind', source: '/data', target: '/data', readonly: true },
      { type: 'tmpfs', target: '/tmp', size: 1048576, mode: 0o1777 },
    ],
    resources: { memory: 268435456, cpus: 0.5 },
    capabilities: { add: ['net_admin', 'CAP_SYS_TIME'] },
    stopSignal: 'SIGINT',
  },
});

describe('specHash', () => {
  it('is "v1:" and 64 hex digits', () => assert.match(hash(desired()), /^v1:[0-9a-f]{64}$/));

  // Frozen: if these change, every container made by an earlier berth would be replaced on upgrade.
  it('computes v1 exactly as earlier berths did', () => {
    assert.equal(
      canonicalJSON(canonicalSpec(FULL, DIGEST)),
      '{"config":{"args":[],"capabilities":{"add":["CAP_NET_ADMIN","CAP_SYS_TIME"]},"command":["/bin/web"],"env":{"A":"1","B":"2"},' +
        '"mounts":[{"readonly":true,"source":"/data","target":"/data","type":"bind"},{"mode":1023,"size":1048576,"target":"/tmp","type":"tmpfs"}],' +
        `"network":"host","resources":{"cpus":0.5,"memory":268435456},"user":"1000:1000"},"imageDigest":"${DIGEST}"}`,
    );
    assert.equal(hash(FULL), 'v1:efb8f2b0b3b3e4e8678e1c4ff55278a8aa423687b4881717e975c04e72647244');
    assert.equal(hash(desired()), 'v1:83afb68e9174ffd827db13e441fb4926ec391f77d3dd85d11110ed4466c08872');
  });

  it('does not depend on the order keys are written in', () => {
    const a = fromYAML('image: a\nenv: { A: "1", B: "2" }\nresources: { memory: 1Gi, cpus: 1 }\nmounts: [{ type: bind, source: /s, target: /t }]');
    const b = fromYAML('resources: { cpus: 1, memory: 1Gi }\nmounts: [{ target: /t, source: /s, type: bind }]\nenv: { B: "2", A: "1" }\nimage: a');
    assert.equal(hash(a), hash(b));
  });

  it('treats defaults and empty values as absent', () => {
    const base = fromYAML('image: a');
    for (const spec of ['env: {}', 'mounts: []', 'network: none', 'readonlyRootfs: false', 'capabilities: {}', 'capabilities: { add: [], drop: [] }', 'resources: {}', 'dependsOn: []']) {
      assert.equal(hash(fromYAML(`image: a\n${spec}`)), hash(base), spec);
    }
    const mount = (extra: string): DesiredContainer => fromYAML(`image: a\nmounts: [{ type: bind, source: /s, target: /t${extra} }]`);
    assert.equal(hash(mount(', readonly: false, options: []')), hash(mount('')));
    assert.equal(hash(fromYAML('image: a\nresources: { memory: 256Mi }')), hash(fromYAML('image: a\nresources: { memory: 268435456 }')));
    assert.equal(hash(fromYAML('image: a\ncapabilities: { add: [net_admin, NET_ADMIN] }')), hash(fromYAML('image: a\ncapabilities: { add: [CAP_NET_ADMIN] }')));
  });

  it('ignores what needs no new container: labels, restart, stop settings, state, dependencies, pull policy, the reference', () => {
    const base = hash(FULL);
    const same: Array<[string, DesiredContainer]> = [
      ['labels', { ...FULL, labels: { app: 'web' } }],
      ['restart', { ...FULL, restart: { policy: 'on-failure', maxRetries: 3, initialMs: 10, maxMs: 20 } }],
      ['stopTimeoutMs', { ...FULL, stopTimeoutMs: 1 }],
      ['stopSignal', { ...FULL, config: { ...FULL.config, stopSignal: 'SIGKILL' } }],
      ['state', { ...FULL, state: 'stopped' }],
      ['dependsOn', { ...FULL, dependsOn: ['db'] }],
      ['pullPolicy', { ...FULL, pullPolicy: 'Always' }],
      ['image', { ...FULL, image: `registry.example:5000/team/web@${DIGEST}` }],
      ['name and source', { ...FULL, name: 'other', source: { file: 'x.yaml', line: 9, col: 9 } }],
    ];
    for (const [what, c] of same) assert.equal(hash(c), base, what);
    // Equal hashes: sameOutsideHash says exactly when diffSpecs finds nothing (plan skips diffSpecs then).
    assert.equal(sameOutsideHash(FULL, { ...FULL }), true);
    for (const [what, c] of same) assert.equal(sameOutsideHash(FULL, c), diffSpecs(FULL, c, { from: DIGEST, to: DIGEST }).length === 0, what);
    assert.deepEqual(same.filter(([, c]) => sameOutsideHash(FULL, c)).map(([what]) => what), ['name and source']);
  });

  it('changes with everything that makes the container', () => {
    const base = hash(FULL);
    const changed: Array<[string, DesiredContainer, string?]> = [
      ['image digest', FULL, OTHER],
      ['env value', { ...FULL, config: { ...FULL.config, env: { A: '1', B: '3' } } }],
      ['env added', { ...FULL, config: { ...FULL.config, env: { A: '1', B: '2', C: '' } } }],
      ['command', { ...FULL, config: { ...FULL.config, command: ['/bin/other'] } }],
      ['args [] dropped (the image Cmd comes back)', { ...FULL, config: { ...FULL.config, args: undefined } }],
      ['mount order', { ...FULL, config: { ...FULL.config, mounts: [...FULL.config.mounts!].reverse() } }],
      ['memory', { ...FULL, config: { ...FULL.config, resources: { memory: 1, cpus: 0.5 } } }],
      ['user', { ...FULL, config: { ...FULL.config, user: '0' } }],
      ['network', { ...FULL, config: { ...FULL.config, network: 'none' } }],
      ['readonlyRootfs', { ...FULL, config: { ...FULL.config, readonlyRootfs: true } }],
      ['capability dropped', { ...FULL, config: { ...FULL.config, capabilities: { add: ['NET_ADMIN'] } } }],
      ['a config field a later berth adds', { ...FULL, config: { ...FULL.config, ...({ sysctls: { 'net.core.somaxconn': '1024' } } as object) } }],
    ];
    const seen = new Set([base]);
    for (const [what, c, digest] of changed) {
      const h = hash(c, digest);
      assert.ok(!seen.has(h), what);
      seen.add(h);
    }
  });

  it('is versioned: a stored hash is recomputed in its own version', () => {
    const h = hash(FULL);
    assert.equal(specHashVersion(h), 'v1');
    assert.equal(specHashVersion(`v9:${'0'.repeat(64)}`), undefined);
    assert.equal(specHashVersion('garbage'), undefined);
    assert.ok(specMatches(h, { ...FULL, labels: { x: 'y' } }, DIGEST));
    assert.ok(!specMatches(h, FULL, OTHER));
    assert.ok(!specMatches(`v9:${h.slice(3)}`, FULL, DIGEST), 'a version this berth does not know never matches');
  });
});

describe('diffSpecs', () => {
  it('finds nothing between specs that differ only in empty or default values', () => {
    assert.deepEqual(diffSpecs(fromYAML('image: a'), fromYAML('image: a\nenv: {}\nmounts: []\nnetwork: none\ndependsOn: []\nstate: running')), []);
  });

  it('lists changes field by field, and which of them replace the container', () => {
    const a = fromYAML('image: web:1\nenv: { LOG_LEVEL: info }\nmounts: [{ type: bind, source: /a, target: /a }, { type: tmpfs, target: /t }]\nrestart: { policy: always }\nstopSignal: SIGTERM');
    const b = fromYAML('image: web:1\nenv: { LOG_LEVEL: debug, NEW: "1" }\nmounts: [{ type: bind, source: /a, target: /a }, { type: tmpfs, target: /u }]\nrestart: { policy: on-failure }\nstopSignal: SIGINT\nstate: stopped');
    assert.deepEqual(diffSpecs(a, { ...b, labels: { team: 'x' } }), [
      { path: 'config.env.LOG_LEVEL', from: 'info', to: 'debug', replace: true },
      { path: 'config.env.NEW', from: undefined, to: '1', replace: true },
      { path: 'config.mounts[1].target', from: '/t', to: '/u', replace: true },
      { path: 'config.stopSignal', from: 'SIGTERM', to: 'SIGINT', replace: false },
      { path: 'labels', from: undefined, to: { team: 'x' }, replace: false },
      { path: 'restart.policy', from: 'always', to: 'on-failure', replace: false },
      { path: 'state', from: 'running', to: 'stopped', replace: false },
    ]);
  });

  it('shows an image change as a digest change when the digests are known', () => {
    const a = fromYAML('image: web:1');
    const b = fromYAML('image: web:2');
    assert.deepEqual(diffSpecs(a, b), [{ path: 'image', from: 'web:1', to: 'web:2', replace: true }]);
    assert.deepEqual(diffSpecs(a, b, { from: DIGEST, to: DIGEST }), [{ path: 'image', from: 'web:1', to: 'web:2', replace: false }]);
    assert.deepEqual(diffSpecs(a, b, { from: DIGEST, to: OTHER }), [
      { path: 'image', from: 'web:1', to: 'web:2', replace: false },
      { path: 'imageDigest', from: DIGEST, to: OTHER, replace: true },
    ]);
  });

  it('agrees with the hash on what replaces', () => {
    const a = fromYAML('image: a\nenv: { A: "1" }');
    const cases = [fromYAML('image: a\nenv: { A: "2" }'), fromYAML('image: a\nenv: { A: "1" }\nstopTimeout: 3s'), fromYAML('image: a\nenv: { A: "1" }\nresources: { pids: 5 }')];
    for (const b of cases) {
      const replaces = diffSpecs(a, b, { from: DIGEST, to: DIGEST }).some((c) => c.replace);
      assert.equal(replaces, hash(a) !== hash(b), JSON.stringify(diffSpecs(a, b)));
    }
  });
});
