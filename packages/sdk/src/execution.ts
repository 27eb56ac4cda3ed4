import type { ExecuteResponse } from '@warren/protocol';

/** A language `runCode` runs. */
export type CodeLanguage = 'python' | 'javascript' | 'bash' | 'go';

/** One rich output of an execution (a display or the value of the last expression). */
export interface Result {
  /** Mime type that best represents it, e.g. `image/png`. */
  type: string;
  /** Base64 PNG. */
  png?: string;
  /** Base64 JPEG. */
  jpeg?: string;
  /** SVG markup. */
  svg?: string;
  /** HTML. */
  html?: string;
  /** Markdown. */
  markdown?: string;
  /** LaTeX. */
  latex?: string;
  /** JSON data. */
  json?: unknown;
  /** Plain-text representation. */
  text?: string;
  /** True for the value of the last expression (`execute_result`), false for displays. */
  isMainResult: boolean;
  /** Every mime type present, name to value. */
  raw: Record<string, unknown>;
}

/** The outcome of {@link Sandbox.runCode}. */
export interface Execution {
  /** True when the code ran to the end without an error (exit code 0). */
  success: boolean;
  /** Everything printed to stdout. */
  stdout: string;
  /** Everything printed to stderr (a traceback included). */
  stderr: string;
  /** 0 on success; 1 for an exception; 124 after a timeout. */
  exitCode: number;
  /** Repr of the last expression (python in the kernel), if any. */
  text: string | undefined;
  /** Rich outputs in the order they were produced. */
  results: Result[];
  /** `ExceptionName: message` when the code raised, or why it stopped. */
  error: string | undefined;
  /** True when the code ran past its timeout and was interrupted. */
  timedOut: boolean;
  /** Time the code ran, in milliseconds. */
  durationMs: number;
  /** The kernel's execution counter, when the code ran in the Jupyter kernel. */
  executionCount: number | undefined;
  /** True when stdout or stderr was cut at the agent's output limit. */
  truncated: boolean;
}

const mimeFields: ReadonlyArray<[string, keyof Result]> = [
  ['image/png', 'png'],
  ['image/jpeg', 'jpeg'],
  ['image/svg+xml', 'svg'],
  ['text/html', 'html'],
  ['text/markdown', 'markdown'],
  ['text/latex', 'latex'],
  ['application/json', 'json'],
  ['text/plain', 'text'],
];

function toResult(raw: unknown): Result | undefined {
  if (raw === null || typeof raw !== 'object') return undefined;
  const r = raw as { type?: unknown; data?: unknown; source?: unknown };
  const data = r.data !== null && typeof r.data === 'object' ? (r.data as Record<string, unknown>) : {};
  const out: Result = {
    type: typeof r.type === 'string' ? r.type : 'text/plain',
    isMainResult: r.source === 'execute_result',
    raw: data,
  };
  for (const [mime, field] of mimeFields) {
    const v = data[mime];
    if (v === undefined) continue;
    if (field === 'json') out.json = v;
    else if (typeof v === 'string') (out as unknown as Record<string, unknown>)[field] = v;
  }
  return out;
}

/** Turns the agent's `/execute` answer into an {@link Execution}. */
export function toExecution(r: ExecuteResponse): Execution {
  const results = r.rich_outputs.map(toResult).filter((x): x is Result => x !== undefined);
  // A plain (non-kernel) run reports rich fields without rich_outputs: keep them.
  if (results.length === 0) {
    const single: Result = { type: 'text/plain', isMainResult: false, raw: {} };
    if (r.png) Object.assign(single, { type: 'image/png', png: r.png });
    if (r.html) Object.assign(single, { html: r.html });
    if (r.svg) Object.assign(single, { svg: r.svg });
    if (r.markdown) Object.assign(single, { markdown: r.markdown });
    if (r.json) Object.assign(single, { json: r.json });
    if (r.png || r.html || r.svg || r.markdown || r.json) results.push(single);
  }
  return {
    success: r.success,
    stdout: r.stdout,
    stderr: r.stderr,
    exitCode: r.exit_code,
    text: r.result ?? undefined,
    results,
    error: r.error,
    timedOut: r.timed_out,
    durationMs: Math.round(r.execution_time * 1000),
    executionCount: r.execution_count,
    truncated: r.stdout_truncated || r.stderr_truncated,
  };
}
