import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Reading a container's cgroup, on cgroup v2 (unified) and v1 (per
 * controller) hierarchies alike: berth runs on both. Only what runc does not
 * report is read here.
 */

const CGROUP_ROOT = '/sys/fs/cgroup';

/**
 * How many processes of the cgroup the OOM killer killed, or undefined when
 * the cgroup is gone or the kernel does not count (v1 before Linux 4.13).
 * v2: memory.events `oom_kill N`; v1: memory/…/memory.oom_control `oom_kill N`.
 */
export async function oomKills(cgroupsPath: string, root = CGROUP_ROOT): Promise<number | undefined> {
  const rel = cgroupsPath.replace(/^\/+/, '');
  for (const file of [join(root, rel, 'memory.events'), join(root, 'memory', rel, 'memory.oom_control')]) {
    const text = await readFile(file, 'utf8').catch(() => undefined);
    const m = text && /^oom_kill (\d+)$/m.exec(text);
    if (m) return Number(m[1]);
  }
  return undefined;
}
