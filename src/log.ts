/**
 * Structured logging. Library code logs through an injected Logger and never
 * prints; the shell (cli/) decides where lines go and how they look.
 * Field values under secret-looking keys are redacted here, at the one place
 * every log line passes, so a credential cannot reach a log by accident.
 */

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LogLevels: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

export interface LogRecord {
  time: string;
  level: LogLevel;
  msg: string;
  fields: LogFields;
}

const SECRET_KEY = /pass(word)?|secret|token|authorization|auth|credential|cookie/i;

/** Replaces values of secret-looking keys, recursively, with "[redacted]". */
export function redact(fields: LogFields): LogFields {
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_KEY.test(k)) out[k] = '[redacted]';
    else if (v && typeof v === 'object' && !Array.isArray(v) && !(v instanceof Error)) out[k] = redact(v as LogFields);
    else out[k] = v;
  }
  return out;
}

class SinkLogger implements Logger {
  constructor(
    private readonly sink: (rec: LogRecord) => void,
    private readonly min: number,
    private readonly base: LogFields,
  ) {}
  private emit(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LogLevels.indexOf(level) < this.min) return;
    this.sink({ time: new Date().toISOString(), level, msg, fields: redact({ ...this.base, ...fields }) });
  }
  debug(msg: string, fields?: LogFields): void { this.emit('debug', msg, fields); }
  info(msg: string, fields?: LogFields): void { this.emit('info', msg, fields); }
  warn(msg: string, fields?: LogFields): void { this.emit('warn', msg, fields); }
  error(msg: string, fields?: LogFields): void { this.emit('error', msg, fields); }
  child(fields: LogFields): Logger { return new SinkLogger(this.sink, this.min, { ...this.base, ...fields }); }
}

export function createLogger(sink: (rec: LogRecord) => void, level: LogLevel = 'info'): Logger {
  return new SinkLogger(sink, LogLevels.indexOf(level), {});
}

/** A logger that drops everything; the default for library code and tests. */
export const nullLogger: Logger = createLogger(() => {}, 'error');
