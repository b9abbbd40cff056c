import { request } from 'node:http';
import { BerthError, ErrorCodes, type ErrorCode } from '../errors.js';

/**
 * A client of the daemon's API (api/server.ts), for commands that hand
 * their work to a running daemon (`berth apply` while `berth daemon` runs).
 */

export async function callDaemon<T>(socketPath: string, method: 'GET' | 'POST', path: string, body?: unknown, timeoutMs = 0): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: { 'content-type': 'application/json' }, ...(timeoutMs ? { timeout: timeoutMs } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          reject(new BerthError('UNAVAILABLE', `the daemon at ${socketPath} answered ${res.statusCode} with something that is not JSON`));
          return;
        }
        if ((res.statusCode ?? 500) >= 400) {
          const e = json as { code?: string; message?: string; hint?: string };
          const code = (ErrorCodes as readonly string[]).includes(e.code ?? '') ? (e.code as ErrorCode) : 'INTERNAL';
          reject(new BerthError(code, `daemon: ${e.message ?? `HTTP ${res.statusCode}`}`, e.hint ? { hint: e.hint } : {}));
          return;
        }
        resolve(json as T);
      });
    });
    req.on('timeout', () => req.destroy(new BerthError('TIMEOUT', `the daemon at ${socketPath} did not answer within ${timeoutMs} ms`)));
    req.on('error', (err) => reject(err instanceof BerthError ? err : new BerthError('UNAVAILABLE', `cannot reach the daemon at ${socketPath}: ${err.message}`, { cause: err })));
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
