import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ExecuteResponse, executeResponseSchema } from '@warren/protocol';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createTestAgent, eventually, isAlive, type TestAgent } from '../test-helpers.ts';

let agent: TestAgent;
beforeAll(async () => {
  agent = await createTestAgent({
    WARREN_TEMPLATE_ENV: JSON.stringify({ FROM_TEMPLATE: 't', LAYER: 'template', PATH: process.env.PATH ?? '' }),
    WARREN_AGENT_MAX_OUTPUT_BYTES: '4096',
  });
});
afterAll(() => agent.cleanup());

async function execute(body: Record<string, unknown>): Promise<ExecuteResponse> {
  const res = await agent.json('POST', '/execute', body);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  return executeResponseSchema.parse(await res.json());
}

describe('POST /execute', () => {
  it('runs python and returns the full result shape', async () => {
    const r = await execute({ code: 'import sys\nprint("hi")\nprint("warn", file=sys.stderr)', language: 'python' });
    expect(r).toMatchObject({ success: true, stdout: 'hi\n', stderr: 'warn\n', exit_code: 0, language: 'python' });
    expect(r).toMatchObject({ png: null, html: null, json: null, svg: null, markdown: null, result: null });
    expect(r.rich_outputs).toEqual([]);
    expect(typeof r.execution_time).toBe('number');
    expect(r.timestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  it('defaults to python', async () => {
    expect((await execute({ code: 'print(6*7)' })).stdout).toBe('42\n');
  });

  it('runs javascript with CommonJS semantics', async () => {
    const r = await execute({
      code: 'const os = require("os"); console.log(1, typeof os.cpus)',
      language: 'javascript',
    });
    expect(r).toMatchObject({ success: true, stdout: '1 function\n', language: 'javascript' });
  });

  it.each([
    ['python3', 'print("p3")', 'p3\n', 'python'],
    ['js', 'console.log("js")', 'js\n', 'javascript'],
    ['node', 'console.log("node")', 'node\n', 'javascript'],
    ['nodejs', 'console.log("nodejs")', 'nodejs\n', 'javascript'],
    ['bash', 'echo "$((2+3))"', '5\n', 'bash'],
    ['sh', 'echo sh', 'sh\n', 'bash'],
    ['shell', 'echo shell', 'shell\n', 'bash'],
  ])('accepts the alias %s', async (language, code, stdout, canonical) => {
    expect(await execute({ code, language })).toMatchObject({ success: true, stdout, language: canonical });
  });

  it('reports failing user code as 200 with success:false', async () => {
    const r = await execute({ code: 'raise ValueError("boom")', language: 'python' });
    expect(r.success).toBe(false);
    expect(r.exit_code).toBe(1);
    expect(r.stderr).toContain('ValueError: boom');
    const b = await execute({ code: 'exit 7', language: 'bash' });
    expect(b).toMatchObject({ success: false, exit_code: 7 });
  });

  it('rejects an unsupported language with 400 INVALID_REQUEST', async () => {
    const res = await agent.json('POST', '/execute', { code: 'puts 1', language: 'ruby' });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; error: string };
    expect(body.code).toBe('INVALID_REQUEST');
    expect(body.error).toContain('ruby');
  });

  it('runs in the workdir (also spelled working_dir) and 404s a missing one', async () => {
    expect((await execute({ code: 'pwd', language: 'bash' })).stdout).toBe(`${agent.workspace}\n`);
    expect((await execute({ code: 'pwd', language: 'bash', workdir: agent.scratch })).stdout).toBe(
      `${agent.scratch}\n`,
    );
    expect((await execute({ code: 'pwd', language: 'bash', working_dir: agent.scratch })).stdout).toBe(
      `${agent.scratch}\n`,
    );
    const res = await agent.json('POST', '/execute', { code: 'pwd', language: 'bash', workdir: '/no/such/dir' });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'DIRECTORY_NOT_FOUND' });
  });

  it('times out with exit 124, kills the process group and says so', async () => {
    const pidFile = join(agent.scratch, 'exec-grandchild.pid');
    const started = Date.now();
    const r = await execute({
      code: `sleep 300 &\necho $! > ${pidFile}\necho started\nwait`,
      language: 'bash',
      timeout: 1,
    });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r).toMatchObject({ success: false, exit_code: 124, stdout: 'started\n', timed_out: true });
    expect(r.stderr).toContain('timed out');
    expect(r.error).toBe('Execution timed out after 1s');
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    expect(await eventually(() => !isAlive(grandchild))).toBe(true);
  });

  it('caps output per stream and flags truncation', async () => {
    const r = await execute({
      code: 'print("x" * 100000)\nimport sys\nsys.stderr.write("e" * 10)',
      language: 'python',
    });
    expect(r.success).toBe(true);
    expect(r.stdout).toBe('x'.repeat(4096));
    expect(r.stdout_truncated).toBe(true);
    expect(r.stderr).toBe('e'.repeat(10));
    expect(r.stderr_truncated).toBe(false);
  });

  it('layers env: base < template < global < request, and never leaks WARREN_*', async () => {
    process.env.WARREN_AGENT_TEST_LEAK = 'leak';
    try {
      const put = await agent.json('PUT', '/env', { env_vars: { LAYER: 'global', GLOBAL_ONLY: 'g', REQ: 'global' } });
      expect(put.status).toBe(200);
      const r = await execute({
        code: 'import os, json\nprint(json.dumps(dict(os.environ)))',
        env: { REQ: 'request', NUM: 5 },
      });
      const env = JSON.parse(r.stdout) as Record<string, string>;
      expect(env).toMatchObject({
        FROM_TEMPLATE: 't',
        LAYER: 'global',
        GLOBAL_ONLY: 'g',
        REQ: 'request',
        NUM: '5',
        HOME: '/root',
        LANG: 'C.UTF-8',
      });
      expect(Object.keys(env).filter((k) => k.startsWith('WARREN_'))).toEqual([]);
    } finally {
      delete process.env.WARREN_AGENT_TEST_LEAK;
      await agent.request('/env', { method: 'DELETE' });
    }
  });

  it('refuses reserved WARREN_* names in request env', async () => {
    const res = await agent.json('POST', '/execute', { code: 'print(1)', env: { WARREN_AGENT_TOKEN_KEY: 'x' } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'INVALID_REQUEST' });
  });

  it('gives the code an empty stdin instead of hanging', async () => {
    const r = await execute({ code: 'read -r line; echo "got:$line:$?"', language: 'bash', timeout: 5 });
    expect(r).toMatchObject({ stdout: 'got::1\n', timed_out: false });
  });

  it('removes its temp source directory afterwards', async () => {
    const r = await execute({ code: 'import os\nprint(os.path.dirname(os.path.abspath(__file__)))' });
    const dir = r.stdout.trim();
    expect(dir).toMatch(/warren-exec-/);
    const after = await execute({ code: `test -e ${dir} && echo present || echo gone`, language: 'bash' });
    expect(after.stdout).toBe('gone\n');
  });

  it('removes its temp source directory also when the run left files in it', async () => {
    const r = await execute({
      code: 'd="$(dirname "$0")"; mkdir -p "$d/sub/deeper"; touch "$d/a" "$d/sub/deeper/b"; echo "$d"',
      language: 'bash',
    });
    const dir = r.stdout.trim();
    expect(dir).toMatch(/warren-exec-/);
    const after = await execute({ code: `test -e ${dir} && echo present || echo gone`, language: 'bash' });
    expect(after.stdout).toBe('gone\n');
  });

  it('over HTTP, reads the body from the request itself (413 past the limit) and stops a run whose client left', async () => {
    // agent.request() goes through the web Request; a served agent reads and watches Node's request and response.
    const served = await createTestAgent({ WARREN_AGENT_MAX_BODY_BYTES: '1024' });
    onTestFinished(() => served.cleanup());
    const address = await served.listen();
    const post = (body: string | ReadableStream<Uint8Array>, signal?: AbortSignal) =>
      fetch(`http://${address}/execute`, {
        method: 'POST',
        headers: { authorization: `Bearer ${served.token()}`, 'content-type': 'application/json' },
        body,
        duplex: 'half',
        ...(signal ? { signal } : {}),
      } as RequestInit);
    const ok = await post(JSON.stringify({ code: 'print("served")' }));
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as ExecuteResponse).stdout).toBe('served\n');
    // Chunked, so only counting the bytes finds it too large.
    const big = new TextEncoder().encode(JSON.stringify({ code: `print(${'1'.repeat(4096)})` }));
    const tooBig = await post(
      new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(big.subarray(0, 512));
          controller.enqueue(big.subarray(512));
          controller.close();
        },
      }),
    );
    expect(tooBig.status).toBe(413);
    expect(((await tooBig.json()) as { code: string }).code).toBe('PAYLOAD_TOO_LARGE');

    const pidFile = join(served.scratch, 'left.pid');
    const controller = new AbortController();
    const run = post(
      JSON.stringify({
        code: `import os, time\nopen(${JSON.stringify(pidFile)}, "w").write(str(os.getpid()))\ntime.sleep(30)`,
      }),
      controller.signal,
    ).catch((err: unknown) => err);
    let pid = 0;
    expect(
      await eventually(() => {
        pid = Number(readFileSyncOrEmpty(pidFile));
        return pid > 0;
      }, 10_000),
    ).toBe(true);
    controller.abort();
    expect(await run).toBeInstanceOf(Error);
    expect(await eventually(() => !isAlive(pid), 5000)).toBe(true);
  });

  it('recreates a missing default workdir, and only that one', async () => {
    const fresh = await createTestAgent();
    onTestFinished(() => fresh.cleanup());
    await rm(fresh.workspace, { recursive: true });
    const res = await fresh.json('POST', '/execute', { code: 'import os; print(os.getcwd())' });
    expect(((await res.json()) as ExecuteResponse).stdout).toBe(`${fresh.workspace}\n`);
    const other = await fresh.json('POST', '/execute', { code: 'print(1)', workdir: join(fresh.base, 'nope') });
    expect(other.status).toBe(404);
  });

  it('builds go in the temp dir and runs the binary in the workdir', async () => {
    // A stand-in `go` (the host may have none): `go build -o OUT SRC` writes a script that reports where it runs.
    const bin = join(agent.base, 'fake-go-bin');
    await mkdir(bin);
    await writeFile(
      join(bin, 'go'),
      [
        '#!/bin/sh',
        '[ "$1" = build ] && [ "$2" = -o ] || { echo "unexpected: $*" >&2; exit 2; }',
        'grep -q COMPILE_ERROR "$4" && { echo "$4:1:1: syntax error" >&2; exit 1; }',
        `printf '#!/bin/sh\\necho "ran in $(pwd) from $(basename "$(pwd)" ) cache=%s"\\nexit 3\\n' "$GOCACHE" > "$3"`,
        'chmod +x "$3"',
      ].join('\n'),
      { mode: 0o755 },
    );
    const env = { PATH: `${bin}:${process.env.PATH ?? ''}`, HOME: agent.scratch };
    const ok = await execute({ code: 'package main\nfunc main() {}\n', language: 'go', env });
    expect(ok.language).toBe('go');
    expect(ok.stdout).toBe(
      `ran in ${agent.workspace} from workspace cache=${join(agent.scratch, '.cache', 'go-build')}\n`,
    );
    expect(ok.exit_code).toBe(3);
    const bad = await execute({ code: 'COMPILE_ERROR', language: 'golang', env });
    expect(bad).toMatchObject({ success: false, exit_code: 1, stdout: '' });
    expect(bad.stderr).toContain('syntax error');
  });
});

function readFileSyncOrEmpty(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}
