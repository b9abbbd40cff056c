/**
 * Unpack benchmark: a cold `berth image pull` (fetch + unpack into
 * snapshots) against `ctr images pull` (fetch + unpack with containerd's
 * overlayfs snapshotter), both from Debian's docker-registry on 127.0.0.1,
 * with `tar -xzf` of the same layer files into a directory as the floor.
 *
 *   npm run bench:unpack -- [--rounds 3] [--sets a,b,c] [--only berth,ctr,tar]
 *                           [--layer-mib 128] [--files 100000] [--no-verify]
 *                           [--json FILE] [--cache-dir DIR] [--debian-mirror URL]
 *
 * Sets: (a) big: 8 layers x 128 MiB, random and text files alternating
 * (common/layers.ts); (b) small: one layer of 100,000 small files
 * (common/smallfiles.ts); (c) debian: a Debian bookworm minbase rootfs made
 * with debootstrap (common/debian.ts; skipped, and said so, where
 * debootstrap cannot run).
 *
 * Runs are interleaved per set (berth, ctr, tar; berth, ctr, tar; ...).
 * Every run is cold: a fresh tmpfs for its root (tmpfs takes overlay upper
 * directories here: preflight probes whiteouts and opaque directories on
 * one), a new berth process, a new containerd for each ctr run (startup not
 * timed). Wall time is spawn to exit; peak RSS from /usr/bin/time, and
 * containerd's VmHWM for ctr. Every run is checked: berth and containerd
 * must have committed the image's top chain ID; with verification on
 * (default), the first round also mounts both results read-only and
 * compares the trees entry by entry (test/helpers/tree.ts), so a fast wrong
 * unpack is never counted as a win. Exit code 1 when a contender failed to
 * run or verify; target misses are reported, not turned into an exit code.
 * Needs root and the Debian packages time, containerd, docker-registry
 * (debootstrap for set c).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, release, tmpdir } from 'node:os';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { chainIds } from '../../../src/oci/chainid.js';
import type { Digest } from '../../../src/oci/digest.js';
import { startRegistry } from '../../helpers/registry.js';
import { describeTree, diffTrees, overlayLeaks, type TreeEntry } from '../../helpers/tree.js';
import { berthCommand, berthMain } from '../../helpers/berth.js';
import { Cleanup } from '../common/cleanup.js';
import { CTR, mountImage, startContainerd } from '../common/containerd.js';
import { debianRootfsLayer, DEBOOTSTRAP } from '../common/debian.js';
import { benchImage, pushBenchImage, type BenchImage } from '../common/image.js';
import { benchLayers, DEFAULT_CACHE_DIR, GZIP_LEVEL, type BenchLayer } from '../common/layers.js';
import { GNU_TIME, killMeasured, measure } from '../common/measure.js';
import { smallFilesLayer } from '../common/smallfiles.js';
import { kibToMB, max, median, min } from '../common/stats.js';
import { mountTmpfs } from '../common/tmpfs.js';
import { benchArgs, chosen, failed, mib, pad, positiveInt, runBench } from '../common/report.js';

const execFileP = promisify(execFile);

const CONTENDERS = ['berth', 'ctr', 'tar'] as const;
type Contender = (typeof CONTENDERS)[number];
const SETS = { a: 'big', b: 'small', c: 'debian' } as const;
type SetKey = keyof typeof SETS;

const TARGETS = { vsCtr: 0.8, rssMB: 200 };
const TAG = '1';

interface Options {
  rounds: number;
  sets: SetKey[];
  only: Contender[];
  layerMib: number;
  files: number;
  verify: boolean;
  json: string | undefined;
  cacheDir: string;
  debianMirror: string | undefined;
}

interface Run {
  set: SetKey;
  contender: Contender;
  round: number;
  wallMs: number;
  peakRssKiB: number;
  /** ctr only: containerd's VmHWM. */
  daemonPeakRssKiB?: number;
}
type Sample = Omit<Run, 'set' | 'contender' | 'round'>;

interface BenchSet {
  key: SetKey;
  name: string;
  title: string;
  image?: BenchImage;
  ref?: string;
  /** Why the set cannot run here (set c without debootstrap). */
  unavailable?: string;
}

