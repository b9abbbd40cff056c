/**
 * The reconciler end to end through the CLI: validate, plan, apply and
 * explain on manifest directories, and `berth daemon -f DIR` keeping a host
 * converged. Real parts: docker-registry (behind a registries.yaml mirror
 * for registry.demo, sometimes through a fault proxy), runc under conmon,
 * a fresh root per test. Every test removes its containers and stops its
 * daemons whatever happens.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ContainerView } from '../../src/containers/service.js';
import type { ApplyReport, ObjectStatus, Plan } from '../../src/reconcile/index.js';
import { startBerth, type CliResult } from '../helpers/berth.js';
import { berthOk, describeResult, eventually, leftovers, mountsUnder, ps, removeAll, storedEvents, type DaemonHandle } from '../helpers/containers.js';
import { startFaultProxy, type FaultProxy } from '../helpers/faultproxy.js';
import { berthWith, containerYaml, pushDemoImages, startDaemonWith, writeManifests, writeMirrorConfig, type DemoImages } from '../helpers/manifests.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { tempDir, withTempDir } from '../helpers/tmp.js';

let reg: RegistryHandle;
let img: DemoImages;
let shared: { path: string; cleanup(): Promise<void> };
/** registries.yaml sending registry.demo to the shared registry. */
let mirror: string;
let berth: (root: string, args: string[]) => Promise<CliResult>;

before(async () => {
  reg = await startRegistry();
  img = await pushDemoImages(reg);
  shared = await tempDir('berth-reconcile-shared');
  mirror = await writeMirrorConfig(join(shared.path, 'registries.yaml'), reg.host);
  berth = berthWith(mirror);
});
after(async () => {
  await reg?.stop();
  await shared?.cleanup();
});

interface Root {
  root: string;
  /** The manifest directory (under the root). */
  dir: string;
  /** Daemons to SIGKILL at the end. */
  daemons: DaemonHandle[];
}

/** A fresh root with an empty manifest dir; afterwards every daemon is killed and every container removed. */
function withRoot(fn: (r: Root) => Promise<void>): Promise<void> {
  return withTempDir('berth-reconcile', async (root) => {
    const dir = join(root, 'manifests');
    await mkdir(dir);
    const r: Root = { root, dir, daemons: [] };
    try {
      await fn(r);
    } finally {
      for (const d of r.daemons) await d.kill();
      const names = await ps(root).then((vs) => vs.map((v) => v.name), () => [] as string[]);
      await removeAll(root, names);
    }
  });
}

async function expectExit(root: string, args: string[], code: number, b = berth): Promise<CliResult> {
  const r = await b(root, args);
  assert.equal(r.code, code, `berth ${args.join(' ')}: expected exit ${code}\n${describeResult(r)}`);
  return r;
}

function byName(views: ContainerView[]): Map<string, ContainerView> {
  return new Map(views.map((v) => [v.name, v]));
}

/** Three services: web alone; db and api (api after db) in one file. */
async function writeShop(r: Root): Promise<void> {
  await writeManifests(r.dir, {
    'web.yaml': containerYaml('web', { image: img.v1, env: { LOG_LEVEL: 'info' } }),
    'shop.yaml': [containerYaml('db', { image: img.v1, restart: { policy: 'always' } }), containerYaml('api', { image: img.v1, env: { LOG_LEVEL: 'info' }, dependsOn: ['db'] })].join('---\n'),
  });
}

const NO_CHANGES = /plan: 0 to pull, 0 to create, 0 to replace, 0 to update, 0 to start, 0 to stop, 0 to delete, 0 to untag; (\d+) unchanged/;

