/**
 * The container runtime interface: what containers/ needs to run a bundle,
 * after containerd's runtime task API. One implementation runs runc under a
 * conmon per container (runc.ts); the interface lets containers/ be tested
 * against it without knowing either tool.
 *
 * Contracts:
 * - A container is a bundle directory with config.json and a mounted rootfs;
 *   `create` makes its processes exist (stopped before the user process),
 *   `start` runs the user process. `create` returns once the runtime reports
 *   the container's pid, or fails with the runtime's own message.
 * - A monitor process per container keeps its stdio (written to `logPath` in
 *   CRI format) and its exit code; it outlives the berth process that started
 *   it, so berth can exit, crash or upgrade while containers run.
 * - When a container's init process exits, the monitor writes an exit record,
 *   and `watchExits` reports the container's id: exits are events, not
 *   something to poll. Exit records persist until `delete`, so exits that
 *   happen while no berth runs are found by `exitStatus` later.
 */

export type RuntimeStatus = 'creating' | 'created' | 'running' | 'pausing' | 'paused' | 'stopped';

export interface RuntimeState {
  id: string;
  status: RuntimeStatus;
  /** The container's init process on the host (0 once it is gone). */
  pid: number;
  bundle: string;
}

export interface ExitStatus {
  /** As a shell reports it: the exit code, or 128 + signal for a process killed by a signal (SIGKILL → 137). */
  code: number;
  /** The signal that killed the process, when it was killed by one. */
  signal?: number;
  /** The kernel's OOM killer killed a process of the container. */
  oomKilled: boolean;
  /** When the exit record was written. */
  at: Date;
  /** The monitor died before it wrote a record: the real exit code is unknown (255 stands for it). */
  lost?: boolean;
}

export interface CreateOptions {
  bundle: string;
  /** Where the monitor writes the container's stdout and stderr, CRI format. */
  logPath: string;
  /** The log file is rotated when it would grow past this. */
  logMaxBytes: number;
  /** The cgroup path of the spec, read for OOM kills after an exit. */
  cgroupsPath?: string;
  /** A command (argv, absolute path first) the monitor runs once it has written the exit record. */
  exitCommand?: readonly string[];
}

export interface ExecOptions {
  /** Environment additions, K=V. */
  env?: string[];
  cwd?: string;
  /** File descriptors for the process's stdin, stdout, stderr (e.g. the caller's own). */
  stdio: [number | 'ignore', number | 'ignore', number | 'ignore'];
}

export interface ContainerRuntime {
  create(id: string, opts: CreateOptions): Promise<{ pid: number }>;
  start(id: string): Promise<void>;
  /** Signals the init process (NOT_FOUND when the container does not exist). A container that already stopped is fine. */
  kill(id: string, signal: number): Promise<void>;
  /** Removes the container's runtime state and exit record; `force` kills it first. Absent is fine. */
  delete(id: string, opts?: { force?: boolean }): Promise<void>;
  /** undefined when the runtime knows no such container. */
  state(id: string): Promise<RuntimeState | undefined>;
  list(): Promise<RuntimeState[]>;
  /**
   * The exit record of the container's last run, if it exited since it was
   * created; undefined while it runs or its monitor is still writing the
   * record. When the monitor died without writing one, code 255 with `lost`.
   * `known` is the container's state just read with `state`, when the caller
   * has it, so it is not read again.
   */
  exitStatus(id: string, known?: RuntimeState): Promise<ExitStatus | undefined>;
  /** Calls onExit with the id of each container whose exit record appears. Returns a stop function. */
  watchExits(onExit: (id: string) => void): () => void;
  /** Runs a process in the running container; resolves to its exit code. */
  exec(id: string, args: readonly string[], opts: ExecOptions): Promise<number>;
}
