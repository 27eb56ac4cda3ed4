import type { Summary } from './stats.ts';

/** One line of the bench table: a Warren measurement, its floor from the same run, and the target it is judged by. */
export interface Row {
  /** Issue row number (1–8). */
  section: number;
  name: string;
  /** How the server was driven: `HTTP` (fetch through the gateway), `@hopx-ai/sdk`, … */
  via: string;
  /** Unit of the percentiles. */
  unit: 'ms' | 'MiB' | 's';
  stats: Summary;
  /** Failed operations (not included in the samples). */
  errors: number;
  floor?: { name: string; stats: Summary };
  /** Target from the issue, judged on `stats`. */
  target?: { text: string; met: boolean };
  /** Anything else the row needs to be read right (throughput, wall time, configuration). */
  note?: string;
}

/** The whole run: when, where, with which scale, and every row. */
export interface Report {
  startedAt: string;
  finishedAt: string;
  scale: string;
  machine: Record<string, string | number>;
  rows: Row[];
  /** Rows that could not be measured at all, with why. */
  failures: Array<{ section: number; name: string; error: string }>;
}

/**
 * `stats.p50 / floor.p50`: NaN without a floor, and when the floor's p50 is
 * not above zero (a floor below the measurement's noise, e.g. an idle bare
 * container's share of `MemAvailable`, can come out negative), where a ratio
 * means nothing.
 */
export function ratio(row: Row): number {
  return row.floor && row.floor.stats.p50 > 0 ? row.stats.p50 / row.floor.stats.p50 : Number.NaN;
}

function num(x: number): string {
  if (!Number.isFinite(x)) return '—';
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** Markdown: the machine, then one table row per measurement. */
export function markdown(report: Report): string {
  const lines: string[] = [];
  lines.push(`Run ${report.startedAt} → ${report.finishedAt} (scale: ${report.scale})`, '');
  lines.push('| Machine | |', '| --- | --- |');
  for (const [k, v] of Object.entries(report.machine)) lines.push(`| ${k} | ${v} |`);
  lines.push('');
  lines.push(
    '| # | Benchmark | Via | N | p50 | p95 | p99 | max | Floor (same run) | Floor p50 | × floor | Errors | Target | Met | Notes |',
    '| - | --- | --- | -: | -: | -: | -: | -: | --- | -: | -: | -: | --- | :-: | --- |',
  );
  for (const row of report.rows) {
    const s = row.stats;
    const u = row.unit === 'ms' ? ' ms' : ` ${row.unit}`;
    lines.push(
      [
        '',
        row.section,
        row.name,
        row.via,
        s.n,
        `${num(s.p50)}${u}`,
        num(s.p95),
        num(s.p99),
        num(s.max),
        row.floor?.name ?? '—',
        row.floor ? `${num(row.floor.stats.p50)}${u}` : '—',
        Number.isFinite(ratio(row)) ? `${num(ratio(row))}×` : '—',
        row.errors,
        row.target?.text ?? '',
        row.target ? (row.target.met ? 'yes' : '**no**') : '',
        row.note ?? '',
        '',
      ]
        .join(' | ')
        .trim(),
    );
  }
  for (const f of report.failures) lines.push('', `**Not measured** — ${f.section} ${f.name}: ${f.error}`);
  const judged = report.rows.filter((r) => r.target);
  if (judged.length > 0) {
    lines.push('', 'Targets:', '');
    for (const r of judged) {
      lines.push(
        `- ${r.target!.met ? 'met' : '**missed**'} — ${r.section} ${r.name} (${r.via}): ${r.target!.text} (p50 ${num(r.stats.p50)}, p99 ${num(r.stats.p99)} ${r.unit}, errors ${r.errors})`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
