import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh directory under os.tmpdir(), mode 0700; cleanup() removes it and everything in it. */
export async function tempDir(prefix: string): Promise<{ path: string; cleanup(): Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
  await chmod(path, 0o700);
  return { path, cleanup: () => rm(path, { recursive: true, force: true }) };
}

/** Runs fn with a fresh temporary directory, removed afterwards whatever fn does. */
export async function withTempDir<T>(prefix: string, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = await tempDir(prefix);
  try {
    return await fn(dir.path);
  } finally {
    await dir.cleanup();
  }
}