interface Context {
  set: BenchSet & { image: BenchImage; ref: string };
  scratch: string;
  dest: string;
  /** Describe the result's tree for the cross-check (first round, unless --no-verify). */
  describe: boolean;
  cleanup: Cleanup;
}

interface Outcome extends Sample {
  tree?: TreeEntry[];
}

function options(): Options {
  const { values, usage } = benchArgs('node dist/test/bench/unpack/run.js [--rounds N] [--sets a,b,c] [--only berth,ctr,tar] [--layer-mib N] [--files N] [--no-verify] [--json FILE] [--cache-dir DIR] [--debian-mirror URL]', {
    rounds: { type: 'string' },
    sets: { type: 'string' },
    only: { type: 'string' },
    'layer-mib': { type: 'string' },
    files: { type: 'string' },
    'no-verify': { type: 'boolean' },
    json: { type: 'string' },
    'cache-dir': { type: 'string' },
    'debian-mirror': { type: 'string' },
  });
  // Sets by letter or by name: "a,c" or "big,debian".
  const byName = (s: string): string => Object.entries(SETS).find(([, n]) => n === s)?.[0] ?? s;
  return {
    rounds: positiveInt(values.rounds, 'rounds', 3, usage),
    sets: chosen(values.sets, Object.keys(SETS) as SetKey[], 'sets', usage, byName),
    only: chosen(values.only, CONTENDERS, 'only', usage),
    layerMib: positiveInt(values['layer-mib'], 'layer-mib', 128, usage),
    files: positiveInt(values.files, 'files', 100_000, usage),
    verify: !values['no-verify'],
    json: values.json,
    cacheDir: values['cache-dir'] ?? DEFAULT_CACHE_DIR,
    debianMirror: values['debian-mirror'],
  };
}

function preflight(opts: Options): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (for mount)');
  const need: Record<Contender, string[]> = { berth: [berthMain], ctr: ['/usr/bin/containerd', CTR], tar: ['/usr/bin/tar'] };
  for (const f of [GNU_TIME, '/usr/bin/docker-registry', ...opts.only.flatMap((c) => need[c])]) if (!existsSync(f)) missing.push(f);
  if (missing.length) throw new Error(`cannot run: missing ${missing.join(', ')} (Debian packages: time, containerd, docker-registry, tar; berth: npx tsc -p .)`);
}

/**
 * Overlay with its upper directory on a tmpfs: a whiteout (char 0:0) for a
 * removed lower file and an opaque directory (trusted.overlay.opaque) for a
 * directory removed and made again. Both snapshotters need exactly this.
 */
