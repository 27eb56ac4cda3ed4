/** Writes a line for people to stderr (progress, confirmations, hints). */
export function say(message: string): void {
  process.stderr.write(`${message}\n`);
}

/** Writes a result to stdout (ids, tables): what a script pipes on. */
export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/** Writes a value as pretty JSON to stdout (`--json`). */
export function outJSON(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** Visible width of a string (ignores ANSI colour codes). */
function width(s: string): number {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching ANSI escape sequences
  return s.replace(/\u001b\[[0-9;]*m/g, '').length;
}

/**
 * Renders rows as an aligned table with a header line; cells are padded with
 * spaces, the last column is not. Missing (null/undefined) cells show `-`.
 */
export function table(
  headers: readonly string[],
  rows: ReadonlyArray<ReadonlyArray<string | number | null | undefined>>,
): string {
  const cells = rows.map((r) =>
    headers.map((_, i) => {
      const v = r[i];
      return v === null || v === undefined ? '-' : String(v).replace(/[\r\n\t]/g, ' ');
    }),
  );
  const widths = headers.map((h, i) => Math.max(width(h), ...cells.map((r) => width(r[i] ?? ''))));
  const line = (r: readonly string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat((widths[i] ?? 0) - width(c))))
      .join('  ')
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...cells.map(line)].join('\n');
}

/** Renders `label: value` lines with aligned values (for `info` verbs). */
export function fields(
  entries: ReadonlyArray<readonly [string, string | number | boolean | null | undefined]>,
): string {
  const w = Math.max(...entries.map(([k]) => k.length));
  return entries
    .map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v === null || v === undefined || v === '' ? '-' : String(v)}`)
    .join('\n');
}

/** `2026-01-28T10:00:00Z` → `2026-01-28 10:00:00` (UTC); passes anything else through. */
export function shortTime(iso: string | null | undefined): string {
  if (!iso) return '-';
  return iso.replace('T', ' ').replace(/(\.\d+)?Z$/, '');
}

/** How long ago an RFC 3339 time was, e.g. `5m ago`. */
export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}
