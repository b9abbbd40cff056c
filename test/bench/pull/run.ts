/**
 * Pull benchmark: berth vs curl (the floor) vs curl then openssl dgst (a floor
 * for a client that verifies what it fetched, as berth must) vs containerd's
 * ctr, fetching the same ~1 GiB, 8-layer image from Debian's docker-registry
 * on 127.0.0.1.
 *
 *   npm run bench:pull -- [--rounds 3] [--layers 8] [--layer-mib 128]
 *                         [--only berth,curl,curl+sha256,ctr] [--json FILE] [--cache-dir DIR]
 *
 * Runs are interleaved (berth, curl, ctr; berth, curl, ctr; ...) so drift in
 * the machine hits every contender alike, after a warm-up round that is not
 * timed (and checks every stored byte). Every run is cold: a new tmpfs for
 * its destination, a new client process, and for ctr a new containerd. Wall
 * time is spawn to exit; peak RSS comes from /usr/bin/time (and, for ctr,
 * containerd's VmHWM read just before it is stopped). Each contender's result
 * is checked (exit code and the bytes it stored) so a failing command is never
 * timed as a fast one. Needs root (mount) and the Debian packages time, curl,
 * containerd, docker-registry. Exit code 1 if any contender failed to run
 * or verify; target misses are reported, not turned into an exit code.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { startRegistry } from '../../helpers/registry.js';
import { berthCommand, berthMain } from '../../helpers/berth.js';
import { Cleanup } from '../common/cleanup.js';
import { CTR, startContainerd } from '../common/containerd.js';
import { benchImage, pushBenchImage, type BenchImage } from '../common/image.js';
import { benchLayers, DEFAULT_CACHE_DIR, GZIP_LEVEL } from '../common/layers.js';
import { GNU_TIME, killMeasured, measure } from '../common/measure.js';
import { kibToMB, max, median, min } from '../common/stats.js';
import { mountTmpfs } from '../common/tmpfs.js';
import { benchArgs, chosen, failed, mib, pad, positiveInt, runBench } from '../common/report.js';

const CONTENDERS = ['berth', 'curl', 'curl+sha256', 'ctr'] as const;
type Contender = (typeof CONTENDERS)[number];

/** Parallel blob downloads, as berth's puller does by default (src/images/pull.ts). */
const PARALLEL = 3;
const REPO = 'bench/big';
const TAG = '1';
const TARGETS = { vsCtr: 1.0, vsCurl: 1.3, rssMB: 150 };

interface Options {
  rounds: number;
  layers: number;
  layerMib: number;
  only: Contender[];
  json: string | undefined;
  cacheDir: string;
}

interface Run {
  contender: Contender;
  round: number;
  wallMs: number;
  peakRssKiB: number;
  /** ctr only: containerd's VmHWM. */
  daemonPeakRssKiB?: number;
}

type Sample = Omit<Run, 'contender' | 'round'>;

interface Context {
  image: BenchImage;
  registryUrl: string;
  ref: string;
  scratch: string;
  dest: string;
  /** The warm-up run: also re-hash every stored blob (timed runs check sizes only). */
  first: boolean;
  cleanup: Cleanup;
}

function options(): Options {
  const { values, usage } = benchArgs('node dist/test/bench/pull/run.js [--rounds N] [--layers N] [--layer-mib N] [--only berth,curl,curl+sha256,ctr] [--json FILE] [--cache-dir DIR]', {
    rounds: { type: 'string' },
    layers: { type: 'string' },
    'layer-mib': { type: 'string' },
    only: { type: 'string' },
    json: { type: 'string' },
    'cache-dir': { type: 'string' },
  });
  return {
    rounds: positiveInt(values.rounds, 'rounds', 3, usage),
    layers: positiveInt(values.layers, 'layers', 8, usage),
    layerMib: positiveInt(values['layer-mib'], 'layer-mib', 128, usage),
    only: chosen(values.only, CONTENDERS, 'only', usage),
    json: values.json,
    cacheDir: values['cache-dir'] ?? DEFAULT_CACHE_DIR,
  };
}

