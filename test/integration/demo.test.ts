/**
 * The README's first quick-start command runs the demo (scripts/demo.sh:
 * setup, build, then dist/scripts/demo.js). This runs the built demo and
 * checks what it is there to show, so a step that breaks quietly (a command
 * line that only prints an error while the demo goes on) fails here.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const demo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'demo.js');

function runDemo(): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [demo], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
  });
}

test('the demo runs end to end and shows each step working', { timeout: 180_000 }, async () => {
  const { code, out } = await runDemo();
  assert.equal(code, 0, out);
  // Nothing but berth's own, expected errors: no crash, no node option or module errors.
  assert.doesNotMatch(out, /bad option|Cannot find module|Uncaught|^\s+at .+:\d+:\d+\)?$/m, out);
  // The broken manifest is the demo's one error, reported by file, line and column; no command fails otherwise.
  assert.deepEqual(out.split('\n').filter((l) => /berth: error|\bError\b/.test(l)), [], out);
  assert.match(out, /broken\.yaml:6:22: policy must be one of never, on-failure, always, not "sometimes"/);
  assert.match(out, /^\$ curl http:\/\/127\.0\.0\.1:18080\/\nhello from berth \(edge device 42\)$/m, 'web serves its page, with its env');
  assert.match(out, /^db: ready$/m, 'berth logs db');
  assert.match(out, /plan: 0 to pull, 0 to create, 0 to replace, 0 to update, 0 to start, 0 to stop, 0 to delete, 0 to untag; 5 unchanged/, 'the second apply is a no-op');
  assert.match(out, /api was replaced at .*: spec changed: config\.env\.LOG_LEVEL\n\s+config\.env\.LOG_LEVEL: "info" → "debug"/, 'explain names the edit');
  assert.match(out, /ok {3}- delete worker: no manifest declares it \(prune\)/, 'the removed file is pruned');
  assert.match(out, /container\.restart\.scheduled name=flaky .*attempt=\d+/, 'the daemon keeps flaky\'s restart policy, in the events');
  assert.match(out, /^registry\.demo\/berth\/busybox:1\.0 +sha256:[0-9a-f]{64} +[\d.]+ [KM]iB +linux\/\w+$/m, 'the import lists the image in the second root');
  assert.match(out, /^\d+ blobs? good, 0 corrupt$/m, 'content verify');
});
