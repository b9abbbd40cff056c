import { decideRestart, type ContainerView } from '../containers/index.js';
import type { DesiredState } from '../manifests/index.js';
import type { ApplyReport } from './apply.js';
import { isImageChange } from './plan.js';

/**
 * What `berth status` shows, pure: per object its state, image digest,
 * restarts, last error and three conditions, after Kubernetes':
 *   Ready        the container runs (an Image: it is stored)
 *   Progressing  berth is still working on it (pending pull, restart backoff, just created)
 *   Degraded     something failed: the last apply step, the last start, a
 *                crash (non-zero exit), the restart policy gave up
 * each with a reason a script can match and a message a person can read.
 */

export interface Condition {
  type: 'Ready' | 'Progressing' | 'Degraded';
  status: boolean;
  reason: string;
  message?: string;
}

export interface ObjectStatus {
  kind: 'Container' | 'Image';
  name: string;
  state: string;
  imageDigest?: string;
  restarts?: number;
  exitCode?: number;
  lastError?: string;
  managed: boolean;
  conditions: Condition[];
}

export function statusOf(views: readonly ContainerView[], desired?: DesiredState, report?: ApplyReport, storedImages?: ReadonlyMap<string, string>, canonical?: (ref: string) => string): ObjectStatus[] {
  const failures = new Map<string, string>();
  for (const s of report?.steps ?? []) if (!s.ok && s.error) failures.set(isImageChange(s.change) ? `image:${s.change.image}` : s.change.name, s.error.message);
  for (const c of report?.plan.conflicts ?? []) failures.set(c.name, c.message);
  const byName = new Map(views.map((v) => [v.name, v]));
  const out: ObjectStatus[] = [];
  const names = new Set([...views.map((v) => v.name), ...(desired?.containers.map((c) => c.name) ?? [])]);
  for (const name of [...names].sort()) {
    const v = byName.get(name);
    const failure = failures.get(name);
    if (!v) {
      const pending = report?.plan.pending.includes(name);
      out.push({
        kind: 'Container',
        name,
        state: 'absent',
        managed: true,
        ...(failure ? { lastError: failure } : {}),
        conditions: [
          { type: 'Ready', status: false, reason: 'NotCreated' },
          { type: 'Progressing', status: !failure, reason: pending ? 'PullingImage' : 'Creating' },
          { type: 'Degraded', status: Boolean(failure), reason: failure ? 'ApplyFailed' : 'AsExpected', ...(failure ? { message: failure } : {}) },
        ],
      });
      continue;
    }
    const lastError = failure ?? v.lastError;
    const crashed = v.state === 'exited' && v.desired === 'running' && (v.exitCode ?? 0) !== 0;
    // An exit the supervisor has not processed yet (for a moment, or until a daemon runs) that its policy restarts is a
    // restart to come, not a failure: the supervisor's own decision (decideRestart) says which.
    const restartDue = crashed && !v.lastError && decideRestart(v.restart, { restartCount: v.restarts }, v.exitCode ?? 0, new Date()).restart;
    const ready = v.state === 'running';
    const degradedReason = failure ? 'ApplyFailed' : v.oomKilled ? 'OOMKilled' : crashed && !restartDue ? (v.restart.policy !== 'never' ? 'RestartsExhausted' : 'Crashed') : v.lastError ? 'StartFailed' : 'AsExpected';
    out.push({
      kind: 'Container',
      name,
      state: v.state,
      imageDigest: v.imageDigest,
      restarts: v.restarts,
      ...(v.exitCode !== undefined ? { exitCode: v.exitCode } : {}),
      ...(lastError ? { lastError } : {}),
      managed: Boolean(v.managed),
      conditions: [
        { type: 'Ready', status: ready, reason: ready ? 'Running' : v.state === 'exited' ? 'Exited' : v.state === 'restarting' ? 'BackOff' : 'NotStarted' },
        {
          type: 'Progressing',
          status: v.state === 'restarting' || restartDue || (v.state === 'created' && v.desired === 'running'),
          reason: v.state === 'restarting' ? 'BackOff' : restartDue ? 'RestartDue' : 'Done',
        },
        {
          type: 'Degraded',
          status: degradedReason !== 'AsExpected',
          reason: degradedReason,
          ...(degradedReason !== 'AsExpected' ? { message: lastError ?? `exited with code ${v.exitCode}` } : {}),
        },
      ],
    });
  }
  for (const img of desired?.images ?? []) {
    const key = canonical ? canonical(img.ref) : img.ref;
    const digest = storedImages?.get(key);
    const failure = failures.get(`image:${key}`);
    out.push({
      kind: 'Image',
      name: img.name,
      state: digest ? 'stored' : 'absent',
      ...(digest ? { imageDigest: digest } : {}),
      ...(failure ? { lastError: failure } : {}),
      managed: true,
      conditions: [
        { type: 'Ready', status: Boolean(digest), reason: digest ? 'Stored' : 'NotStored' },
        { type: 'Progressing', status: !digest && !failure, reason: digest ? 'Done' : 'Pulling' },
        { type: 'Degraded', status: Boolean(failure), reason: failure ? 'PullFailed' : 'AsExpected', ...(failure ? { message: failure } : {}) },
      ],
    });
  }
  return out;
}
