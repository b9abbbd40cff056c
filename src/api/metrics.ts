import type { BerthEvent } from '../events.js';

/**
 * The daemon's metrics in Prometheus' text format. Counters are fed by
 * domain events (pulls, restarts, garbage collections) and by the reconcile loop; gauges of the
 * current state (containers by state, manifest errors) are read at scrape.
 */

export interface Gauges {
  containersByState: Record<string, number>;
  manifestErrors: number;
}

export class Metrics {
  private reconcileCount = 0;
  private reconcileSeconds = 0;
  private reconcileFailures = 0;
  private pullBytes = 0;
  private pullSeconds = 0;
  private pulls = 0;
  private readonly restarts = new Map<string, number>();
  private gcRuns = 0;
  private gcBytes = 0;

  observe(e: BerthEvent): void {
    if (e.type === 'pull.done') {
      this.pulls++;
      this.pullBytes += e.bytes;
      this.pullSeconds += e.durationMs / 1000;
    } else if (e.type === 'gc.done') {
      this.gcRuns++;
      this.gcBytes += e.bytes;
    } else if (e.type === 'container.started' && e.restartCount > 0) {
      this.restarts.set(e.name, (this.restarts.get(e.name) ?? 0) + 1);
    }
  }

  reconciled(durationMs: number, converged: boolean): void {
    this.reconcileCount++;
    this.reconcileSeconds += durationMs / 1000;
    if (!converged) this.reconcileFailures++;
  }

  render(g: Gauges): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: Array<[string, number]>): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) lines.push(`${name}${labels} ${v}`);
    };
    metric('berth_up', 'gauge', 'The berth daemon is running.', [['', 1]]);
    lines.push('# HELP berth_reconcile_duration_seconds Time spent in reconcile runs.', '# TYPE berth_reconcile_duration_seconds summary');
    lines.push(`berth_reconcile_duration_seconds_sum ${this.reconcileSeconds}`, `berth_reconcile_duration_seconds_count ${this.reconcileCount}`);
    metric('berth_reconcile_failures_total', 'counter', 'Reconcile runs that did not converge.', [['', this.reconcileFailures]]);
    metric('berth_pulls_total', 'counter', 'Image pulls completed.', [['', this.pulls]]);
    metric('berth_pull_bytes_total', 'counter', 'Bytes fetched by image pulls.', [['', this.pullBytes]]);
    metric('berth_pull_duration_seconds_total', 'counter', 'Time spent in image pulls.', [['', this.pullSeconds]]);
    metric('berth_gc_runs_total', 'counter', 'Garbage collections run.', [['', this.gcRuns]]);
    metric('berth_gc_removed_bytes_total', 'counter', 'Bytes of blobs and partial downloads removed by garbage collection.', [['', this.gcBytes]]);
    metric('berth_container_restarts_total', 'counter', 'Restarts made by restart policies, per container.', [...this.restarts].sort().map(([n, v]) => [`{container="${escape(n)}"}`, v]));
    metric('berth_containers', 'gauge', 'Containers by state.', ['created', 'running', 'restarting', 'exited'].map((s) => [`{state="${s}"}`, g.containersByState[s] ?? 0]));
    metric('berth_manifest_errors', 'gauge', 'Errors in the manifests of the last load.', [['', g.manifestErrors]]);
    return lines.join('\n') + '\n';
  }
}

function escape(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