describe('berth validate, plan, apply', () => {
  test('apply from empty converges, in dependency order; a second apply changes nothing; --dry-run and -o json', async () => {
    await withRoot(async (r) => {
      await writeShop(r);
      await expectExit(r.root, ['validate', '-f', r.dir], 0);
      const planned = await expectExit(r.root, ['plan', '-f', r.dir], 2);
      assert.match(planned.stdout, /↓ pull registry\.demo\/berth\/busybox:1\.0/);
      assert.match(planned.stdout, /\? api: create or replace decided after its image is pulled/);

      // --dry-run is the plan: nothing pulled, nothing made.
      await expectExit(r.root, ['apply', '--dry-run', '-f', r.dir], 2);
      assert.deepEqual(await ps(r.root), []);
      assert.deepEqual(JSON.parse(await berthOk(r.root, ['-o', 'json', 'image', 'ls'])), []);

      const applied = await expectExit(r.root, ['-o', 'json', 'apply', '-f', r.dir], 0);
      const report = JSON.parse(applied.stdout) as ApplyReport;
      assert.equal(report.converged, true);
      assert.deepEqual(
        report.steps.map((s) => [s.change.action, 'image' in s.change ? s.change.image : s.change.name, s.ok]),
        [
          ['pull', 'registry.demo/berth/busybox:1.0', true],
          ['create', 'db', true],
          ['create', 'api', true],
          ['create', 'web', true],
        ],
      );
      const first = byName(await ps(r.root));
      assert.deepEqual([...first.values()].map((v) => [v.name, v.state]).sort(), [['api', 'running'], ['db', 'running'], ['web', 'running']]);
      const status = await expectExit(r.root, ['-o', 'json', 'status'], 0);
      const objects = (JSON.parse(status.stdout) as { objects: ObjectStatus[] }).objects;
      assert.deepEqual(objects.map((o) => [o.name, o.conditions.find((c) => c.type === 'Ready')?.status, o.conditions.find((c) => c.type === 'Degraded')?.status]), [
        ['api', true, false],
        ['db', true, false],
        ['web', true, false],
      ]);

      // Again: nothing to do, and nothing restarted.
      const again = await expectExit(r.root, ['plan', '-f', r.dir], 0);
      assert.match(again.stdout, NO_CHANGES);
      assert.equal(NO_CHANGES.exec(again.stdout)![1], '3');
      const json = JSON.parse((await expectExit(r.root, ['-o', 'json', 'plan', '-f', r.dir], 0)).stdout) as { plan: Plan; errors: unknown[] };
      assert.deepEqual([json.plan.changes, json.plan.unchanged.sort(), json.errors], [[], ['api', 'db', 'web'], []]);
      const second = await expectExit(r.root, ['apply', '-f', r.dir], 0);
      assert.match(second.stdout, /converged: 0 changes applied/);
      const now = byName(await ps(r.root));
      for (const [name, v] of first) assert.deepEqual([now.get(name)?.id, now.get(name)?.pid], [v.id, v.pid], `${name} kept its id and pid`);
    });
  });

  test("an env change replaces exactly that container, and explain names the field", async () => {
    await withRoot(async (r) => {
      await writeShop(r);
      await expectExit(r.root, ['apply', '-f', r.dir], 0);
      const before = byName(await ps(r.root));
      const shop = join(r.dir, 'shop.yaml');
      await writeFile(shop, (await readFile(shop, 'utf8')).replace(/LOG_LEVEL: info/, 'LOG_LEVEL: debug'));

      const planned = await expectExit(r.root, ['plan', '-f', r.dir], 2);
      assert.match(planned.stdout, /~ replace api: spec changed: config\.env\.LOG_LEVEL/);
      assert.match(planned.stdout, /config\.env\.LOG_LEVEL: "info" → "debug"/);
      assert.doesNotMatch(planned.stdout, /replace (web|db)/);
      const ahead = await expectExit(r.root, ['explain', 'api', '-f', r.dir], 0);
      assert.match(ahead.stdout, /config\.env\.LOG_LEVEL: "info" → "debug"/);

      const applied = await expectExit(r.root, ['apply', '-f', r.dir], 0);
      assert.match(applied.stdout, /ok {3}~ replace api/);
      const after = byName(await ps(r.root));
      assert.notEqual(after.get('api')!.id, before.get('api')!.id, 'api was replaced');
      assert.equal(after.get('api')!.state, 'running');
      for (const name of ['web', 'db']) assert.deepEqual([after.get(name)!.id, after.get(name)!.pid], [before.get(name)!.id, before.get(name)!.pid], `${name} untouched`);

      const why = await expectExit(r.root, ['explain', 'api'], 0);
      assert.match(why.stdout, /api was replaced at .*spec changed: config\.env\.LOG_LEVEL/);
      assert.match(why.stdout, /config\.env\.LOG_LEVEL: "info" → "debug"/);
      assert.match((await expectExit(r.root, ['explain', 'web'], 0)).stdout, /web: no replacement on record/);
      // The replaced container left nothing behind: one bundle and one snapshot per container.
      const left = await leftovers(r.root);
      assert.deepEqual(left.bundles.sort(), [...after.values()].map((v) => v.id).sort());
      assert.deepEqual(left.snapshots.sort(), [...after.values()].map((v) => `container-${v.id}`).sort());
    });
  });

  test('a removed file: its containers are orphans without --prune, deleted with it', async () => {
    await withRoot(async (r) => {
      await writeShop(r);
      await expectExit(r.root, ['apply', '-f', r.dir], 0);
      const web = byName(await ps(r.root)).get('web')!;
      await rm(join(r.dir, 'shop.yaml'));

      const planned = await expectExit(r.root, ['plan', '-f', r.dir], 0);
      assert.match(planned.stdout, /orphan api: no manifest declares it/);
      assert.match(planned.stdout, /orphan db: no manifest declares it/);
      const kept = await expectExit(r.root, ['apply', '-f', r.dir], 0);
      assert.match(kept.stdout, /orphan api/);
      assert.deepEqual((await ps(r.root)).map((v) => v.name).sort(), ['api', 'db', 'web']);

      await expectExit(r.root, ['plan', '--prune', '-f', r.dir], 2);
      const pruned = await expectExit(r.root, ['apply', '--prune', '-f', r.dir], 0);
      // Dependents first.
      assert.match(pruned.stdout, /ok {3}- delete api[^]*ok {3}- delete db/);
      const now = await ps(r.root);
      assert.deepEqual(now.map((v) => [v.name, v.id, v.pid]), [['web', web.id, web.pid]]);
      const left = await leftovers(r.root);
      assert.deepEqual([left.bundles, left.snapshots, left.containers], [[web.id], [`container-${web.id}`], ['web']]);
      assert.deepEqual(left.locks, ['container-web.lock'], 'the lock files of the deleted containers went with them');
    });
  });

  test('a tag moved, with --prune: the replace, then the old name is untagged and gc frees what only it held; a name pulled by hand stays', async () => {
    await withRoot(async (r) => {
      await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.v1 }) });
      await expectExit(r.root, ['apply', '-f', r.dir], 0);
      await expectExit(r.root, ['image', 'pull', img.big], 0);
      const images = (): Promise<Array<{ name: string; digest: string }>> => berthOk(r.root, ['-o', 'json', 'image', 'ls']).then((t) => JSON.parse(t));
      const v1 = (await images()).find((i) => i.name === img.v1)!;

      await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.v2 }) });
      // web runs 1.0 until 2.0 is stored, so the plan cannot untag 1.0 yet; the apply plans again after its pull.
      const planned = await expectExit(r.root, ['plan', '--prune', '-f', r.dir], 2);
      assert.doesNotMatch(planned.stdout, /- untag/);
      const applied = await expectExit(r.root, ['apply', '--prune', '-f', r.dir], 0);
      assert.match(applied.stdout, /ok {3}~ replace web[^]*ok {3}- untag registry\.demo\/berth\/busybox:1\.0 \(no manifest declares it and no container uses it \(prune\)\)/);
      assert.deepEqual((await images()).map((i) => i.name).sort(), [img.v2, img.big].sort());
      assert.match((await expectExit(r.root, ['plan', '--prune', '-f', r.dir], 0)).stdout, NO_CHANGES, 'converged: nothing left to untag');

      const gc = JSON.parse(await berthOk(r.root, ['-o', 'json', 'gc'])) as { blobs: Array<{ digest: string }> };
      assert.ok(gc.blobs.some((b) => b.digest === v1.digest), `gc freed the old image's manifest: ${JSON.stringify(gc.blobs)}`);
      assert.equal(byName(await ps(r.root)).get('web')?.state, 'running');
    });
  });

  test('a bad file among good ones: reported with file:line:col and pointer, exit 1, the good ones converge, its containers survive --prune', async () => {
    await withRoot(async (r) => {
      await writeManifests(r.dir, {
        'good.yaml': containerYaml('good', { image: img.v1 }),
        'svc.yaml': containerYaml('svc', { image: img.v1, restart: { policy: 'always' } }),
      });
      await expectExit(r.root, ['apply', '-f', r.dir], 0);
      const svc = byName(await ps(r.root)).get('svc')!;
      // svc.yaml breaks (line 9, the policy value); a new good file arrives.
      const text = containerYaml('svc', { image: img.v1, restart: { policy: 'sometimes' } });
      await writeManifests(r.dir, { 'svc.yaml': text, 'more.yaml': containerYaml('more', { image: img.v1 }) });
      const lines = text.split('\n');
      const line = lines.findIndex((l) => l.includes('sometimes')) + 1;
      const col = lines[line - 1]!.indexOf('sometimes') + 1;
      const where = `${join(r.dir, 'svc.yaml')}:${line}:${col}`;

      const v = await expectExit(r.root, ['validate', '-f', r.dir], 1);
      assert.ok(v.stderr.includes(`${where}: `), v.stderr);
      assert.match(v.stderr, /\(at \/spec\/restart\/policy\)/);
      const vj = JSON.parse((await expectExit(r.root, ['-o', 'json', 'validate', '-f', r.dir], 1)).stdout) as { errors: Array<{ file: string; line: number; col: number; pointer: string }> };
      assert.deepEqual(vj.errors.map((e) => [e.file, e.line, e.col, e.pointer]), [[join(r.dir, 'svc.yaml'), line, col, '/spec/restart/policy']]);
      await expectExit(r.root, ['validate', '-f', join(r.dir, 'good.yaml'), '-f', join(r.dir, 'more.yaml')], 0);
      // A manifest error wins over "changes pending".
      const p = await expectExit(r.root, ['plan', '--prune', '-f', r.dir], 1);
      assert.ok(p.stderr.includes(where), p.stderr);
      assert.doesNotMatch(p.stdout, /delete svc/);

      const applied = await expectExit(r.root, ['apply', '--prune', '-f', r.dir], 1);
      assert.ok(applied.stderr.includes(where), applied.stderr);
      assert.match(applied.stdout, /ok {3}\+ create more/);
      assert.match(applied.stdout, /not converged: 1 change applied; 1 manifest error, their objects left as they are/);
      const now = byName(await ps(r.root));
      assert.deepEqual([...now.keys()].sort(), ['good', 'more', 'svc']);
      assert.deepEqual([now.get('svc')!.id, now.get('svc')!.pid], [svc.id, svc.pid], 'svc untouched');
      assert.equal(now.get('more')!.state, 'running');
      // A broken YAML file protects its containers the same way.
      await writeFile(join(r.dir, 'svc.yaml'), 'apiVersion: berth/v1\nkind: Container\nmetadata: { name: svc\n');
      const broken = await expectExit(r.root, ['apply', '--prune', '-f', r.dir], 1);
      assert.ok(broken.stderr.includes(`${join(r.dir, 'svc.yaml')}:`), broken.stderr);
      assert.equal(byName(await ps(r.root)).get('svc')?.id, svc.id);
    });
  });

  test('exit codes: validate 0/1; plan 0 nothing to do, 2 changes, 1 error or conflict; a container made by hand is a conflict', async () => {
    await withRoot(async (r) => {
      await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.v1 }) });
      await expectExit(r.root, ['validate', '-f', r.dir], 0);
      await expectExit(r.root, ['plan', '-f', r.dir], 2);
      await expectExit(r.root, ['plan', '-f', join(r.root, 'nowhere')], 1);
      await expectExit(r.root, ['plan'], 1);
      await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: 'registry.demo/berth/busybox:1.0', dependsOn: ['nobody'] }) });
      await expectExit(r.root, ['validate', '-f', r.dir], 1);
      await expectExit(r.root, ['plan', '-f', r.dir], 1);

      await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.v1 }) });
      await berthOk(r.root, ['--registry-config', mirror, 'run', '-d', '--name', 'web', img.v1, '--', 'sleep', '600']);
      const handMade = byName(await ps(r.root)).get('web')!;
      const p = await expectExit(r.root, ['plan', '-f', r.dir], 1);
      assert.match(p.stdout, /! web: a container "web" exists that berth apply did not create/);
      const a = await expectExit(r.root, ['apply', '--prune', '-f', r.dir], 1);
      assert.match(a.stdout, /FAIL ! web:/);
      assert.deepEqual([byName(await ps(r.root)).get('web')?.id, byName(await ps(r.root)).get('web')?.pid], [handMade.id, handMade.pid], 'left alone');
    });
  });

  test('registry down: apply exits 1 naming the host; nothing half-made', async () => {
    const down = await startRegistry();
    await withRoot(async (r) => {
      await pushDemoImages(down);
      const config = await writeMirrorConfig(join(r.root, 'registries.yaml'), down.host);
      await down.stop();
      await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.v1 }) });
      const res = await expectExit(r.root, ['apply', '-f', r.dir], 1, berthWith(config));
      assert.match(res.stdout, /FAIL ↓ pull registry\.demo\/berth\/busybox:1\.0/);
      assert.ok(res.stdout.includes('skip + create web (registry.demo/berth/busybox:1.0)\n'), res.stdout);
      assert.match(res.stdout, /image registry\.demo\/berth\/busybox:1\.0 could not be pulled/);
      assert.ok((res.stdout + res.stderr).includes(down.host), `the output names ${down.host}:\n${describeResult(res)}`);
      assert.match(res.stdout, /not converged/);
      assert.deepEqual(await ps(r.root), []);
    });
    await down.stop();
  });

  test('a container that crashes at once (visible in ps and status), and one that cannot start (visible in apply)', async () => {
    await withRoot(async (r) => {
      await writeManifests(r.dir, {
        'crash.yaml': containerYaml('crash', { image: img.v1, command: ['/bin/sh', '-c', 'echo bye; exit 1'], restart: { policy: 'never' } }),
        'nocmd.yaml': containerYaml('nocmd', { image: img.v1, command: ['/no/such/binary'] }),
      });
      const res = await expectExit(r.root, ['apply', '-f', r.dir], 1);
      // Refused before anything is made, saying why; it stays due.
      assert.match(res.stdout, /FAIL \+ create nocmd .*\n.*executable "\/no\/such\/binary" is not in the image/);
      assert.match(res.stdout, /hint: /);
      await expectExit(r.root, ['plan', '-f', join(r.dir, 'nocmd.yaml')], 2);
      const crash = await eventually('crash to exit', async () => {
        const v = byName(await ps(r.root)).get('crash');
        return v?.state === 'exited' ? v : undefined;
      });
      assert.equal(crash.exitCode, 1);
      const st = await expectExit(r.root, ['-o', 'json', 'status'], 0);
      const objects = new Map((JSON.parse(st.stdout) as { objects: ObjectStatus[] }).objects.map((o) => [o.name, o]));
      const degraded = (n: string): [boolean | undefined, string | undefined] => {
        const c = objects.get(n)?.conditions.find((x) => x.type === 'Degraded');
        return [c?.status, c?.reason];
      };
      assert.deepEqual(degraded('crash'), [true, 'Crashed']);
      assert.equal(objects.get('crash')!.exitCode, 1);
      assert.equal(objects.has('nocmd'), false, 'nothing was made of nocmd');
      // The text form exits 1 when anything is degraded.
      const text = await expectExit(r.root, ['status'], 1);
      assert.match(text.stdout, /crash .*Crashed/);
      // Reapplying does not rerun a finished job.
      await berth(r.root, ['apply', '-f', join(r.dir, 'crash.yaml')]);
      assert.equal(byName(await ps(r.root)).get('crash')!.id, crash.id);
      assert.equal((await berthOk(r.root, ['logs', 'crash'])), 'bye\n');
    });
  });

  test('two concurrent applies never interleave: the second waits, or with --timeout 0 fails naming the holder', async () => {
    const proxy = await startFaultProxy(reg.host);
    try {
      await withRoot(async (r) => {
        // About 1 MB at 120 kB/s: the first apply holds the lock for 8 s or more, time for
        // the other two to start even on a loaded machine.
        proxy.addFault({ kind: 'throttle', bytesPerSecond: 120_000, path: /\/blobs\//, times: 100 });
        const b = berthWith(await writeMirrorConfig(join(r.root, 'registries.yaml'), proxy.host));
        await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.v1 }) });
        const args = ['--registry-config', join(r.root, 'registries.yaml'), 'apply', '-f', r.dir];
        const first = startBerth(r.root, args);
        const holder = await eventually('the first apply to hold the lock', async () => {
          const h = JSON.parse(await readFile(join(r.root, 'run', 'lock'), 'utf8')) as { pid: number; what: string };
          return h.pid === first.child.pid ? h : undefined;
        });
        assert.equal(holder.what, 'berth apply');
        const refused = await expectExit(r.root, ['apply', '--timeout', '0', '-f', r.dir], 1, b);
        assert.ok(refused.stderr.includes(String(first.child.pid)), `names the holder pid ${first.child.pid}: ${refused.stderr}`);
        assert.match(refused.stderr, /berth apply/);
        const waiting = startBerth(r.root, args);
        const [a, w] = await Promise.all([first.done, waiting.done]);
        assert.equal(a.code, 0, describeResult(a));
        assert.equal(w.code, 0, describeResult(w));
        assert.match(a.stdout, /ok {3}\+ create web/);
        // The second one planned after the first had finished: nothing left to do.
        assert.match(w.stdout, /converged: 0 changes applied/);
        assert.equal((await ps(r.root)).length, 1);
      });
    } finally {
      await proxy.stop();
    }
  });
});

