import assert from 'node:assert/strict';
import { appendFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CriLogParser, readLog, type LogLine } from '../../../src/runtime/logs.js';
import { withTempDir } from '../../helpers/tmp.js';

const T = '2024-01-01T00:00:00.000000000Z';
const rec = (stream: 'stdout' | 'stderr', tag: 'P' | 'F', text: string): string => `${T} ${stream} ${tag} ${text}\n`;
const texts = (lines: LogLine[]): string[] => lines.map((l) => `${l.stream}:${l.text}`);

/** Waits until cond() holds (a follower saw something), failing after 10 s. */
async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function collect(gen: AsyncGenerator<LogLine>): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for await (const l of gen) out.push(l);
  return out;
}

describe('CriLogParser', () => {
  it('parses whole lines with time and stream', () => {
    const p = new CriLogParser();
    assert.deepEqual(p.push(Buffer.from(rec('stdout', 'F', 'hello') + rec('stderr', 'F', 'oops'))), [
      { time: T, stream: 'stdout', text: 'hello' },
      { time: T, stream: 'stderr', text: 'oops' },
    ]);
  });

  it('joins P records with the next F record of the same stream, streams kept apart', () => {
    const p = new CriLogParser();
    const data = rec('stdout', 'P', 'hel') + rec('stderr', 'P', 'er') + rec('stdout', 'P', 'lo ') + rec('stderr', 'F', 'ror') + rec('stdout', 'F', 'world');
    assert.deepEqual(texts(p.push(Buffer.from(data))), ['stderr:error', 'stdout:hello world']);
  });

  it('keeps a partial line open across pushes until its F record comes', () => {
    const p = new CriLogParser();
    assert.deepEqual(p.push(Buffer.from(rec('stdout', 'P', 'a'.repeat(10)))), []);
    assert.deepEqual(p.push(Buffer.from(rec('stdout', 'P', 'b'.repeat(10)))), []);
    assert.deepEqual(texts(p.push(Buffer.from(rec('stdout', 'F', 'c')))), [`stdout:${'a'.repeat(10)}${'b'.repeat(10)}c`]);
  });

  it('keeps a record split across chunks at any byte', () => {
    const data = Buffer.from(rec('stdout', 'F', 'first line') + rec('stderr', 'P', 'sec') + rec('stderr', 'F', 'ond') + rec('stdout', 'F', ''));
    for (let cut = 0; cut <= data.length; cut++) {
      const p = new CriLogParser();
      const lines = [...p.push(data.subarray(0, cut)), ...p.push(data.subarray(cut))];
      assert.deepEqual(texts(lines), ['stdout:first line', 'stderr:second', 'stdout:'], `cut at ${cut}`);
    }
  });

  it('keeps a UTF-8 character split across chunks', () => {
    const text = 'grüße 🚢 東京';
    const data = Buffer.from(rec('stdout', 'F', text));
    for (let cut = 0; cut <= data.length; cut++) {
      const p = new CriLogParser();
      const lines = [...p.push(data.subarray(0, cut)), ...p.push(data.subarray(cut))];
      assert.deepEqual(texts(lines), [`stdout:${text}`], `cut at ${cut}`);
    }
    // One byte at a time, through a P/F split inside the emoji's record.
    const parts = Buffer.from(rec('stdout', 'P', 'a🚢') + rec('stdout', 'F', '東'));
    const p = new CriLogParser();
    const lines: LogLine[] = [];
    for (const b of parts) lines.push(...p.push(Buffer.from([b])));
    assert.deepEqual(texts(lines), ['stdout:a🚢東']);
  });

  it('skips lines that are not CRI records', () => {
    const p = new CriLogParser();
    const lines = p.push(Buffer.from(`garbage\n${T} stdin F no\n${rec('stdout', 'F', 'kept')}${T} stdout X no\n`));
    assert.deepEqual(texts(lines), ['stdout:kept']);
  });
});