function preflight(opts: Options): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (for mount -t tmpfs)');
  const need: Record<Contender, string[]> = { berth: [berthMain], curl: ['/usr/bin/curl'], 'curl+sha256': ['/usr/bin/curl', OPENSSL], ctr: ['/usr/bin/containerd', CTR] };
  for (const f of [GNU_TIME, '/usr/bin/docker-registry', ...opts.only.flatMap((c) => need[c])]) if (!existsSync(f)) missing.push(f);
  if (missing.length) throw new Error(`cannot run: missing ${missing.join(', ')} (Debian packages: time, curl, containerd, docker-registry; berth: npx tsc -p .)`);
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h);
  return `sha256:${h.digest('hex')}`;
}

/** Every blob of the image is at `pathOf(digest)` with the right size (and, when `hash`, the right sha256). */
async function checkBlobs(image: BenchImage, pathOf: (digest: string) => string, hash: boolean, who: string): Promise<void> {
  const blobs = [image.manifest, image.config, ...image.layers];
  for (const b of blobs) {
    const path = pathOf(b.digest);
    const st = await stat(path).catch(() => undefined);
    if (!st) throw new Error(`${who}: ${b.digest} missing (no ${path})`);
    if (st.size !== b.size) throw new Error(`${who}: ${path} is ${st.size} bytes, expected ${b.size}`);
    if (hash) {
      const found = await sha256File(path);
      if (found !== b.digest) throw new Error(`${who}: ${path} has digest ${found}, expected ${b.digest}`);
    }
  }
}

// ---- contenders: each does one cold run into ctx.dest and checks what it got ----

async function runBerth(ctx: Context): Promise<Sample> {
  const global = ['--root', join(ctx.dest, 'root'), '--state', join(ctx.dest, 'state')];
  const env = { ...process.env, DOCKER_CONFIG: join(ctx.dest, 'docker') };
  const m = await measure(berthCommand, [...global, 'image', 'pull', '--no-unpack', ctx.ref], { scratchDir: ctx.scratch, env, captureStdout: true });
  if (m.code !== 0) throw failed(`berth image pull ${ctx.ref}`, m);
  await checkBlobs(ctx.image, (d) => join(ctx.dest, 'root', 'content', 'blobs', 'sha256', d.slice('sha256:'.length)), ctx.first, 'berth');
  if (ctx.first) {
    const v = await measure(berthCommand, [...global, 'content', 'verify'], { scratchDir: ctx.scratch, env, captureStdout: true });
    if (v.code !== 0) throw failed('berth content verify', v);
  }
  return { wallMs: m.wallMs, peakRssKiB: m.peakRssKiB };
}

/**
 * curl does what a client must, and nothing more: GET the manifest, then GET
 * config and layers PARALLEL at a time into files. No verification, no
 * store, so this is the floor. The two commands' wall times are added (the
 * manifest parse between them is not timed); RSS is the larger of the two.
 */
async function runCurl(ctx: Context): Promise<Sample> {
  return (await curlFetch(ctx)).sample;
}

