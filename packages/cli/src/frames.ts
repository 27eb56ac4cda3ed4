import type { RawData } from 'ws';

/** One JSON frame from an agent WebSocket; `undefined` for empty or non-JSON frames (skipped, like the SDKs do). */
export function parseFrame(data: RawData): Record<string, unknown> | undefined {
  const text = Array.isArray(data)
    ? Buffer.concat(data).toString('utf8')
    : Buffer.from(data as ArrayBuffer).toString('utf8');
  if (text.trim() === '') return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
