/**
 * A mount as the OCI runtime spec and containerd describe it: what to mount
 * (type, source, options). Snapshotters return mounts and never perform them;
 * mount/ performs them; runtime/ puts them in config.json.
 */
export interface Mount {
  /** "overlay", "bind", "tmpfs", ... */
  type: string;
  source: string;
  /** Where it goes, for runtime-spec mounts; absent for a snapshot's rootfs mounts. */
  target?: string;
  /** e.g. ["ro", "rbind"] or ["lowerdir=…", "upperdir=…", "workdir=…"]. */
  options: string[];
}
