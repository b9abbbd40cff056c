import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, mkdir, open, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { LocalContentStore } from '../../../src/content/local.js';
import { sha256, type Digest } from '../../../src/oci/digest.js';
import { contentWriterScript, isAlive, patternBytes } from '../../helpers/content-writer.js';
import { tempDir } from '../../helpers/tmp.js';
import { contentStoreConformance, rejectsWith, testBytes, writeTo } from '../../suites/content.js';

function newStore(root: string, extra: { lockTimeoutMs?: number } = {}): LocalContentStore {
  return new LocalContentStore({ root, pid: process.pid, isAlive, ...extra });
}

async function flipByte(path: string, at: 'middle' | number = 'middle'): Promise<void> {
  const { size, mode } = await stat(path);
  await chmod(path, 0o600);
  const fh = await open(path, 'r+');
  try {
    const pos = at === 'middle' ? Math.floor(size / 2) : at;
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, pos);
    b[0] = b[0]! ^ 0xff;
    await fh.write(b, 0, 1, pos);
  } finally {
    await fh.close();
    await chmod(path, mode & 0o777);
  }
}

contentStoreConformance('LocalContentStore', async () => {
  const tmp = await tempDir('berth-content');
  const store = newStore(join(tmp.path, 'content'));
  return {
    store,
    cleanup: tmp.cleanup,
    corrupt: (digest) => flipByte(store.blobPath(digest)),
    corruptIngest: (ref) => flipByte(join(store.ingestPath(ref), 'data'), 0),
  };
});

/** Every path under dir, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).sort();
}

function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  assert.ok(r.pid && !isAlive(r.pid));
  return r.pid;
}

function bootId(): Promise<string> {
  return readFile('/proc/sys/kernel/random/boot_id', 'utf8').then((s) => s.trim());
}

/** Starts the helper writer process and resolves once it printed a line starting with `until`. */
async function startWriter(args: string[], until: string): Promise<{ child: ChildProcess; line: string; exited: Promise<unknown> }> {
  const child = spawn(process.execPath, [contentWriterScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise((r) => child.once('exit', r));
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const l = out.split('\n').find((x) => x.startsWith(until));
      if (l !== undefined) resolve(l);
    });
    child.once('exit', (code) => reject(new Error(`writer exited (${code}) before "${until}": ${err}`)));
  });
  return { child, line, exited };
}

async function kill(w: { child: ChildProcess; exited: Promise<unknown> }): Promise<void> {
  w.child.kill('SIGKILL');
  await w.exited;
}

