/**
 * Parses a duration like `500ms`, `30s`, `5m`, `1h` (a bare number is seconds) into milliseconds.
 * @throws Error on anything else.
 */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`invalid duration '${text}' (use e.g. 30s, 5m, 1h)`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const factor = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
  return Math.round(n * factor);
}
