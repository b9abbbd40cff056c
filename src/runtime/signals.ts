import { BerthError } from '../errors.js';

/**
 * Signal names to numbers, the way Docker reads a StopSignal: "SIGTERM",
 * "TERM", "sigterm", "15", "SIGRTMIN+3". Numbers are the Linux ones shared by
 * x86, arm and arm64 (mips, alpha and sparc number some differently; berth does
 * not target them). Pure: no lookup of the host's signal table.
 */

export const SIGNALS: Readonly<Record<string, number>> = {
  HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, IOT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10, SEGV: 11,
  USR2: 12, PIPE: 13, ALRM: 14, TERM: 15, STKFLT: 16, CHLD: 17, CLD: 17, CONT: 18, STOP: 19, TSTP: 20,
  TTIN: 21, TTOU: 22, URG: 23, XCPU: 24, XFSZ: 25, VTALRM: 26, PROF: 27, WINCH: 28, IO: 29, POLL: 29,
  PWR: 30, SYS: 31,
};

/** glibc keeps 32 and 33 for itself, so SIGRTMIN is 34 for programs, as Docker and runc count it. */
const RTMIN = 34;
const RTMAX = 64;

export const SIGTERM = 15;

/** The signal number for a name or number; throws INVALID_ARGUMENT for anything else. */
export function parseSignal(s: string): number {
  const text = s.trim().toUpperCase();
  const bad = (): BerthError =>
    new BerthError('INVALID_ARGUMENT', `signal ${JSON.stringify(s)} is not a known signal`, {
      hint: `use a name such as SIGTERM, TERM or SIGRTMIN+3, or a number from 1 to ${RTMAX}`,
    });
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    if (n < 1 || n > RTMAX) throw bad();
    return n;
  }
  const name = text.startsWith('SIG') ? text.slice(3) : text;
  const known = SIGNALS[name];
  if (known !== undefined) return known;
  const rt = /^RT(MIN|MAX)(?:([+-])(\d+))?$/.exec(name);
  if (rt) {
    const offset = rt[3] === undefined ? 0 : Number(rt[3]) * (rt[2] === '-' ? -1 : 1);
    const n = (rt[1] === 'MIN' ? RTMIN : RTMAX) + offset;
    if (n >= RTMIN && n <= RTMAX) return n;
  }
  throw bad();
}