describe('LocalContentStore on disk', () => {
  let tmp: { path: string; cleanup(): Promise<void> };
  let root: string;
  let store: LocalContentStore;
  beforeEach(async () => {
    tmp = await tempDir('berth-content');
    root = join(tmp.path, 'content');
    store = newStore(root);
  });
  afterEach(async () => {
    await tmp.cleanup();
  });

  it('lays out blobs read-only and directories owner-only', async () => {
    const data = testBytes(1000);
    const digest = sha256(data);
    const w = await store.writer('modes', { digest, size: 1000 });
    await writeTo(w, data.subarray(0, 10));
    const dir = store.ingestPath('modes');
    assert.equal(dir, join(root, 'ingest', createHash('sha256').update('modes').digest('hex')));
    assert.equal((await stat(join(dir, 'data'))).mode & 0o777, 0o600);
    assert.deepEqual((await readdir(dir)).sort(), ['data', 'expected', 'lock', 'ref']);
    assert.deepEqual(JSON.parse(await readFile(join(dir, 'lock'), 'utf8')), { pid: process.pid, boot: await bootId() });
    await w.close();
    assert.deepEqual((await readdir(dir)).sort(), ['data', 'expected', 'ref'], 'close releases the lock');
    await store.put({ digest, size: 1000 }, data, 'modes');

    const blob = join(root, 'blobs', 'sha256', digest.slice(7));
    assert.equal(store.blobPath(digest), blob);
    assert.equal((await stat(blob)).mode & 0o777, 0o444);
    for (const d of [root, join(root, 'blobs'), join(root, 'blobs', 'sha256'), join(root, 'ingest')]) {
      assert.equal((await stat(d)).mode & 0o777, 0o700, d);
    }
    assert.deepEqual(await readdir(join(root, 'ingest')), [], 'a committed ingest leaves nothing behind');
  });

  it('a delete that moves blobs aside first removes what a killed process left aside, not what a live one has', async () => {
    const data = testBytes(100);
    const digest = sha256(data);
    await store.put({ digest, size: data.length }, data);
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const ingest = join(root, 'ingest');
    await writeFile(join(ingest, `.deleting-${dead}-0a0b`), 'a blob its collector did not live to delete');
    await writeFile(join(ingest, `.deleting-${process.pid}-0c0d`), 'a blob this process is deciding on');
    assert.equal(await store.delete(digest, { unless: async () => false }), true);
    assert.deepEqual((await readdir(ingest)).filter((n) => n.startsWith('.deleting-')), [`.deleting-${process.pid}-0c0d`]);
  });

  it('creates no path from an invalid digest', async () => {
    await store.put({ digest: sha256('x') }, Buffer.from('x'));
    const before = await tree(tmp.path);
    for (const d of ['sha256:../../x', 'sha256:../../../escape', 'sha512:/x'] as Digest[]) {
      await rejectsWith(store.writer('r', { digest: d }), 'INVALID_ARGUMENT');
      await rejectsWith(store.put({ digest: d }, Buffer.from('x')), 'INVALID_ARGUMENT');
      await rejectsWith(store.delete(d), 'INVALID_ARGUMENT');
    }
    assert.deepEqual(await tree(tmp.path), before);
  });

  it('ignores stray files in blobs/ when listing', async () => {
    const digest = sha256('y');
    await store.put({ digest }, Buffer.from('y'));
    await writeFile(join(root, 'blobs', 'sha256', '.tmp-123'), 'junk');
    await writeFile(join(root, 'blobs', 'sha256', 'ABC'), 'junk');
    const listed: string[] = [];
    for await (const b of store.list()) listed.push(b.digest);
    assert.deepEqual(listed, [digest]);
  });

  it('takes over a lock whose holder is dead, from another boot, or unreadable', async () => {
    const digest = sha256(testBytes(10));
    const dir = store.ingestPath('stale');
    await mkdir(dir, { recursive: true });
    const locks = [
      JSON.stringify({ pid: deadPid(), boot: await bootId() }),
      JSON.stringify({ pid: 1, boot: 'an-earlier-boot' }),
      '',
      JSON.stringify({ pid: process.pid, boot: await bootId() }), // this process, yet not held by any of its writers
    ];
    for (const lock of locks) {
      await writeFile(join(dir, 'lock'), lock);
      const w = await store.writer('stale', { digest, size: 10 }, { timeoutMs: 200 });
      assert.equal(JSON.parse(await readFile(join(dir, 'lock'), 'utf8')).pid, process.pid, `took over ${lock}`);
      await w.close();
    }
    assert.deepEqual((await readdir(join(root, 'ingest'))).filter((n) => n.startsWith('.')), [], 'no temporary files left');
  });

  it('waits for a lock held by a live process, then fails LOCKED naming it', async () => {
    const digest = sha256(testBytes(10));
    const dir = store.ingestPath('live');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'lock'), JSON.stringify({ pid: 1, boot: await bootId() }));
    const t0 = Date.now();
    await rejectsWith(store.writer('live', { digest, size: 10 }, { timeoutMs: 300 }), 'LOCKED', (err) => {
      assert.equal(err.details.holder, 1);
      assert.match(err.message, /process 1\b/);
      assert.match(err.message, /"live"/);
    });
    assert.ok(Date.now() - t0 >= 290);
    assert.equal(JSON.parse(await readFile(join(dir, 'lock'), 'utf8')).pid, 1, 'a live lock is left alone');
  });

  it('serialises writers across processes and takes over from a killed one', async () => {
    const size = 200_000;
    const digest = sha256(patternBytes(0, size));
    const holder = await startWriter([root, 'shared', digest, String(size), 'hold', '70000'], 'ready');
    try {
      await rejectsWith(store.writer('shared', { digest, size }, { timeoutMs: 300 }), 'LOCKED', (err) => {
        assert.equal(err.details.holder, holder.child.pid);
        assert.ok(err.message.includes(`process ${holder.child.pid}`), err.message);
      });
    } finally {
      await kill(holder);
    }
    const w = await store.writer('shared', { digest, size }, { timeoutMs: 2000 });
    assert.equal(w.offset, 70_000, 'resumes what the killed process wrote');
    await writeTo(w, patternBytes(w.offset, size - w.offset));
    await w.commit();
    assert.equal(await store.verify(digest), true);
  });

  it('resumes and commits after the writing process is SIGKILLed mid-write', async () => {
    const size = 64 << 20; // the helper trickles 64 KiB per millisecond: at least a second to write it all
    const hash = createHash('sha256');
    for (let at = 0; at < size; at += 1 << 20) hash.update(patternBytes(at, 1 << 20));
    const digest = hash.digest('hex');
    const ref = `layer-sha256:${digest}`;
    const data = join(store.ingestPath(ref), 'data');
    const writer = await startWriter([root, ref, `sha256:${digest}`, String(size), 'trickle'], 'writing');
    try {
      for (let i = 0; i < 1000; i++) {
        const st = await stat(data).catch(() => undefined);
        if (st && st.size >= 2 << 20) break;
        await sleep(10);
      }
    } finally {
      await kill(writer);
    }
    const onDisk = (await stat(data)).size;
    assert.ok(onDisk >= 2 << 20 && onDisk < size, `killed mid-write at ${onDisk} of ${size}`);

    const w = await store.writer(ref, { digest: `sha256:${digest}` as Digest, size }, { timeoutMs: 2000 });
    assert.equal(w.offset, onDisk);
    async function* rest(): AsyncGenerator<Buffer> {
      for (let at = w.offset; at < size; at += 1 << 20) yield patternBytes(at, Math.min(1 << 20, size - at));
    }
    await pipeline(Readable.from(rest()), w.stream());
    const info = await w.commit();
    assert.equal(info.size, size);
    assert.equal(await store.verify(`sha256:${digest}` as Digest), true);
    assert.deepEqual(await store.ingests(), []);
  });

  it('reports a full disk as UNAVAILABLE with a hint, and publishes nothing', async () => {
    const mnt = join(tmp.path, 'small');
    await mkdir(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]);
    try {
      const small = newStore(join(mnt, 'content'));
      const data = testBytes(1 << 20);
      const digest = sha256(data);
      await rejectsWith(small.put({ digest, size: data.length }, data), 'UNAVAILABLE', (err) => {
        assert.equal(err.details.errno, 'ENOSPC');
        assert.match(err.hint ?? '', /free disk space/);
      });
      assert.equal(await small.info(digest), undefined);
      assert.deepEqual(await small.ingests(), [], 'put discards its partial data');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });
});
