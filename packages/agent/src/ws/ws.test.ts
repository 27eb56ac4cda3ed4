import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { buildPtyHelper, createTestAgent, type TestAgent } from '../test-helpers.ts';

let agent: TestAgent;
let address: string;
let helperDir: string;
let ptyHelper: string | undefined;

beforeAll(async () => {
  helperDir = await mkdtemp(join(tmpdir(), 'warren-pty-'));
  ptyHelper = buildPtyHelper(helperDir);
  agent = await createTestAgent({
    WARREN_TEMPLATE_ENV: JSON.stringify({ PATH: process.env.PATH ?? '' }),
    ...(ptyHelper ? { WARREN_AGENT_PTY_HELPER: ptyHelper } : {}),
  });
  address = await agent.listen();
});
afterAll(async () => {
  await agent.cleanup();
  await rm(helperDir, { recursive: true, force: true });
});

interface Frame {
  type: string;
  at: number;
  [key: string]: unknown;
}

/** A client socket that records every frame with its arrival time. */
class Client {
  readonly ws: WebSocket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<number>;
  #waiters: Array<() => void> = [];

  constructor(path: string, token = agent.token()) {
    this.ws = new WebSocket(`ws://${address}${path}`, { headers: { authorization: `Bearer ${token}` } });
    this.ws.on('message', (data) => {
      this.frames.push({ ...(JSON.parse(data.toString()) as Frame), at: performance.now() });
      for (const wake of this.#waiters.splice(0)) wake();
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code) => resolve(code)));
  }

