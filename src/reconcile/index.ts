/**
 * reconcile/ — from desired state (manifests/) and actual state (records,
 * runtime, stored images) to a converged host: observe (reads only), plan
 * (pure), apply (ordered, idempotent steps, pulls first). Knows no CLI and
 * no HTTP: the shell renders plans and reports, the daemon schedules runs.
 */
export * from './plan.js';
export * from './apply.js';
export * from './controller.js';
export * from './status.js';
