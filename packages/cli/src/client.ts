/** Options every verb shares. */
export interface GlobalOptions {
  url: string;
  apiKey?: string;
  debug?: boolean;
}

/** An error answer of the Warren API. */
export class CLIAPIError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | undefined;
  constructor(status: number, code: string, message: string, requestId: string | undefined) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

/** Calls the control plane (or an agent, with `token`) and returns the parsed JSON body. */
export async function call<T>(
  opts: GlobalOptions,
  method: string,
  path: string,
  body?: unknown,
  token?: { baseURL: string; token: string },
): Promise<T> {
  const base = token?.baseURL ?? opts.url;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token.token}`;
  else if (opts.apiKey) headers['x-api-key'] = opts.apiKey;
  const res = await fetch(`${base.replace(/\/$/, '')}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  const parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  if (!res.ok) {
    throw new CLIAPIError(
      res.status,
      String(parsed.code ?? 'UNKNOWN'),
      String(parsed.message ?? `HTTP ${res.status}`),
      res.headers.get('x-request-id') ?? undefined,
    );
  }
  return parsed as T;
}
