/** Raw HTTP to a Warren server the way a client without an SDK talks to it (global fetch, keep-alive). */
export interface Api {
  baseURL: string;
  apiKey: string;
}

export interface Created {
  id: string;
  auth_token: string;
}

async function expectStatus(res: Response, status: number, what: string): Promise<unknown> {
  const text = await res.text();
  if (res.status !== status) throw new Error(`${what}: HTTP ${res.status} ${text.slice(0, 300)}`);
  return text === '' ? undefined : (JSON.parse(text) as unknown);
}

/** `POST /v1/sandboxes`. @throws Error on anything but 201. */
export async function createSandbox(api: Api, template: string): Promise<Created> {
  const res = await fetch(`${api.baseURL}/v1/sandboxes`, {
    method: 'POST',
    headers: { 'x-api-key': api.apiKey, 'content-type': 'application/json' },
    body: JSON.stringify({ template_name: template }),
    signal: AbortSignal.timeout(120_000),
  });
  return (await expectStatus(res, 201, 'create')) as Created;
}

/** `GET /health` of the sandbox's agent through the gateway. @throws Error unless 200. */
export async function agentHealth(api: Api, sandbox: Created): Promise<void> {
  const res = await fetch(`${api.baseURL}/health`, {
    headers: { authorization: `Bearer ${sandbox.auth_token}` },
    signal: AbortSignal.timeout(30_000),
  });
  await expectStatus(res, 200, 'agent /health');
}

/** A sandbox agent call through the gateway with the sandbox token; returns the JSON answer. @throws unless 200. */
export async function agentJSON(
  api: Api,
  sandbox: Created,
  method: string,
  path: string,
  body?: unknown,
): Promise<unknown> {
  const res = await fetch(`${api.baseURL}${path}`, {
    method,
    headers: { authorization: `Bearer ${sandbox.auth_token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(60_000),
  });
  return expectStatus(res, 200, `${method} ${path}`);
}

/** `DELETE /v1/sandboxes/{id}`. @throws Error unless 200. */
export async function deleteSandbox(api: Api, id: string): Promise<void> {
  const res = await fetch(`${api.baseURL}/v1/sandboxes/${id}`, {
    method: 'DELETE',
    headers: { 'x-api-key': api.apiKey },
    signal: AbortSignal.timeout(120_000),
  });
  await expectStatus(res, 200, 'delete');
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(workers);
}

/** Polls `check` every 20 ms until it is true. @throws Error after `timeoutMs`. */
export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 300_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