  opened(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('error', reject);
    });
  }

  send(frame: unknown): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** Waits until some frame satisfies `match`. */
  async until(match: (f: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const found = this.frames.find(match);
      if (found) return found;
      if (Date.now() > end) throw new Error(`no matching frame; got ${JSON.stringify(this.frames).slice(0, 2000)}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 50);
      });
    }
  }

  text(type: string, key = 'data'): string {
    return this.frames
      .filter((f) => f.type === type)
      .map((f) => f[key] as string)
      .join('');
  }
}

/** Status line and body of a rejected upgrade. */
function rawUpgrade(path: string, headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const [host, port] = address.split(':');
    const socket = connect(Number(port), host);
    let data = '';
    socket.on('data', (b) => {
      data += b.toString();
    });
    socket.on('end', () => resolve(data));
    socket.on('error', reject);
    const lines = [
      `GET ${path} HTTP/1.1`,
      `Host: ${address}`,
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}

const wsHeaders = {
  Connection: 'Upgrade',
  Upgrade: 'websocket',
  'Sec-WebSocket-Version': '13',
  'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
};

describe('WebSocket upgrades', () => {
  it('answers 401 before upgrading without a valid token', async () => {
    const none = await rawUpgrade('/execute/stream', wsHeaders);
    expect(none).toMatch(/^HTTP\/1\.1 401 /);
    expect(JSON.parse(none.slice(none.indexOf('\r\n\r\n') + 4))).toMatchObject({ code: 'TOKEN_INVALID' });
    const other = await rawUpgrade('/terminal', {
      ...wsHeaders,
      Authorization: `Bearer ${agent.token({ sandboxId: 'sb-someone-else' })}`,
    });
    expect(other).toMatch(/^HTTP\/1\.1 401 /);
  });

  it('answers 404 for an unknown endpoint', async () => {
    const res = await rawUpgrade('/nope', { ...wsHeaders, Authorization: `Bearer ${agent.token()}` });
    expect(res).toMatch(/^HTTP\/1\.1 404 /);
  });
});

describe('/execute/stream', () => {
  it('streams stdout and stderr, then result and complete, paced at least 15 ms apart', async () => {
    const c = new Client('/execute/stream');
    await c.opened();
    c.send({
      type: 'execute',
      code: 'import sys, time\nfor i in range(3):\n    print("line", i)\n    time.sleep(0.05)\nprint("warn", file=sys.stderr)',
      language: 'python',
      timeout: 30,
      workdir: agent.workspace,
    });
    const complete = await c.until((f) => f.type === 'complete');
    expect(complete.success).toBe(true);
    expect(c.text('stdout')).toBe('line 0\nline 1\nline 2\n');
    expect(c.text('stderr')).toBe('warn\n');
    const result = c.frames.find((f) => f.type === 'result');
    expect(result).toMatchObject({ exit_code: 0, success: true });
    expect(c.frames[c.frames.length - 1]?.type).toBe('complete');
    for (let i = 1; i < c.frames.length; i++) {
      const gap = (c.frames[i]?.at ?? 0) - (c.frames[i - 1]?.at ?? 0);
      expect(gap).toBeGreaterThanOrEqual(10); // 15 ms sender spacing, minus timer jitter at the receiver
    }
    expect(await c.closed).toBe(1000);
  });

  it('reports a timeout with result, an EXECUTION_TIMEOUT error and complete', async () => {
    const c = new Client('/execute/stream');
    await c.opened();
    c.send({ type: 'execute', code: 'echo start; sleep 30', language: 'bash', timeout: 1 });
    await c.until((f) => f.type === 'complete');
    expect(c.text('stdout')).toBe('start\n');
    expect(c.frames.find((f) => f.type === 'result')).toMatchObject({ exit_code: 124, success: false });
    expect(c.frames.find((f) => f.type === 'error')).toMatchObject({ code: 'EXECUTION_TIMEOUT' });
    expect(c.frames.at(-1)).toMatchObject({ type: 'complete', success: false });
  });

  it('answers a bad first frame with error and complete', async () => {
    const c = new Client('/execute/stream');
    await c.opened();
    c.send({ type: 'execute', language: 'cobol', code: 'x' });
    await c.until((f) => f.type === 'complete');
    expect(c.frames.map((f) => f.type)).toEqual(['error', 'complete']);
    expect(c.frames[0]).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('merges a flood into few frames and pauses the producer instead of buffering it', async () => {
    const c = new Client('/execute/stream');
    await c.opened();
    c.send({ type: 'execute', code: 'head -c 3000000 /dev/zero | tr "\\0" x', language: 'bash', timeout: 60 });
    await c.until((f) => f.type === 'complete', 60_000);
    expect(c.text('stdout').length).toBe(3_000_000);
    const chunks = c.frames.filter((f) => f.type === 'stdout');
    expect(chunks.length).toBeLessThan(200);
    expect(Math.max(...chunks.map((f) => (f.data as string).length))).toBeLessThanOrEqual(64 * 1024);
  });

  it('kills the run when the client goes away', async () => {
    const pidFile = join(agent.scratch, 'stream.pid');
    const c = new Client('/execute/stream');
    await c.opened();
    c.send({ type: 'execute', code: `echo $$ > ${pidFile}; echo ready; sleep 300`, language: 'bash', timeout: 300 });
    await c.until((f) => f.type === 'stdout');
    c.ws.close();
    await expect.poll(() => agent.processes.size, { timeout: 5000 }).toBe(0);
  });
});

describe('/commands/stream', () => {
  it('runs command + args and a bare shell command', async () => {
    const c = new Client('/commands/stream');
    await c.opened();
    c.send({ type: 'command', command: 'bash', args: ['-c', 'echo "$A"; exit 3'], env: { A: 'x' }, timeout: 10 });
    await c.until((f) => f.type === 'complete');
    expect(c.text('stdout')).toBe('x\n');
    expect(c.frames.find((f) => f.type === 'result')).toMatchObject({ exit_code: 3 });

    const d = new Client('/commands/stream');
    await d.opened();
    d.send({ command: 'pwd | tr a-z A-Z', workdir: agent.scratch });
    await d.until((f) => f.type === 'complete');
    expect(d.text('stdout')).toBe(`${agent.scratch.toUpperCase()}\n`);
  });
});

describe('/commands/stream stdin', () => {
  it('feeds stdin frames (even ones sent before the command started) and ends input on stdin_close', async () => {
    const c = new Client('/commands/stream');
    await c.opened();
    c.send({ type: 'command', command: 'tr a-z A-Z', stdin: true, timeout: 10 });
    c.send({ type: 'stdin', data: 'hello ' });
    c.send({ type: 'stdin', data: 'stdin\n' });
    c.send({ type: 'stdin_close' });
    await c.until((f) => f.type === 'complete');
    expect(c.text('stdout')).toBe('HELLO STDIN\n');
    expect(c.frames.find((f) => f.type === 'result')).toMatchObject({ exit_code: 0 });

    // Without stdin: true, input frames are ignored and the command reads an empty stdin.
    const d = new Client('/commands/stream');
    await d.opened();
    d.send({ type: 'command', command: 'cat; echo done', timeout: 10 });
    d.send({ type: 'stdin', data: 'ignored\n' });
    await d.until((f) => f.type === 'complete');
    expect(d.text('stdout')).toBe('done\n');
  });
});

describe('/terminal', () => {
  it('runs an interactive login shell on a PTY: input, resize, exit', async (ctx) => {
    if (!ptyHelper) ctx.skip();
    const c = new Client('/terminal');
    await c.opened();
    c.send({ type: 'input', data: 'echo "hi $((40+2))"\n' });
    await c.until((f) => f.type === 'output' && c.text('output').includes('hi 42'));
    c.send({ type: 'resize', cols: 120, rows: 40 });
    c.send({ type: 'input', data: 'stty size; echo "term=$TERM pwd=$PWD"; tty\n' });
    // `tty` prints last; its line may arrive in a later frame than the others.
    await c.until(() => /term=xterm-256color pwd=\S+[\s\S]*\/dev\/pts\/\d+/.test(c.text('output')));
    const out = c.text('output');
    expect(out).toContain('40 120');
    expect(out).toContain(`pwd=${agent.workspace}`);
    expect(out).toMatch(/\/dev\/pts\/\d+/);
    c.send({ type: 'input', data: 'exit 7\n' });
    const exit = await c.until((f) => f.type === 'exit');
    expect(exit.code).toBe(7);
    expect(c.frames.at(-1)?.type).toBe('exit');
    expect(await c.closed).toBe(1000);
  });

  it('hangs the shell up when the client disconnects', async (ctx) => {
    if (!ptyHelper) ctx.skip();
    const c = new Client('/terminal');
    await c.opened();
    c.send({ type: 'input', data: 'echo ready\n' });
    await c.until(() => c.text('output').includes('ready'));
    const before = agent.processes.size;
    expect(before).toBeGreaterThan(0);
    c.ws.close();
    await expect.poll(() => agent.processes.size, { timeout: 5000 }).toBe(before - 1);
  });
});

describe('/files/watch', () => {
  it('reports created, modified, renamed and deleted entries, also in new directories', async () => {
    const root = join(agent.workspace, 'watched');
    await mkdir(root);
    const c = new Client('/files/watch');
    await c.opened();
    c.send({ action: 'watch', path: root });
    await new Promise((r) => setTimeout(r, 200)); // the watch is set up asynchronously
    const file = join(root, 'a.txt');
    await writeFile(file, 'one');
    await c.until((f) => f.type === 'change' && f.path === file && f.event === 'created');
    await writeFile(file, 'two');
    await c.until((f) => f.path === file && f.event === 'modified');
    await rename(file, join(root, 'b.txt'));
    const renamed = await c.until((f) => f.event === 'renamed');
    expect(renamed).toMatchObject({ path: join(root, 'b.txt'), old_path: file, is_dir: false });
    await mkdir(join(root, 'sub', 'deeper'), { recursive: true });
    await writeFile(join(root, 'sub', 'deeper', 'c.txt'), 'x');
    await c.until((f) => f.path === join(root, 'sub', 'deeper', 'c.txt') && f.event === 'created');
    await rm(join(root, 'b.txt'));
    await c.until((f) => f.path === join(root, 'b.txt') && f.event === 'deleted');
    expect(c.frames.every((f) => f.type === 'change')).toBe(true); // no ack frame
    c.ws.close();
  });

  it('refuses a path outside the allowed roots with an error frame', async () => {
    const c = new Client('/files/watch');
    await c.opened();
    c.send({ action: 'watch', path: agent.outside });
    expect(await c.until((f) => f.type === 'error')).toMatchObject({ code: 'PATH_NOT_ALLOWED' });
    c.ws.close();
  });
});

describe('port tunnel', () => {
  let echo: Server;
  let port: number;

  beforeAll(async () => {
    echo = createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    port = (echo.address() as { port: number }).port;
  });
  afterAll(() => new Promise((resolve) => echo.close(resolve)));

  function openTunnel(target: number, token = agent.token()) {
    const [host, agentPort] = address.split(':');
    const socket = connect(Number(agentPort), host);
    socket.write(
      `GET /_warren/tunnel?port=${target} HTTP/1.1\r\nHost: agent\r\nConnection: Upgrade\r\n` +
        `Upgrade: warren-tunnel\r\nAuthorization: Bearer ${token}\r\n\r\n`,
    );
    return socket;
  }

  it('answers 101 and pipes raw bytes to the port', async () => {
    const socket = openTunnel(port);
    let data = '';
    socket.on('data', (b) => {
      data += b.toString('latin1');
      if (data.includes('\r\n\r\n') && !data.includes('ping')) socket.write('ping\0pong');
    });
    await expect.poll(() => data, { timeout: 5000 }).toContain('ping\0pong');
    expect(data).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(data).toContain('Upgrade: warren-tunnel');
    socket.destroy();
  });

  it('answers 502 with the error envelope when nothing listens, 400 for a bad port, 401 without a token', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const free = (closed.address() as { port: number }).port;
    await new Promise((resolve) => closed.close(resolve));

    const read = (socket: ReturnType<typeof openTunnel>) =>
      new Promise<string>((resolve) => {
        let data = '';
        socket.on('data', (b) => {
          data += b.toString();
        });
        socket.on('close', () => resolve(data));
      });
    const refused = await read(openTunnel(free));
    expect(refused).toMatch(/^HTTP\/1\.1 502 /);
    expect(JSON.parse(refused.slice(refused.indexOf('\r\n\r\n') + 4))).toMatchObject({
      code: 'SANDBOX_UNAVAILABLE',
      details: { port: free, reason: 'ECONNREFUSED' },
    });
    expect(await read(openTunnel(70000))).toMatch(/^HTTP\/1\.1 400 /);
    expect(await read(openTunnel(port, 'garbage'))).toMatch(/^HTTP\/1\.1 401 /);
  });
});
