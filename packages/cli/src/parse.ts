import { InvalidArgumentError } from 'commander';

/**
 * Parses a duration like `500ms`, `30s`, `5m`, `1h`, `2d` (a bare number is seconds) into milliseconds.
 * @throws InvalidArgumentError on anything else.
 */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`invalid duration '${text}' (use e.g. 30s, 5m, 1h)`);
  const n = Number(m[1]);
  const unit = (m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd';
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit];
  return Math.round(n * factor);
}

/** A duration in whole seconds, rounded up (the wire's `timeout_seconds`). @throws InvalidArgumentError */
export function parseDurationSeconds(text: string): number {
  const ms = parseDuration(text);
  if (ms <= 0) throw new InvalidArgumentError(`duration must be positive: '${text}'`);
  return Math.ceil(ms / 1000);
}

/** A whole number in `[min, max]`. @throws InvalidArgumentError */
export function parseInteger(text: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text.trim())) throw new InvalidArgumentError(`not a whole number: '${text}'`);
  const n = Number(text);
  if (n < min || n > max) throw new InvalidArgumentError(`must be between ${min} and ${max}: '${text}'`);
  return n;
}

/** A TCP port (1–65535); `0` too when `allowZero`. @throws InvalidArgumentError */
export function parsePort(text: string, allowZero = false): number {
  return parseInteger(text, allowZero ? 0 : 1, 65_535);
}

/**
 * One `KEY=VALUE` pair, added to `previous` (for repeatable options like `-e`).
 * @throws InvalidArgumentError when there is no `=` or the name is not a valid variable name.
 */
export function parseKeyValue(text: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = text.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected KEY=VALUE, got '${text}'`);
  const key = text.slice(0, eq);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new InvalidArgumentError(`invalid variable name '${key}'`);
  return { ...previous, [key]: text.slice(eq + 1) };
}

/** A `cp` operand: a local path, or `<sandbox id>:<absolute path>` inside a sandbox. */
export type CopyOperand = { kind: 'local'; path: string } | { kind: 'remote'; sandboxId: string; path: string };

/**
 * Reads a `cp` operand. `<id>:/abs/path` is remote; anything else (including
 * `./a:b`, `/x:y` and `-`) is local. A remote path must be absolute.
 * @throws InvalidArgumentError for a remote operand with a relative path.
 */
export function parseCopyOperand(text: string): CopyOperand {
  const m = /^([A-Za-z0-9_-]+):(.*)$/.exec(text);
  if (!m) return { kind: 'local', path: text };
  const path = m[2] ?? '';
  if (!path.startsWith('/')) throw new InvalidArgumentError(`the path inside the sandbox must be absolute: '${text}'`);
  return { kind: 'remote', sandboxId: m[1] ?? '', path };
}

/** Formats milliseconds for people: `850ms`, `12.3s`, `4m05s`, `2h10m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** Formats a byte count for people: `512 B`, `1.5 KiB`, `3.2 MiB`. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