describe('berth daemon -f DIR', () => {
  test('converges, replaces an edited container, prunes a removed file; berth apply goes through it', async () => {
    await withRoot(async (r) => {
      await writeShop(r);
      const d = await startDaemonWith(r.root, mirror, ['-f', r.dir]);
      r.daemons.push(d);
      const running = async (names: string[]): Promise<Map<string, ContainerView> | undefined> => {
        const m = byName(await ps(r.root));
        return names.every((n) => m.get(n)?.state === 'running') && m.size === names.length ? m : undefined;
      };
      const first = await eventually('the daemon to converge', () => running(['api', 'db', 'web']), 30_000, 250);
      const st = JSON.parse((await expectExit(r.root, ['-o', 'json', 'status'], 0)).stdout) as { objects: ObjectStatus[]; lastReconcile: { converged: boolean } };
      assert.equal(st.lastReconcile.converged, true);
      assert.ok(st.objects.every((o) => o.conditions.find((c) => c.type === 'Ready')?.status), JSON.stringify(st.objects));

      // An edit replaces that container only.
      const web = join(r.dir, 'web.yaml');
      await writeFile(web, (await readFile(web, 'utf8')).replace('LOG_LEVEL: info', 'LOG_LEVEL: warn'));
      const edited = await eventually('web to be replaced', async () => {
        const m = await running(['api', 'db', 'web']);
        return m && m.get('web')!.id !== first.get('web')!.id ? m : undefined;
      }, 30_000, 250);
      for (const n of ['api', 'db']) assert.equal(edited.get(n)!.id, first.get(n)!.id);

      // A removed file is pruned (the daemon prunes by default).
      await rm(join(r.dir, 'shop.yaml'));
      await eventually('api and db to be pruned', () => running(['web']), 30_000, 250);

      // berth apply hands its work to the daemon; the exit code is the daemon's result.
      const applied = await expectExit(r.root, ['apply', '-f', r.dir], 0);
      assert.match(applied.stdout, /converged/);
      assert.match(d.stderr(), /reconciled .*trigger=api .*converged=true/);
      const other = join(r.root, 'other');
      await mkdir(other);
      await writeManifests(other, { 'ghost.yaml': containerYaml('ghost', { image: 'registry.demo/berth/busybox:9.9' }) });
      // Other manifests are refused: the daemon's next run would prune what they made.
      const refused = await expectExit(r.root, ['apply', '-f', other], 1);
      assert.match(refused.stderr, /the daemon \(pid \d+\) keeps .* converged; it does not apply other manifests/);
      assert.ok(!byName(await ps(r.root)).has('ghost'), 'nothing of the other manifests was created');
      const events = await storedEvents(r.root);
      assert.ok(events.some((e) => e.event.type === 'reconcile.done' && e.event.trigger === 'api'));
      assert.ok(events.some((e) => e.event.type === 'container.replaced' && e.event.name === 'web'));
      const stopped = await d.stop();
      assert.equal(stopped.code, 0, describeResult(stopped));
      assert.ok((await running(['web'])) !== undefined, 'containers outlive the daemon');
    });
  });

  test('a file that breaks under the daemon: its container survives the prune, the error shows in status', async () => {
    await withRoot(async (r) => {
      await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.v1 }), 'svc.yaml': containerYaml('svc', { image: img.v1 }) });
      const d = await startDaemonWith(r.root, mirror, ['-f', r.dir]);
      r.daemons.push(d);
      const first = await eventually('web and svc to run', async () => {
        const m = byName(await ps(r.root));
        return m.get('web')?.state === 'running' && m.get('svc')?.state === 'running' ? m : undefined;
      }, 30_000, 250);
      await writeManifests(r.dir, { 'svc.yaml': containerYaml('svc', { image: img.v1, restart: { policy: 'sometimes' } }) });
      const st = await eventually('status to count the manifest error', async () => {
        const s = JSON.parse((await berth(r.root, ['-o', 'json', 'status'])).stdout) as { lastReconcile: { manifestErrors: number } | null };
        return s.lastReconcile?.manifestErrors === 1 ? s : undefined;
      }, 30_000, 250);
      assert.ok(st);
      assert.equal(byName(await ps(r.root)).get('svc')?.id, first.get('svc')!.id, 'svc survived the prune');
      const text = await expectExit(r.root, ['status'], 1);
      assert.match(text.stdout, /1 manifest error/);
      assert.match(d.stderr(), /svc\.yaml:\d+:\d+/);
    });
  });

  test('a container killed by hand comes back (restart always), with the backoff in the events', async () => {
    await withRoot(async (r) => {
      await writeManifests(r.dir, { 'phoenix.yaml': containerYaml('phoenix', { image: img.v1, restart: { policy: 'always', backoff: { initial: '500ms' } } }) });
      r.daemons.push(await startDaemonWith(r.root, mirror, ['-f', r.dir]));
      const first = await eventually('phoenix to run', async () => {
        const v = byName(await ps(r.root)).get('phoenix');
        return v?.state === 'running' && v.pid ? v : undefined;
      }, 30_000, 250);
      process.kill(first.pid!, 'SIGKILL');
      const again = await eventually('phoenix to run again', async () => {
        const v = byName(await ps(r.root)).get('phoenix');
        return v?.state === 'running' && v.pid && v.pid !== first.pid ? v : undefined;
      }, 30_000, 250);
      assert.equal(again.id, first.id, 'restarted, not replaced');
      assert.equal(again.restarts, 1);
      const scheduled = (await storedEvents(r.root)).filter((e) => e.event.type === 'container.restart.scheduled' && e.event.name === 'phoenix');
      assert.equal(scheduled.length, 1);
      const e = scheduled[0]!.event as { delayMs: number; exitCode: number; attempt: number };
      assert.deepEqual([e.attempt, e.exitCode], [1, 137]);
      assert.ok(e.delayMs >= 400 && e.delayMs <= 600, `delay ${e.delayMs} ms`);
    });
  });

  test('SIGKILL of the daemon during a slow pull, then a restart: converged, no duplicate, no orphaned snapshot or mount', async () => {
    const proxy = await startFaultProxy(reg.host);
    try {
      await withRoot(async (r) => {
        const config = await writeMirrorConfig(join(r.root, 'registries.yaml'), proxy.host);
        await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.v1 }), 'db.yaml': containerYaml('db', { image: img.v1 }) });
        const d1 = await startDaemonWith(r.root, config, ['-f', r.dir]);
        r.daemons.push(d1);
        const first = await eventually('web and db to run', async () => {
          const m = byName(await ps(r.root));
          return m.get('web')?.state === 'running' && m.get('db')?.state === 'running' ? m : undefined;
        }, 30_000, 250);
        // web moves to an image with no blob in common, fetched slowly; the daemon dies mid-pull.
        proxy.addFault({ kind: 'throttle', bytesPerSecond: 200_000, path: /\/blobs\//, times: 100 });
        const seen = proxy.requests.length;
        await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.big }) });
        await eventually('the slow pull to start', async () => (proxy.requests.slice(seen).some((q) => q.fault === 'throttle') ? true : undefined), 20_000, 50).catch((err: Error) => {
          throw new Error(`${err.message}\nrequests: ${proxy.requests.slice(seen).map((q) => `${q.method} ${q.path} ${q.status} ${q.fault}`).join('\n')}\ndaemon: ${d1.stderr()}`);
        });
        await sleep(1500);
        await d1.kill();
        // Download-then-replace: the old web still runs.
        const during = byName(await ps(r.root));
        assert.equal(during.get('web')?.id, first.get('web')!.id);
        assert.equal(during.get('web')?.state, 'running');

        proxy.clearFaults();
        r.daemons.push(await startDaemonWith(r.root, config, ['-f', r.dir]));
        const done = await eventually('web to run on the new image', async () => {
          const vs = await ps(r.root);
          const web = vs.filter((v) => v.name === 'web');
          return web.length === 1 && web[0]!.state === 'running' && web[0]!.image === img.big ? vs : undefined;
        }, 60_000, 250);
        assert.deepEqual(done.map((v) => v.name).sort(), ['db', 'web'], 'no duplicates');
        assert.equal(byName(done).get('db')!.id, first.get('db')!.id, 'db untouched');
        await expectExit(r.root, ['plan', '-f', r.dir], 0);
        const left = await leftovers(r.root);
        const ids = done.map((v) => v.id).sort();
        assert.deepEqual(left.snapshots.sort(), ids.map((id) => `container-${id}`), 'a container snapshot per record, none more');
        assert.deepEqual(left.bundles.sort(), ids);
        assert.deepEqual((await mountsUnder(r.root)).sort(), ids.map((id) => join(r.root, 'lib', 'bundles', id, 'rootfs')), 'a mount per running container, none more');
        await expectExit(r.root, ['content', 'verify'], 0);
      });
    } finally {
      await proxy.stop();
    }
  });

  test('registry down under the daemon: status Degraded with the error; retried with backoff until it is back', async () => {
    const proxy = await startFaultProxy(reg.host);
    try {
      await withRoot(async (r) => {
        const config = await writeMirrorConfig(join(r.root, 'registries.yaml'), proxy.host);
        proxy.addFault({ kind: 'status', status: 503, times: 10_000 });
        await writeManifests(r.dir, { 'web.yaml': containerYaml('web', { image: img.v1 }) });
        const d = await startDaemonWith(r.root, config, ['-f', r.dir]);
        r.daemons.push(d);
        const st = await eventually('status to show the failure', async () => {
          const res = await berth(r.root, ['-o', 'json', 'status']);
          const web = (JSON.parse(res.stdout) as { objects: ObjectStatus[] }).objects.find((o) => o.name === 'web');
          return web?.lastError ? web : undefined;
        }, 30_000, 250);
        assert.equal(st.state, 'absent');
        assert.deepEqual(st.conditions.find((c) => c.type === 'Degraded'), { type: 'Degraded', status: true, reason: 'ApplyFailed', message: st.lastError });
        assert.match(st.lastError!, /image registry\.demo\/berth\/busybox:1\.0 could not be pulled: .*registry/);
        const text = await expectExit(r.root, ['status'], 1);
        assert.match(text.stdout, /web .*ApplyFailed/);
        await eventually('a retry', async () => (/trigger=retry/.test(d.stderr()) ? true : undefined), 30_000, 100);

        proxy.clearFaults();
        await eventually('web to run once the registry is back', async () => (byName(await ps(r.root)).get('web')?.state === 'running' ? true : undefined), 60_000, 250);
        await eventually('status Ready', async () => {
          const web = (JSON.parse((await berth(r.root, ['-o', 'json', 'status'])).stdout) as { objects: ObjectStatus[] }).objects.find((o) => o.name === 'web');
          return web?.conditions.find((c) => c.type === 'Ready')?.status && !web.lastError ? true : undefined;
        }, 10_000, 250);
      });
    } finally {
      await proxy.stop();
    }
  });
});