async function probeOverlayOnTmpfs(parent: string): Promise<string> {
  const fs = await mountTmpfs(16 << 20, 'probe-', parent);
  try {
    const d = (n: string): string => join(fs.path, n);
    for (const n of ['lower/dir', 'upper', 'work', 'merged']) await mkdir(d(n), { recursive: true });
    await writeFile(d('lower/file'), 'x');
    await writeFile(d('lower/dir/inner'), 'y');
    await execFileP('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${d('lower')},upperdir=${d('upper')},workdir=${d('work')}`, d('merged')]);
    try {
      await rm(d('merged/file'));
      await rm(d('merged/dir'), { recursive: true });
      await mkdir(d('merged/dir'));
    } finally {
      await execFileP('umount', [d('merged')]);
    }
    const upper = await describeTree(d('upper'));
    const whiteout = upper.find((e) => e.path === 'file');
    const opaque = upper.find((e) => e.path === 'dir');
    if (whiteout?.type !== 'char' || whiteout.rdev !== '0:0') throw new Error(`no whiteout device in the upper dir: ${JSON.stringify(whiteout)}`);
    if (opaque?.xattrs['trusted.overlay.opaque'] !== 'y') throw new Error(`no trusted.overlay.opaque on the recreated dir: ${JSON.stringify(opaque)}`);
    return `overlay upper on tmpfs: whiteouts and trusted.overlay.opaque work (kernel ${release()})`;
  } finally {
    await fs.unmount();
  }
}

function topChainId(image: BenchImage): Digest {
  return chainIds(image.layers.map((l) => l.diffID as Digest)).at(-1)!;
}

// ---- contenders: each does one cold run into ctx.dest and checks what it got ----

/** berth's root and state where test/helpers/berth.ts's openTestSystem(dest) finds them. */
async function runBerth(ctx: Context): Promise<Outcome> {
  const global = ['--root', join(ctx.dest, 'lib'), '--state', join(ctx.dest, 'run')];
  const env = { ...process.env, DOCKER_CONFIG: join(ctx.dest, 'docker') };
  const m = await measure(berthCommand, [...global, 'image', 'pull', ctx.set.ref], { scratchDir: ctx.scratch, env, captureStdout: true });
  if (m.code !== 0) throw failed(`berth image pull ${ctx.set.ref}`, m);
  // berth is loaded only here, so the containerd and tar sides run even while berth's modules do not load.
  const top = topChainId(ctx.set.image);
  const { openTestSystem } = await import('../../helpers/berth.js');
  const { sys } = await openTestSystem(ctx.dest);
  try {
    const info = await (await sys.snapshotter()).snapshotter.stat(top);
    if (info.kind !== 'committed') throw new Error(`berth: snapshot ${top} is ${info.kind}, not committed`);
  } finally {
    await sys.close();
  }
  let tree: TreeEntry[] | undefined;
  if (ctx.describe) {
    const { withSnapshotView } = await import('../../helpers/snapshot-view.js');
    tree = await withSnapshotView(ctx.dest, top, join(ctx.dest, 'view'), (dir) => describeTree(dir));
  }
  return { wallMs: m.wallMs, peakRssKiB: m.peakRssKiB, ...(tree ? { tree } : {}) };
}

async function runCtr(ctx: Context): Promise<Outcome> {
  const cd = await startContainerd(join(ctx.dest, 'containerd'));
  const stop = ctx.cleanup.defer('stop containerd', () => cd.stop());
  try {
    const m = await measure(CTR, ['--address', cd.address, 'images', 'pull', '--plain-http', ctx.set.ref], { scratchDir: ctx.scratch });
    if (m.code !== 0) throw failed(`ctr images pull ${ctx.set.ref}`, m);
    const daemonPeakRssKiB = await cd.peakRssKiB();
    const top = topChainId(ctx.set.image);
    const snapshots = (await cd.ctr(['snapshots', 'ls'])).split('\n').map((l) => l.split(/\s+/)[0]);
    if (!snapshots.includes(top)) throw new Error(`ctr: snapshots ls does not list ${top}`);
    let tree: TreeEntry[] | undefined;
    if (ctx.describe) {
      const dir = join(ctx.dest, 'view');
      const unmount = await mountImage(cd, ctx.set.ref, dir);
      try {
        tree = await describeTree(dir);
      } finally {
        await unmount();
      }
    }
    return { wallMs: m.wallMs, peakRssKiB: m.peakRssKiB, daemonPeakRssKiB, ...(tree ? { tree } : {}) };
  } finally {
    await stop();
  }
}

/** The floor: GNU tar extracting the layer files in order into one directory, no verification, no store. */
async function runTar(ctx: Context): Promise<Outcome> {
  const root = join(ctx.dest, 'rootfs');
  await mkdir(root);
  const script = 'd=$1; shift; for f do tar -xzf "$f" -C "$d" || exit 1; done';
  const m = await measure('/bin/sh', ['-c', script, 'sh', root, ...ctx.set.image.layers.map((l) => l.path)], { scratchDir: ctx.scratch });
  if (m.code !== 0) throw failed('tar -xzf', m);
  return { wallMs: m.wallMs, peakRssKiB: m.peakRssKiB };
}

const RUNNERS: Record<Contender, (ctx: Context) => Promise<Outcome>> = { berth: runBerth, ctr: runCtr, tar: runTar };

// ---- report ----

interface Summary {
  set: SetKey;
  contender: Contender;
  runs: number;
  error?: string;
  medianWallMs: number;
  minWallMs: number;
  maxWallMs: number;
  medianPeakRssMB: number;
  maxPeakRssMB: number;
  medianDaemonPeakRssMB?: number;
}

interface Target {
  set: SetKey;
  name: string;
  limit: string;
  value: number | undefined;
  unit: string;
  pass: boolean | undefined;
}

function summarize(set: SetKey, c: Contender, runs: Run[], error: string | undefined): Summary {
  const mine = runs.filter((r) => r.set === set && r.contender === c);
  const walls = mine.map((r) => r.wallMs);
  const rss = mine.map((r) => kibToMB(r.peakRssKiB));
  const daemon = mine.flatMap((r) => (r.daemonPeakRssKiB === undefined ? [] : [kibToMB(r.daemonPeakRssKiB)]));
  return {
    set,
    contender: c,
    runs: mine.length,
    ...(error ? { error } : {}),
    medianWallMs: median(walls),
    minWallMs: min(walls),
    maxWallMs: max(walls),
    medianPeakRssMB: median(rss),
    maxPeakRssMB: max(rss),
    ...(daemon.length ? { medianDaemonPeakRssMB: median(daemon) } : {}),
  };
}

function targets(set: SetKey, s: Summary[]): Target[] {
  const ok = (c: Contender): Summary | undefined => s.find((x) => x.contender === c && !x.error && x.runs > 0);
  const berth = ok('berth');
  const ctr = ok('ctr');
  const vsCtr = berth && ctr ? berth.medianWallMs / ctr.medianWallMs : undefined;
  const rss = berth?.maxPeakRssMB;
  return [
    { set, name: `${SETS[set]}: berth / ctr median wall`, limit: `<= ${TARGETS.vsCtr.toFixed(1)}x`, value: vsCtr, unit: 'x', pass: vsCtr === undefined ? undefined : vsCtr <= TARGETS.vsCtr },
    { set, name: `${SETS[set]}: berth peak RSS (max)`, limit: `< ${TARGETS.rssMB} MB`, value: rss, unit: ' MB', pass: rss === undefined ? undefined : rss < TARGETS.rssMB },
  ];
}

function setReport(set: BenchSet, summaries: Summary[]): string[] {
  const f = (n: number | undefined, d = 2): string => (n === undefined || Number.isNaN(n) ? '-' : n.toFixed(d));
  if (!set.image) return [`(${set.key}) ${set.title}: not run: ${set.unavailable}`, ''];
  const img = set.image;
  const tar = summaries.find((s) => s.contender === 'tar' && !s.error && s.runs > 0);
  const rows = [
    ['contender', 'runs', 'median s', 'min s', 'max s', 'x tar', 'peak RSS MB (med/max)', 'daemon RSS MB'],
    ...summaries.map((s) => [
      s.contender,
      String(s.runs),
      f(s.medianWallMs / 1000),
      f(s.minWallMs / 1000),
      f(s.maxWallMs / 1000),
      tar && s.runs ? f(s.medianWallMs / tar.medianWallMs) : '-',
      `${f(s.medianPeakRssMB, 1)} / ${f(s.maxPeakRssMB, 1)}`,
      s.medianDaemonPeakRssMB === undefined ? '-' : `${f(s.medianDaemonPeakRssMB, 1)} (containerd)`,
    ]),
  ];
  const failures = summaries.filter((s) => s.error).map((s) => `  ${s.contender} FAILED: ${s.error!.split('\n').filter((l) => l.trim()).slice(0, 3).join(' | ')}`);
  return [
    `(${set.key}) ${set.title}: ${img.layers.length} layer(s), ${mib(img.pullBytes)} transferred, ${mib(img.tarBytes)} of tar`,
    pad(rows),
    ...failures,
    '',
  ];
}

// ---- main ----

async function prepareSet(key: SetKey, opts: Options): Promise<BenchSet> {
  const onGenerate = (l: BenchLayer, ms: number): void =>
    console.error(`generated ${SETS[key]} layer ${l.index} (${l.kind}): ${mib(l.tarSize)} tar -> ${mib(l.size)} gzip in ${(ms / 1000).toFixed(1)} s`);
  const t0 = Date.now();
  let set: BenchSet;
  switch (key) {
    case 'a': {
      const layers = await benchLayers({ count: 8, mib: opts.layerMib, cacheDir: opts.cacheDir, onGenerate });
      set = { key, name: SETS[key], title: `8 layers x ${opts.layerMib} MiB, random and text files alternating`, image: benchImage(layers) };
      break;
    }
    case 'b': {
      const layer = await smallFilesLayer({ count: opts.files, cacheDir: opts.cacheDir, onGenerate });
      set = { key, name: SETS[key], title: `${opts.files} small files (0-4 KiB, text) in one layer`, image: benchImage([layer]) };
      break;
    }
    case 'c': {
      const title = 'Debian bookworm minbase rootfs (debootstrap, one layer)';
      if (!existsSync(DEBOOTSTRAP)) console.error(`set c: ${DEBOOTSTRAP} not found; trying the layer cache`);
      else console.error('set c: the Debian rootfs layer (debootstrap runs once, about a minute, then it is cached)');
      const r = await debianRootfsLayer({ cacheDir: opts.cacheDir, ...(opts.debianMirror ? { mirror: opts.debianMirror } : {}), onGenerate });
      set = 'layer' in r ? { key, name: SETS[key], title, image: benchImage([r.layer]) } : { key, name: SETS[key], title, unavailable: r.unavailable };
      break;
    }
  }
  if (set.image) console.error(`set ${key} (${set.name}) ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return set;
}

function compareTrees(set: SetKey, trees: Map<Contender, TreeEntry[]>, errors: Map<string, string>): void {
  const berth = trees.get('berth');
  const ctr = trees.get('ctr');
  for (const [c, t] of trees) {
    const leaks = overlayLeaks(t);
    if (leaks.length) errors.set(`${set}/${c}`, `${c}'s tree shows overlay internals: ${leaks.slice(0, 5).join('; ')}`);
  }
  if (!berth || !ctr) return;
  const diff = diffTrees(ctr, berth, ['containerd', 'berth']);
  if (diff.length) {
    errors.set(`${set}/berth`, `berth's tree differs from containerd's in ${diff.length} place(s):\n${diff.slice(0, 20).join('\n')}`);
  } else {
    console.error(`set ${set}: berth's tree matches containerd's (${berth.length} entries)`);
  }
}

async function main(): Promise<number> {
  const opts = options();
  preflight(opts);
  const cleanup = new Cleanup();
  cleanup.onSignals(killMeasured);
  try {
    const scratch = await mkdtemp(join(tmpdir(), 'berth-bench-unpack-'));
    cleanup.defer(`remove ${scratch}`, () => rm(scratch, { recursive: true, force: true }));
    const probe = await probeOverlayOnTmpfs(scratch);
    console.error(probe);

    const sets: BenchSet[] = [];
    for (const key of opts.sets) sets.push(await prepareSet(key, opts));
    const runnable = sets.filter((s): s is BenchSet & { image: BenchImage } => s.image !== undefined);

    // The registry's storage on its own tmpfs; startRegistry() makes its dir under os.tmpdir(), which reads TMPDIR.
    const regBytes = runnable.reduce((n, s) => n + s.image.pullBytes, 0);
    const regFs = await mountTmpfs(regBytes * 1.2 + (64 << 20), 'registry-', scratch);
    cleanup.defer(`unmount ${regFs.path}`, () => regFs.unmount());
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = regFs.path;
    const registry = await startRegistry().finally(() => (savedTmp === undefined ? delete process.env.TMPDIR : (process.env.TMPDIR = savedTmp)));
    cleanup.defer('stop registry', () => registry.stop());
    for (const s of runnable) {
      const t1 = Date.now();
      const repo = `bench/unpack-${s.name}`;
      await pushBenchImage(registry.url, repo, TAG, s.image);
      s.ref = `${registry.host}/${repo}:${TAG}`;
      console.error(`pushed ${s.ref} (${s.image.manifest.digest}) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    }

    const runs: Run[] = [];
    const errors = new Map<string, string>(); // "set/contender" → why it stopped
    const loadBefore = loadavg()[0]!;
    for (const set of runnable) {
      const destSize = set.image.pullBytes + set.image.tarBytes * 1.5 + (512 << 20);
      const trees = new Map<Contender, TreeEntry[]>();
      for (let round = 1; round <= opts.rounds; round++) {
        for (const c of opts.only) {
          const key = `${set.key}/${c}`;
          if (errors.has(key)) continue;
          if (cleanup.closed) throw new Error('interrupted');
          let unmount: (() => Promise<void>) | undefined;
          try {
            const dest = await mountTmpfs(destSize, `${set.name}-${c}-${round}-`, scratch);
            unmount = cleanup.defer(`unmount ${dest.path}`, () => dest.unmount());
            const describe = opts.verify && round === 1 && c !== 'tar';
            const r = await RUNNERS[c]({ set: set as Context['set'], scratch, dest: dest.path, describe, cleanup });
            if (r.tree) trees.set(c, r.tree);
            runs.push({ set: set.key, contender: c, round, wallMs: r.wallMs, peakRssKiB: r.peakRssKiB, ...(r.daemonPeakRssKiB === undefined ? {} : { daemonPeakRssKiB: r.daemonPeakRssKiB }) });
            const daemon = r.daemonPeakRssKiB === undefined ? '' : `, containerd ${kibToMB(r.daemonPeakRssKiB).toFixed(1)} MB`;
            console.error(`${set.name} round ${round} ${c.padEnd(5)} ${(r.wallMs / 1000).toFixed(3)} s, peak RSS ${kibToMB(r.peakRssKiB).toFixed(1)} MB${daemon}`);
          } catch (err) {
            if (cleanup.closed) throw new Error('interrupted');
            errors.set(key, (err as Error).message);
            console.error(`${set.name} round ${round} ${c.padEnd(5)} FAILED (no further ${c} runs on this set): ${(err as Error).message}`);
          } finally {
            await unmount?.();
          }
        }
        if (round === 1 && opts.verify) compareTrees(set.key, trees, errors);
        trees.clear();
      }
    }

    const summaries = runnable.flatMap((s) => opts.only.map((c) => summarize(s.key, c, runs, errors.get(`${s.key}/${c}`))));
    const tgs = runnable.flatMap((s) => targets(s.key, summaries.filter((x) => x.set === s.key)));
    const machine = { cpus: cpus().length, loadBefore, loadAfter: loadavg()[0]! };
    const f2 = (n: number | undefined): string => (n === undefined ? '-' : n.toFixed(2));
    const out = [
      `unpack benchmark: cold pull (fetch + unpack) from docker-registry on 127.0.0.1; gzip level ${GZIP_LEVEL}, OCI media types`,
      `  ${opts.rounds} round(s), interleaved ${opts.only.join(' -> ')}; each run on a fresh tmpfs; tar = tar -xzf of the layer files (the floor)`,
      `  ${probe}`,
      `  trees ${opts.verify ? "checked in round 1: berth's snapshot view vs containerd's image mount, entry by entry" : 'not compared (--no-verify)'}`,
      `  1-min load average ${machine.loadBefore.toFixed(2)} before, ${machine.loadAfter.toFixed(2)} after, on ${machine.cpus} CPUs`,
      '',
      ...sets.flatMap((s) => setReport(s, summaries.filter((x) => x.set === s.key))),
      pad([
        ['target', 'limit', 'value', 'result'],
        ...tgs.map((t) => [t.name, t.limit, t.value === undefined ? '-' : `${f2(t.value)}${t.unit}`, t.pass === undefined ? 'n/a' : t.pass ? 'PASS' : 'FAIL']),
      ]),
      '',
    ];
    process.stdout.write(out.join('\n'));
    if (opts.json) {
      const doc = {
        benchmark: 'unpack',
        date: new Date().toISOString(),
        options: opts,
        sets: sets.map((s) => ({
          key: s.key,
          name: s.name,
          title: s.title,
          ...(s.unavailable ? { unavailable: s.unavailable } : {}),
          ...(s.image
            ? {
                ref: s.ref,
                manifest: s.image.manifest.digest,
                pullBytes: s.image.pullBytes,
                tarBytes: s.image.tarBytes,
                layers: s.image.layers.map(({ index, kind, digest, size, diffID, tarSize }) => ({ index, kind, digest, size, diffID, tarSize })),
              }
            : {}),
        })),
        machine,
        runs,
        summaries,
        targets: tgs,
        errors: Object.fromEntries(errors),
      };
      await writeFile(opts.json, JSON.stringify(doc, null, 2) + '\n');
    }
    return errors.size ? 1 : 0;
  } finally {
    await cleanup.run();
  }
}

runBench('unpack', main);
