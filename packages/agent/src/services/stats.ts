/** Request durations kept for the average and p95. */
const DURATION_WINDOW = 1000;

/** What `/metrics/snapshot` reports about the agent's own work. */
export interface StatsSnapshot {
  requestsTotal: number;
  errorsTotal: number;
  executionsTotal: number;
  activeExecutions: number;
  executionsByKind: Record<string, number>;
  avgDurationMs: number;
  p95DurationMs: number;
  activeStreams: number;
  streamsTotal: number;
}

/**
 * Counters of the agent's requests, executions and WebSocket streams. Memory
 * is constant: durations are kept in a fixed ring.
 */
export class AgentStats {
  #requests = 0;
  #errors = 0;
  #executions = 0;
  #activeExecutions = 0;
  readonly #byKind = new Map<string, number>();
  readonly #durations = new Float64Array(DURATION_WINDOW);
  #durationCount = 0;
  #activeStreams = 0;
  #streams = 0;

  /** Counts one finished HTTP request; 4xx and 5xx answers count as errors. */
  recordRequest(status: number, durationMs: number): void {
    this.#requests++;
    if (status >= 400) this.#errors++;
    this.#durations[this.#durationCount % DURATION_WINDOW] = durationMs;
    this.#durationCount++;
  }

  /** Counts an execution (code, command, background, stream) as started; call the result when it ends. */
  beginExecution(kind: string): () => void {
    this.#executions++;
    this.#activeExecutions++;
    this.#byKind.set(kind, (this.#byKind.get(kind) ?? 0) + 1);
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#activeExecutions--;
    };
  }

  /** Counts a WebSocket stream as open; call the result when it closes. */
  beginStream(): () => void {
    this.#streams++;
    this.#activeStreams++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.#activeStreams--;
    };
  }

  get activeStreams(): number {
    return this.#activeStreams;
  }

  snapshot(): StatsSnapshot {
    const n = Math.min(this.#durationCount, DURATION_WINDOW);
    const window = Array.from(this.#durations.subarray(0, n)).sort((a, b) => a - b);
    const sum = window.reduce((a, b) => a + b, 0);
    return {
      requestsTotal: this.#requests,
      errorsTotal: this.#errors,
      executionsTotal: this.#executions,
      activeExecutions: this.#activeExecutions,
      executionsByKind: Object.fromEntries(this.#byKind),
      avgDurationMs: n === 0 ? 0 : round(sum / n),
      p95DurationMs: n === 0 ? 0 : round(window[Math.min(n - 1, Math.floor(n * 0.95))] ?? 0),
      activeStreams: this.#activeStreams,
      streamsTotal: this.#streams,
    };
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
