import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Sandbox } from '@hopx-ai/sdk';
import { agentHealth, createSandbox } from './api.ts';
import { timed } from './stats.ts';

/**
 * A stand-in for Warren that answers the official SDK's calls at once with
 * canned bodies (a sandbox to create and look up, an agent's `/health`,
 * `/commands/run`, `/execute`): timing `Sandbox.commands.run` or `runCode`
 * against it gives the SDK's own cost on this machine — axios, a new loopback
 * TCP connection per call, JSON both ways — with no sandbox behind it; the
 * bench's own HTTP client ({@link httpAloneCreateSamples}) likewise.
 */
export async function withTrivialServer<T>(fn: (sdk: { baseURL: string; apiKey: string }) => Promise<T>): Promise<T> {
  const now = () => new Date().toISOString();
  let baseURL = '';
  const answers: Record<string, () => unknown> = {
    'POST /v1/sandboxes': () => ({
      id: 'sbtrivial000000',
      status: 'running',
      auth_token: 'trivial.token.x',
      token_expires_at: new Date(Date.now() + 86_400_000).toISOString(), // the SDK refreshes below one hour
      public_host: baseURL,
    }),
    'GET /health': () => ({ status: 'healthy', agent: 'trivial', version: '0', uptime_seconds: 1 }),
    'GET /v1/sandboxes/sbtrivial000000': () => ({
      id: 'sbtrivial000000',
      status: 'running',
      template_name: 'base',
      public_host: baseURL,
    }),
    'POST /commands/run': () => ({
      success: true,
      stdout: '',
      stderr: '',
      exit_code: 0,
      execution_time: 0.001,
      command: 'bash',
      pid: 1,
      timestamp: now(),
    }),
    'POST /execute': () => ({
      success: true,
      stdout: '',
      stderr: '',
      exit_code: 0,
      execution_time: 0.001,
      language: 'python',
      result: '1',
      rich_outputs: [],
      timestamp: now(),
    }),
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    req.resume();
    req.on('end', () => {
      const key = `${req.method} ${(req.url ?? '').split('?')[0]}`;
      const answer = answers[key];
      const body = JSON.stringify(answer ? answer() : { error: 'not found', code: 'NOT_FOUND' });
      // Warren answers a create with 201, as Hopx does; the bench's raw client checks for it.
      res.writeHead(answer ? (key === 'POST /v1/sandboxes' ? 201 : 200) : 404, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
      });
      res.end(body);
    });
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  baseURL = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    return await fn({ baseURL, apiKey: 'trivial' });
  } finally {
    server.closeAllConnections();
    await new Promise<void>((ok) => server.close(() => ok()));
  }
}

/** `commands.run("true")` and `runCode("1")` through the SDK against {@link withTrivialServer}, `n` times each. */
export async function sdkAloneSamples(n: number): Promise<{ command: number[]; code: number[] }> {
  return withTrivialServer(async (sdk) => {
    const sb = await Sandbox.create({ template: 'base', ...sdk });
    const command: number[] = [];
    const code: number[] = [];
    for (let i = 0; i < n; i++) command.push(await timed(() => sb.commands.run('true')));
    for (let i = 0; i < n; i++) code.push(await timed(() => sb.runCode('1')));
    return { command, code };
  });
}

/**
 * Row 1's client alone: the bench's raw HTTP create (`POST /v1/sandboxes`) and
 * agent `/health` (global `fetch`, keep-alive) against {@link withTrivialServer},
 * `n` times, `gapMs` apart as the warm creates are (they wait for the pool's
 * refill): what the client and the loopback cost with no Warren behind them.
 */
export async function httpAloneCreateSamples(n: number, gapMs: number): Promise<number[]> {
  return withTrivialServer(async (api) => {
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      await new Promise((r) => setTimeout(r, gapMs));
      samples.push(
        await timed(async () => {
          const sb = await createSandbox(api, 'base');
          await agentHealth(api, sb);
        }),
      );
    }
    return samples;
  });
}