describe('readLog', () => {
  it('reads a missing file as empty', async () => {
    await withTempDir('berth-logs', async (dir) => {
      assert.deepEqual(await collect(readLog(join(dir, 'none.log'))), []);
      assert.deepEqual(await collect(readLog(join(dir, 'none.log'), { tail: 3 })), []);
    });
  });

  it('reads every line, and --tail n the last n', async () => {
    await withTempDir('berth-logs', async (dir) => {
      const path = join(dir, 'c.log');
      let data = '';
      for (let i = 1; i <= 10; i++) data += rec(i % 3 ? 'stdout' : 'stderr', 'F', `line ${i}`);
      // A long line in P pieces, larger than one read chunk.
      const long = 'x'.repeat(100_000);
      data += rec('stdout', 'P', long.slice(0, 70_000)) + rec('stdout', 'F', long.slice(70_000));
      await writeFile(path, data);
      const all = await collect(readLog(path));
      assert.equal(all.length, 11);
      assert.deepEqual(texts(all.slice(0, 3)), ['stdout:line 1', 'stdout:line 2', 'stderr:line 3']);
      assert.equal(all[10]!.text, long);
      assert.deepEqual(texts(await collect(readLog(path, { tail: 3 }))), ['stderr:line 9', 'stdout:line 10', `stdout:${long}`]);
      assert.deepEqual(await collect(readLog(path, { tail: 0 })), []);
      assert.equal((await collect(readLog(path, { tail: 100 }))).length, 11);
    });
  });

  it('follows appended lines until done() says so, then reads what is left', async () => {
    await withTempDir('berth-logs', async (dir) => {
      const path = join(dir, 'c.log');
      await writeFile(path, rec('stdout', 'F', 'old 1') + rec('stdout', 'F', 'old 2'));
      let finished = false;
      const seen: string[] = [];
      const reading = (async () => {
        for await (const l of readLog(path, { tail: 1, follow: { done: async () => finished } })) seen.push(l.text);
      })();
      await until('the tail', () => seen.length === 1);
      await appendFile(path, rec('stdout', 'F', 'new 1'));
      await until('the appended line', () => seen.length === 2);
      assert.deepEqual(seen, ['old 2', 'new 1'], 'a follower sees an appended line while it waits');
      await appendFile(path, rec('stderr', 'P', 'new ') + rec('stderr', 'F', '2'));
      finished = true;
      await reading;
      assert.deepEqual(seen, ['old 2', 'new 1', 'new 2']);
    });
  });

  it('follows a file that does not exist yet', async () => {
    await withTempDir('berth-logs', async (dir) => {
      const path = join(dir, 'c.log');
      const seen: string[] = [];
      let finished = false;
      const reading = (async () => {
        for await (const l of readLog(path, { follow: { done: async () => finished } })) seen.push(l.text);
      })();
      await sleep(300);
      await writeFile(path, rec('stdout', 'F', 'late'));
      await until('the line of the new file', () => seen.length === 1);
      finished = true;
      await reading;
      assert.deepEqual(seen, ['late']);
    });
  });

  it('stops following when its signal aborts', async () => {
    await withTempDir('berth-logs', async (dir) => {
      const path = join(dir, 'c.log');
      await writeFile(path, rec('stdout', 'F', 'one'));
      const ac = new AbortController();
      const reading = collect(readLog(path, { follow: { done: async () => false, signal: ac.signal } }));
      await sleep(200);
      await appendFile(path, rec('stdout', 'F', 'two'));
      const t0 = Date.now();
      ac.abort();
      assert.deepEqual(texts(await reading), ['stdout:one', 'stdout:two']);
      assert.ok(Date.now() - t0 < 5000, 'an abort ends the wait at once');
    });
  });

  /** conmon's rotation: a new file written next to the log and renamed over it. */
  async function rotate(path: string, content: string): Promise<void> {
    await writeFile(`${path}.tmp`, content);
    await rename(`${path}.tmp`, path);
  }

  it('follows across rotations (a new file renamed over the old one)', async () => {
    await withTempDir('berth-logs', async (dir) => {
      const path = join(dir, 'c.log');
      await writeFile(path, rec('stdout', 'F', 'a1') + rec('stdout', 'F', 'a2'));
      let finished = false;
      const seen: string[] = [];
      const reading = (async () => {
        for await (const l of readLog(path, { follow: { done: async () => finished } })) seen.push(l.text);
      })();
      await until('the first file', () => seen.length === 2);
      // The new file is longer than what was read: the reader must notice the inode, not only a shrink.
      await rotate(path, rec('stdout', 'F', 'b1') + rec('stdout', 'F', 'b2') + rec('stdout', 'F', 'b3'));
      await until('the rotated file', () => seen.length === 5);
      assert.deepEqual(seen, ['a1', 'a2', 'b1', 'b2', 'b3']);
      await appendFile(path, rec('stdout', 'F', 'b4'));
      await until('the appended line', () => seen.length === 6);
      // And a shorter one.
      await rotate(path, rec('stdout', 'F', 'c1'));
      await until('the second rotated file', () => seen.length === 7);
      await appendFile(path, rec('stderr', 'F', 'c2'));
      finished = true;
      await reading;
      assert.deepEqual(seen, ['a1', 'a2', 'b1', 'b2', 'b3', 'b4', 'c1', 'c2']);
    });
  });

  it('reads the new file when the log rotated just before the end (the container wrote, rotated and exited)', async () => {
    await withTempDir('berth-logs', async (dir) => {
      const path = join(dir, 'c.log');
      await writeFile(path, rec('stdout', 'F', 'a1'));
      // The rotation and the exit both happen after the reader's last look at the file and before it asks done().
      let exited = false;
      const done = async (): Promise<boolean> => {
        if (!exited) {
          await rotate(path, rec('stdout', 'F', 'b1') + rec('stdout', 'F', 'last words'));
          exited = true;
        }
        return true;
      };
      assert.deepEqual(texts(await collect(readLog(path, { follow: { done } }))), ['stdout:a1', 'stdout:b1', 'stdout:last words']);
    });
  });
});
