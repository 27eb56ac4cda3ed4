import type { Client } from '../../client.ts';

/** The template fields the CLI reads (PROTOCOL §7). */
export interface TemplateInfo {
  id: string;
  name: string;
  status: string;
  description?: string | null;
  is_public?: boolean | null;
  is_active?: boolean;
  build_id?: string | null;
  created_at?: string | null;
  updated_at?: string | null;
}

/** `GET /v1/templates/build/{id}/logs` (PROTOCOL §5.6). */
export interface BuildLogs {
  logs: string;
  offset: number;
  status: string;
  complete: boolean;
}

/** `GET /v1/templates/build/{id}/status` (PROTOCOL §5.6). */
export interface BuildStatus {
  build_id: string;
  template_id: string;
  status: string;
  progress: number;
  started_at: string;
  current_step?: string | null;
  completed_at?: string | null;
  error_message?: string | null;
  build_duration_ms?: number | null;
}

/** Build statuses after which nothing changes. */
export const TERMINAL_STATUSES = new Set(['active', 'success', 'failed', 'error']);

/** How often build status and logs are polled. */
export const POLL_MS = 1000;
/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A template by name or id. @throws APIError 404 */
export function resolveTemplate(client: Client, ref: string): Promise<TemplateInfo> {
  return client.request<TemplateInfo>('GET', `/v1/templates/${encodeURIComponent(ref)}`);
}

/**
 * Reads a build's log from offset 0: once, or (with `follow`) until the log
 * reports completion. Returns the last status seen.
 */
export async function followBuildLogs(
  client: Client,
  templateId: string,
  options: { follow: boolean; onLog: (text: string) => void; signal?: AbortSignal },
): Promise<string> {
  let offset = 0;
  for (;;) {
    const r = await client.request<BuildLogs>('GET', `/v1/templates/build/${encodeURIComponent(templateId)}/logs`, {
      query: { offset: String(offset) },
    });
    if (r.logs) options.onLog(r.logs);
    offset = r.offset;
    // A terminal status with text still arriving gets one more read.
    const finished = r.complete || (TERMINAL_STATUSES.has(r.status) && !r.logs);
    if (!options.follow || finished || options.signal?.aborted) return r.status;
    await sleep(POLL_MS);
  }
}
