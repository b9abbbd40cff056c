import type { BerthEvent } from '../events.js';
import { formatBytes, formatDuration, shortDigest } from './format.js';

/**
 * Renders pull events. On a TTY: one live line per blob plus a total with
 * speed, redrawn at most every 100 ms. Otherwise: plain lines, one per
 * milestone (resolved, blob done, pull done), so logs stay readable.
 */

interface BlobState {
  size: number;
  offset: number;
  state: 'waiting' | 'downloading' | 'done' | 'exists';
}

export class PullProgress {
  private readonly blobs = new Map<string, BlobState>();
  private drawnLines = 0;
  private lastDraw = 0;
  private readonly started = Date.now();

  constructor(private readonly out: { write(s: string): unknown }, private readonly tty: boolean) {}

  handle(e: BerthEvent): void {
    switch (e.type) {
      case 'pull.resolved':
        if (!this.tty) this.out.write(`${e.ref}: resolved to ${e.digest} on ${e.host}\n`);
        return;
      case 'pull.layer.start':
        this.blobs.set(e.digest, { size: e.size, offset: e.offset, state: 'downloading' });
        if (!this.tty && e.offset > 0) this.out.write(`${shortDigest(e.digest)}: resuming at ${formatBytes(e.offset)} of ${formatBytes(e.size)}\n`);
        break;
      case 'pull.layer.progress': {
        const b = this.blobs.get(e.digest) ?? { size: e.size, offset: 0, state: 'downloading' as const };
        b.offset = e.offset;
        this.blobs.set(e.digest, b);
        break;
      }
      case 'pull.layer.done':
        this.blobs.set(e.digest, { size: e.size, offset: e.size, state: e.cached ? 'exists' : 'done' });
        if (!this.tty) this.out.write(`${shortDigest(e.digest)}: ${e.cached ? 'already present' : 'done'} (${formatBytes(e.size)})\n`);
        break;
      case 'pull.retry':
        if (!this.tty) this.out.write(`${e.host}: retrying in ${formatDuration(e.delayMs)} (attempt ${e.attempt}: ${e.reason})\n`);
        return;
      case 'pull.done':
        if (this.tty) this.draw(true);
        this.out.write(`${e.ref}: pulled ${e.digest} (${formatBytes(e.bytes)} in ${formatDuration(e.durationMs)})\n`);
        return;
      default:
        return;
    }
    if (this.tty) this.draw(false);
  }

  private draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const lines: string[] = [];
    let done = 0;
    let total = 0;
    for (const [digest, b] of this.blobs) {
      done += b.offset;
      total += b.size;
      const pct = b.size ? Math.floor((100 * b.offset) / b.size) : 100;
      const status = b.state === 'exists' ? 'already present' : b.state === 'done' ? 'done' : `${bar(pct)} ${pct}%`;
      lines.push(`${shortDigest(digest)}  ${status.padEnd(30)} ${formatBytes(b.offset)} / ${formatBytes(b.size)}`);
    }
    const secs = Math.max((now - this.started) / 1000, 0.001);
    lines.push(`total  ${formatBytes(done)} / ${formatBytes(total)}  ${formatBytes(Math.round(done / secs))}/s  ${formatDuration(now - this.started)}`);
    // Move up over the previous frame and overwrite it.
    const up = this.drawnLines ? `\x1b[${this.drawnLines}F` : '';
    this.out.write(up + lines.map((l) => `\x1b[2K${l}`).join('\n') + '\n');
    this.drawnLines = lines.length;
  }
}

function bar(pct: number): string {
  const w = 20;
  const full = Math.round((pct / 100) * w);
  return `[${'='.repeat(full)}${' '.repeat(w - full)}]`;
}
