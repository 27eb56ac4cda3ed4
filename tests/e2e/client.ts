import { inject } from 'vitest';

/** A sandbox as the control plane returns it on create. */
export interface CreatedSandbox {
  id: string;
  public_host: string;
  auth_token: string;
  status: string;
  [key: string]: unknown;
}

export interface Reply<T = Record<string, unknown>> {
  status: number;
  body: T;
  headers: Headers;
}

function ctx() {
  return inject('warren');
}

async function reply<T>(res: Response): Promise<Reply<T>> {
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // keep text
  }
  return { status: res.status, body: body as T, headers: res.headers };
}

/** A control-plane request with the suite's API key. */
export async function cp<T = Record<string, unknown>>(
  method: string,
  path: string,
  body?: unknown,
  init: { headers?: Record<string, string>; raw?: string | Uint8Array } = {},
): Promise<Reply<T>> {
  const res = await fetch(`${ctx().baseURL}${path}`, {
    method,
    headers: { 'x-api-key': ctx().apiKey, 'content-type': 'application/json', ...init.headers },
    ...(init.raw !== undefined ? { body: init.raw } : body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return reply<T>(res);
}

/** Creates a sandbox and fails the test if that fails. */
export async function createSandbox(
  body: Record<string, unknown> = { template_name: 'base' },
): Promise<CreatedSandbox> {
  const r = await cp<CreatedSandbox>('POST', '/v1/sandboxes', body);
  if (r.status !== 201) throw new Error(`create failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

export async function deleteSandbox(sb: CreatedSandbox): Promise<void> {
  await cp('DELETE', `/v1/sandboxes/${sb.id}`);
}

/** An agent request through the sandbox's public_host with its token. */
export async function agent<T = Record<string, unknown>>(
  sb: CreatedSandbox,
  method: string,
  path: string,
  body?: unknown,
  init: { headers?: Record<string, string>; raw?: string | Uint8Array | FormData | Blob; token?: string | null } = {},
): Promise<Reply<T>> {
  const token = init.token === undefined ? sb.auth_token : init.token;
  const res = await fetch(`${sb.public_host}${path}`, {
    method,
    headers: {
      ...(token === null ? {} : { authorization: `Bearer ${token}` }),
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...init.headers,
    },
    ...(init.raw !== undefined ? { body: init.raw } : body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return reply<T>(res);
}

export interface CommandReply {
  stdout: string;
  stderr: string;
  exit_code: number;
  success: boolean;
}

/** Runs a shell command in the sandbox (bash -c, as the SDKs send it). */
export async function sh(sb: CreatedSandbox, command: string, timeout = 60): Promise<CommandReply> {
  const r = await agent<CommandReply>(sb, 'POST', '/commands/run', { command: 'bash', args: ['-c', command], timeout });
  if (r.status !== 200) throw new Error(`command failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Runs python code in the sandbox. */
export async function py(sb: CreatedSandbox, code: string, timeout = 60): Promise<CommandReply> {
  const r = await agent<CommandReply>(sb, 'POST', '/execute', { code, language: 'python', timeout });
  if (r.status !== 200) throw new Error(`execute failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
