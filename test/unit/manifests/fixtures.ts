import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { DesiredContainer } from '../../../src/manifests/index.js';

/** Writes files (relative path → text) under dir, creating directories. */
export async function writeTree(dir: string, files: Record<string, string>): Promise<void> {
  for (const [name, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), text);
  }
}

/** A Container manifest in YAML; `spec` lines are indented by the caller's template as given. */
export function container(name: string, spec = 'image: busybox:1.36'): string {
  return `apiVersion: berth/v1\nkind: Container\nmetadata:\n  name: ${name}\nspec:\n${spec
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n')}\n`;
}

export function image(name: string, ref = 'busybox:1.36'): string {
  return `apiVersion: berth/v1\nkind: Image\nmetadata:\n  name: ${name}\nspec:\n  ref: ${ref}\n`;
}

/** A desired container with berth's defaults, for hash and diff tests. */
export function desired(overrides: Partial<DesiredContainer> = {}): DesiredContainer {
  return {
    kind: 'Container',
    name: 'web',
    labels: {},
    image: 'registry.example:5000/team/web:1.4',
    pullPolicy: 'IfNotPresent',
    config: {},
    restart: { policy: 'always', initialMs: 1000, maxMs: 60_000 },
    stopTimeoutMs: 10_000,
    dependsOn: [],
    state: 'running',
    source: { file: 'web.yaml', line: 1, col: 1 },
    ...overrides,
  };
}