/** curl's fetch into ctx.dest: the timed sample and where each blob went. */
async function curlFetch(ctx: Context): Promise<{ sample: Sample; file: (digest: string) => string }> {
  const base = `${ctx.registryUrl}/v2/${REPO}`;
  const file = (d: string): string => join(ctx.dest, d.replace(':', '-'));
  const curl = ['-sS', '--fail', '-L'];
  const accept = ['application/vnd.oci.image.manifest.v1+json', 'application/vnd.docker.distribution.manifest.v2+json'].join(', ');
  const m1 = await measure('/usr/bin/curl', [...curl, '-H', `Accept: ${accept}`, '-o', file(ctx.image.manifest.digest), `${base}/manifests/${TAG}`], { scratchDir: ctx.scratch });
  if (m1.code !== 0) throw failed('curl (manifest)', m1);
  const manifest = JSON.parse(await readFile(file(ctx.image.manifest.digest), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
  const digests = [manifest.config.digest, ...manifest.layers.map((l) => l.digest)];
  const args = [...curl, '--parallel', '--parallel-max', String(PARALLEL), ...digests.flatMap((d) => ['-o', file(d), `${base}/blobs/${d}`])];
  const m2 = await measure('/usr/bin/curl', args, { scratchDir: ctx.scratch });
  if (m2.code !== 0) throw failed('curl --parallel (blobs)', m2);
  await checkBlobs(ctx.image, file, ctx.first, 'curl');
  return { sample: { wallMs: m1.wallMs + m2.wallMs, peakRssKiB: Math.max(m1.peakRssKiB, m2.peakRssKiB) }, file };
}

const OPENSSL = '/usr/bin/openssl';

/**
 * curl's fetch, then the sha256 of every blob by `openssl dgst` (OpenSSL's
 * hashing, as node's; coreutils' sha256sum is 4x slower here), one per CPU
 * over a share of the bytes: what a client must at least add to curl to
 * know it got the image it asked for. berth hashes while it receives (and
 * fsyncs, and records); this hashes after, from the page cache. Its time
 * is added to curl's; the digests are compared afterwards, untimed.
 */
async function runCurlSha256(ctx: Context): Promise<Sample> {
  const { sample, file } = await curlFetch(ctx);
  const blobs = [ctx.image.manifest, ctx.image.config, ...ctx.image.layers].sort((a, b) => b.size - a.size);
  const shares = Array.from({ length: Math.min(cpus().length, blobs.length) }, (_, i) => ({ bytes: 0, files: [] as string[], out: join(ctx.dest, `sha256-${i}.txt`) }));
  for (const b of blobs) {
    const least = shares.reduce((m, x) => (x.bytes < m.bytes ? x : m));
    least.bytes += b.size;
    least.files.push(file(b.digest));
  }
  // One openssl per share in the background, then every exit code. The paths are ours (mkdtemp names, digests): no quotes in them.
  const q = (path: string): string => `'${path}'`;
  const script = shares.map((sh, i) => `${OPENSSL} dgst -sha256 -r ${sh.files.map(q).join(' ')} > ${q(sh.out)} & p${i}=$!`).join('; ') + '; ' + shares.map((_, i) => `wait $p${i}`).join(' && ');
  const m = await measure('/bin/sh', ['-c', script], { scratchDir: ctx.scratch });
  if (m.code !== 0) throw failed('openssl dgst -sha256 of the fetched blobs', m);
  const found = new Map<string, string>();
  for (const sh of shares) {
    for (const line of (await readFile(sh.out, 'utf8')).split('\n').filter(Boolean)) found.set(line.slice(66).replace(/^\*/, ''), `sha256:${line.slice(0, 64)}`);
  }
  for (const b of blobs) if (found.get(file(b.digest)) !== b.digest) throw new Error(`curl+sha256: ${file(b.digest)} hashed to ${found.get(file(b.digest)) ?? 'nothing'}, expected ${b.digest}`);
  return { wallMs: sample.wallMs + m.wallMs, peakRssKiB: Math.max(sample.peakRssKiB, m.peakRssKiB) };
}

/**
 * `ctr content fetch` against a containerd started for this run (startup not
 * timed). ctr 1.6's content fetch has no concurrency flag (only `ctr images
 * pull --max-concurrent-downloads`, which also unpacks), so it fetches every
 * layer at once.
 */
async function runCtr(ctx: Context): Promise<Sample> {
  const cd = await startContainerd(join(ctx.dest, 'containerd'));
  const stop = ctx.cleanup.defer('stop containerd', () => cd.stop());
  try {
    const m = await measure(CTR, ['--address', cd.address, 'content', 'fetch', '--plain-http', ctx.ref], { scratchDir: ctx.scratch });
    if (m.code !== 0) throw failed(`ctr content fetch ${ctx.ref}`, m);
    const daemonPeakRssKiB = await cd.peakRssKiB();
    const listed = new Set((await cd.ctr(['content', 'ls', '-q'])).split('\n').map((l) => l.trim()));
    for (const b of [ctx.image.manifest, ctx.image.config, ...ctx.image.layers]) {
      if (!listed.has(b.digest)) throw new Error(`ctr: content ls does not list ${b.digest}`);
    }
    if (ctx.first) await checkBlobs(ctx.image, (d) => join(cd.root, 'io.containerd.content.v1.content', 'blobs', 'sha256', d.slice('sha256:'.length)), true, 'ctr');
    return { wallMs: m.wallMs, peakRssKiB: m.peakRssKiB, daemonPeakRssKiB };
  } finally {
    await stop();
  }
}

const RUNNERS: Record<Contender, (ctx: Context) => Promise<Sample>> = { berth: runBerth, curl: runCurl, 'curl+sha256': runCurlSha256, ctr: runCtr };

// ---- report ----

interface Summary {
  contender: Contender;
  runs: number;
  error?: string;
  medianWallMs: number;
  minWallMs: number;
  maxWallMs: number;
  medianPeakRssMB: number;
  medianDaemonPeakRssMB?: number;
  /** Pull bytes over the median wall time, MB/s (10^6). */
  throughputMBps: number;
}

interface Target {
  name: string;
  limit: string;
  value: number | undefined;
  unit: string;
  pass: boolean | undefined;
}

function summarize(c: Contender, runs: Run[], image: BenchImage, error: string | undefined): Summary {
  const mine = runs.filter((r) => r.contender === c);
  const walls = mine.map((r) => r.wallMs);
  const daemon = mine.flatMap((r) => (r.daemonPeakRssKiB === undefined ? [] : [kibToMB(r.daemonPeakRssKiB)]));
  return {
    contender: c,
    runs: mine.length,
    ...(error ? { error } : {}),
    medianWallMs: median(walls),
    minWallMs: min(walls),
    maxWallMs: max(walls),
    medianPeakRssMB: median(mine.map((r) => kibToMB(r.peakRssKiB))),
    ...(daemon.length ? { medianDaemonPeakRssMB: median(daemon) } : {}),
    throughputMBps: image.pullBytes / 1e6 / (median(walls) / 1000),
  };
}

function targets(s: Map<Contender, Summary>): Target[] {
  const ok = (c: Contender): Summary | undefined => {
    const x = s.get(c);
    return x && !x.error && x.runs > 0 ? x : undefined;
  };
  const berth = ok('berth');
  const ratio = (other: Contender): number | undefined => {
    const o = ok(other);
    return berth && o ? berth.medianWallMs / o.medianWallMs : undefined;
  };
  const vsCtr = ratio('ctr');
  const vsCurl = ratio('curl');
  const vsVerified = ratio('curl+sha256');
  const rss = berth?.medianPeakRssMB;
  return [
    { name: 'berth / ctr   median wall', limit: `<= ${TARGETS.vsCtr.toFixed(1)}x`, value: vsCtr, unit: 'x', pass: vsCtr === undefined ? undefined : vsCtr <= TARGETS.vsCtr },
    { name: 'berth / curl  median wall', limit: `<= ${TARGETS.vsCurl.toFixed(1)}x`, value: vsCurl, unit: 'x', pass: vsCurl === undefined ? undefined : vsCurl <= TARGETS.vsCurl },
    { name: 'berth peak RSS (median)', limit: `< ${TARGETS.rssMB} MB`, value: rss, unit: ' MB', pass: rss === undefined ? undefined : rss < TARGETS.rssMB },
    // No target of the issue: the same floor with the hashing a verifying client cannot skip.
    { name: 'berth / curl+sha256 median wall', limit: '(anchor)', value: vsVerified, unit: 'x', pass: undefined },
  ];
}

interface Machine {
  cpus: number;
  loadBefore: number;
  loadAfter: number;
}

function report(opts: Options, image: BenchImage, machine: Machine, summaries: Summary[], tgs: Target[]): string {
  const kinds = image.layers.reduce((m, l) => m.set(l.kind, (m.get(l.kind) ?? 0) + 1), new Map<string, number>());
  const f = (n: number | undefined, d = 2): string => (n === undefined || Number.isNaN(n) ? '-' : n.toFixed(d));
  const head = [
    `pull benchmark: ${opts.layers} layers x ${opts.layerMib} MiB (${[...kinds].map(([k, n]) => `${n} ${k}`).join(', ')}; gzip level ${GZIP_LEVEL}, OCI media types)`,
    `  transferred per pull ${mib(image.pullBytes)} (${(image.pullBytes / 1e6).toFixed(1)} MB), uncompressed tars ${mib(image.tarBytes)}`,
    `  ${opts.rounds} round(s) after an untimed warm-up round, interleaved ${opts.only.join(' -> ')}; each run cold on a fresh tmpfs; ${PARALLEL} parallel downloads for berth and curl, unbounded for ctr content fetch; curl+sha256 hashes after with one openssl dgst per CPU`,
    `  1-min load average ${machine.loadBefore.toFixed(2)} before the runs, ${machine.loadAfter.toFixed(2)} after, on ${machine.cpus} CPUs (other work on the machine shows up as spread between min and max)`,
    '',
  ];
  const rows = [
    ['contender', 'runs', 'median s', 'min s', 'max s', 'MB/s', 'peak RSS MB', 'daemon RSS MB'],
    ...summaries.map((s) => [
      s.contender,
      String(s.runs),
      f(s.medianWallMs / 1000),
      f(s.minWallMs / 1000),
      f(s.maxWallMs / 1000),
      f(s.throughputMBps, 0),
      f(s.medianPeakRssMB, 1),
      s.medianDaemonPeakRssMB === undefined ? '-' : `${f(s.medianDaemonPeakRssMB, 1)} (containerd)`,
    ]),
  ];
  // The command line and the first line of its stderr say most; the full text is in the progress log above.
  const failures = summaries.filter((s) => s.error).map((s) => `  ${s.contender} FAILED: ${s.error!.split('\n').filter((l) => l.trim()).slice(0, 2).join(' | ')}`);
  const trows = [
    ['target', 'limit', 'value', 'result'],
    ...tgs.map((t) => [t.name, t.limit, t.value === undefined ? '-' : `${t.value.toFixed(2)}${t.unit}`, t.pass === undefined ? (t.limit === '(anchor)' ? 'info' : 'n/a') : t.pass ? 'PASS' : 'FAIL']),
  ];
  return [...head, pad(rows), ...(failures.length ? ['', ...failures] : []), '', pad(trows), ''].join('\n');
}

// ---- main ----

async function main(): Promise<number> {
  const opts = options();
  preflight(opts);
  const cleanup = new Cleanup();
  cleanup.onSignals(killMeasured);
  try {
    const scratch = await mkdtemp(join(tmpdir(), 'berth-bench-pull-'));
    cleanup.defer(`remove ${scratch}`, () => rm(scratch, { recursive: true, force: true }));

    const t0 = Date.now();
    const layers = await benchLayers({
      count: opts.layers,
      mib: opts.layerMib,
      cacheDir: opts.cacheDir,
      onGenerate: (l, ms) => console.error(`generated layer ${l.index} (${l.kind}): ${mib(l.tarSize)} tar -> ${mib(l.size)} gzip in ${(ms / 1000).toFixed(1)} s`),
    });
    const image = benchImage(layers);
    console.error(`layers ready in ${((Date.now() - t0) / 1000).toFixed(1)} s (cache ${opts.cacheDir})`);

    // The registry's storage goes on its own tmpfs: startRegistry() makes its temp dir under os.tmpdir(), which reads TMPDIR.
    const regFs = await mountTmpfs(image.pullBytes * 1.2 + (64 << 20), 'registry-', scratch);
    cleanup.defer(`unmount ${regFs.path}`, () => regFs.unmount());
    const savedTmp = process.env.TMPDIR;
    process.env.TMPDIR = regFs.path;
    const registry = await startRegistry().finally(() => (savedTmp === undefined ? delete process.env.TMPDIR : (process.env.TMPDIR = savedTmp)));
    cleanup.defer('stop registry', () => registry.stop());
    const t1 = Date.now();
    await pushBenchImage(registry.url, REPO, TAG, image);
    const ref = `${registry.host}/${REPO}:${TAG}`;
    console.error(`pushed ${ref} (${image.manifest.digest}) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);

    const runs: Run[] = [];
    const errors = new Map<Contender, string>();
    const destSize = image.pullBytes * 2 + (256 << 20);
    const loadBefore = loadavg()[0]!;
    // Round 0 warms up, untimed: the first run on a fresh machine pays for memory the hypervisor has not backed yet
    // (seen here: whichever contender ran first took twice its later time, in system time).
    for (let round = 0; round <= opts.rounds; round++) {
      for (const c of opts.only) {
        if (errors.has(c)) continue;
        if (cleanup.closed) throw new Error('interrupted');
        let unmount: (() => Promise<void>) | undefined;
        try {
          const dest = await mountTmpfs(destSize, `${c}-${round}-`, scratch);
          unmount = cleanup.defer(`unmount ${dest.path}`, () => dest.unmount());
          const r = await RUNNERS[c]({ image, registryUrl: registry.url, ref, scratch, dest: dest.path, first: round === 0, cleanup });
          if (round > 0) runs.push({ contender: c, round, ...r });
          const daemon = r.daemonPeakRssKiB === undefined ? '' : `, containerd ${kibToMB(r.daemonPeakRssKiB).toFixed(1)} MB`;
          console.error(`${round === 0 ? 'warm-up' : `round ${round}`} ${c.padEnd(5)} ${(r.wallMs / 1000).toFixed(3)} s, peak RSS ${kibToMB(r.peakRssKiB).toFixed(1)} MB${daemon}`);
        } catch (err) {
          // Interrupted: the signal handler killed the command and is cleaning up; this is no result.
          if (cleanup.closed) throw new Error('interrupted');
          errors.set(c, (err as Error).message);
          console.error(`round ${round} ${c.padEnd(5)} FAILED (no further ${c} runs): ${(err as Error).message}`);
        } finally {
          await unmount?.();
        }
      }
    }

    const summaries = opts.only.map((c) => summarize(c, runs, image, errors.get(c)));
    const tgs = targets(new Map(summaries.map((s) => [s.contender, s])));
    const machine: Machine = { cpus: cpus().length, loadBefore, loadAfter: loadavg()[0]! };
    process.stdout.write(report(opts, image, machine, summaries, tgs));
    if (opts.json) {
      const doc = {
        benchmark: 'pull',
        date: new Date().toISOString(),
        options: { rounds: opts.rounds, layers: opts.layers, layerMib: opts.layerMib, only: opts.only, parallel: PARALLEL, gzipLevel: GZIP_LEVEL },
        image: {
          ref,
          manifest: image.manifest.digest,
          pullBytes: image.pullBytes,
          tarBytes: image.tarBytes,
          layers: image.layers.map(({ index, kind, digest, size, diffID, tarSize }) => ({ index, kind, digest, size, diffID, tarSize })),
        },
        machine,
        runs,
        summaries,
        targets: tgs,
      };
      await writeFile(opts.json, JSON.stringify(doc, null, 2) + '\n');
    }
    return errors.size ? 1 : 0;
  } finally {
    await cleanup.run();
  }
}

runBench('pull', main);
