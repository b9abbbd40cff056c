/**
 * linux/ — the system calls Node 20 lacks (mknod, extended attributes,
 * syncfs, times to the nanosecond, mount and umount2), called through
 * koffi's FFI into the C library. No policy: each function makes one call and turns a failure into
 * a BerthError naming the call, the errno and the path. koffi is loaded on
 * the first call, so processes that never need these calls do not pay for
 * loading it.
 */
export { runCommand, type CommandResult, type RunOptions } from './command.js';
export { tryLockExclusive, unlock } from './flock.js';
export { errnoOf, futimens, lgetxattr, llistxattr, lsetxattr, lutimens, mknod, mount, syncfs, umount2, type DeviceType } from './syscalls.js';
