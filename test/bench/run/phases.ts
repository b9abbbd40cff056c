/**
 * Where the time of one `berth run --rm IMAGE -- true` goes, from a trace of
 * its process tree:
 *
 *   strace -f --seccomp-bpf -ttt -e trace=execve,exit_group,openat -e signal=none -o TRACE \
 *     dist/src/bin.cjs --root R --state S run --rm IMAGE -- true
 *   node dist/test/bench/run/phases.js TRACE
 *
 * --seccomp-bpf stops only at the traced calls, so the overhead is small
 * (a few per cent; openat makes module loading a little slower). Phases run
 * from one landmark to the next: berth's code opened, the metadata store opened,
 * each helper process's exec and exit (mount, conmon, runc create/start/
 * delete, umount, rm), and berth's exit. A landmark that is missing (the
 * code changed, say mount(2) is called directly) is reported, not guessed.
 */
import { readFileSync } from 'node:fs';

interface Event {
  pid: number;
  ms: number;
  call: string;
}

function parse(text: string): Event[] {
  const events: Event[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+)\s+(\d+\.\d+)\s+(.*)$/.exec(line);
    if (m) events.push({ pid: Number(m[1]), ms: Number(m[2]) * 1000, call: m[3]! });
  }
  return events;
}

function main(): number {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node dist/test/bench/run/phases.js STRACE_OUTPUT   (see the comment at the top of test/bench/run/phases.ts)');
    return 2;
  }
  const events = parse(readFileSync(file, 'utf8'));
  const start = events[0];
  if (!start) throw new Error(`${file}: no strace lines (run strace with -f -ttt)`);

  const missing: string[] = [];
  const find = (what: string, test: (e: Event) => boolean): Event | undefined => {
    const e = events.find(test);
    if (!e) missing.push(what);
    return e;
  };
  const opened = (what: string, re: RegExp): number | undefined => find(what, (e) => e.call.startsWith('openat(') && re.test(e.call) && !e.call.includes('ENOENT'))?.ms;
  // A helper's exec (the one that succeeded: PATH lookups fail with ENOENT first) and its exit.
  const helper = (what: string, re: RegExp): [number | undefined, number | undefined] => {
    const exec = find(`${what} exec`, (e) => e.call.startsWith('execve(') && re.test(e.call) && !e.call.includes('ENOENT'));
    if (!exec) return [undefined, undefined];
    return [exec.ms, find(`${what} exit`, (e) => e.pid === exec.pid && e.call.startsWith('+++ exited'))?.ms];
  };

  const mainJs = opened("berth's code opened (bundle.cjs, or main.js unbundled)", /dist\/src\/(bundle\.cjs|main\.js)"/);
  const meta = opened('metadata store opened', /\/meta\/data\.mdb"/);
  const [mountExec, mountExit] = helper('mount', /^execve\("[^"]*\/mount"/);
  const [conmonExec] = helper('conmon', /^execve\("[^"]*\/conmon"/);
  const [, createExit] = helper('runc create', /runc", "--root", "[^"]*", "create"/);
  const [startExec, startExit] = helper('runc start', /runc", "--root", "[^"]*", "start"/);
  const [deleteExec, deleteExit] = helper('runc delete', /runc", "--root", "[^"]*", "delete"/);
  const [umountExec, umountExit] = helper('umount', /^execve\("[^"]*\/umount"/);
  const [rmExec, rmExit] = helper('rm', /^execve\("[^"]*\/rm"/);
  const end = find('berth exit', (e) => e.pid === start.pid && e.call.startsWith('+++ exited'))?.ms;

  const phases: Array<[string, number | undefined, number | undefined]> = [
    ['node start (exec -> berth code opened)', start.ms, mainJs],
    ['berth start-up (its code -> metadata store opened)', mainJs, meta],
    ['metadata open, lazy imports (containers, snapshots), snapshot prepare', meta, mountExec],
    ['mount the rootfs overlay (mount process)', mountExec, mountExit],
    ['bundle: spec, config.json, metadata updates', mountExit, conmonExec],
    ['conmon -> runc create', conmonExec, createExit],
    ['create done -> runc start spawned', createExit, startExec],
    ['runc start', startExec, startExit],
    ['true runs and exits; conmon writes the exit record; berth notices -> runc delete spawned', startExit, deleteExec],
    ['runc delete', deleteExec, deleteExit],
    ['-> umount spawned (metadata updates)', deleteExit, umountExec],
    ['umount the rootfs (umount process)', umountExec, umountExit],
    ['-> rm spawned (snapshot remove: metadata, rename)', umountExit, rmExec],
    ['rm -rf the snapshot directory (rm process)', rmExec, rmExit],
    ['log, bundle and record removal, store close, process exit', rmExit, end],
  ];
  const ms = (x: number): string => x.toFixed(1).padStart(7);
  for (const [name, a, b] of phases) {
    if (a === undefined || b === undefined) console.log(`      -  ${name} (landmark missing)`);
    else console.log(`${ms(b - a)} ms  at ${ms(a - start.ms)}  ${name}`);
  }
  if (end !== undefined) console.log(`${ms(end - start.ms)} ms  total`);
  if (missing.length) console.log(`missing landmarks: ${missing.join(', ')}`);
  return 0;
}

process.exitCode = main();
