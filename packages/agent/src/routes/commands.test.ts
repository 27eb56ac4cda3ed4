import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type CommandResponse, commandResponseSchema } from '@warren/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, eventually, isAlive, type TestAgent } from '../test-helpers.ts';

let agent: TestAgent;
beforeAll(async () => {
  agent = await createTestAgent({ WARREN_TEMPLATE_ENV: JSON.stringify({ PATH: process.env.PATH ?? '' }) });
});
afterAll(() => agent.cleanup());

async function run(body: Record<string, unknown>): Promise<CommandResponse> {
  const res = await agent.json('POST', '/commands/run', body);
  expect(res.status).toBe(200);
  return commandResponseSchema.parse(await res.json());
}

describe('POST /commands/run', () => {
  it('runs the SDK form (command + args) via exec', async () => {
    const r = await run({
      command: 'bash',
      args: ['-c', 'echo hi | tr a-z A-Z'],
      timeout: 30,
      workdir: agent.workspace,
    });
    expect(r).toMatchObject({ success: true, stdout: 'HI\n', stderr: '', exit_code: 0, command: 'bash' });
    expect(r.pid).toBeGreaterThan(0);
  });

  it('answers 404 DIRECTORY_NOT_FOUND for a workdir that is missing, a file, or under a file', async () => {
    const file = join(agent.workspace, 'plain-file');
    await writeFile(file, 'x');
    for (const workdir of ['/no/such/dir', file, join(file, 'below')]) {
      const res = await agent.json('POST', '/commands/run', { command: 'pwd', workdir });
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ code: 'DIRECTORY_NOT_FOUND' });
    }
  });

  it('passes args verbatim, without another shell', async () => {
    const r = await run({ command: 'printf', args: ['%s|', 'a b', '$HOME', '*'] });
    expect(r.stdout).toBe('a b|$HOME|*|');
  });

  it('runs the plain form through /bin/sh -c', async () => {
    const r = await run({ command: 'echo hi | tr a-z A-Z' });
    expect(r).toMatchObject({ success: true, stdout: 'HI\n', command: 'echo hi | tr a-z A-Z' });
  });

  it('answers 200 with the exit code for failing commands', async () => {
    const r = await run({ command: 'bash', args: ['-c', 'echo oops >&2; exit 2'] });
    expect(r).toMatchObject({ success: false, exit_code: 2, stderr: 'oops\n' });
  });

  it('answers 200 with exit 127 for a missing executable', async () => {
    const r = await run({ command: 'warren-no-such-command', args: [] });
    expect(r).toMatchObject({ success: false, exit_code: 127 });
    expect(r.stderr).toContain('command not found');
  });

  it('honours working_dir and env', async () => {
    const r = await run({ command: 'pwd; echo $Z', working_dir: agent.scratch, env: { Z: '9' } });
    expect(r.stdout).toBe(`${agent.scratch}\n9\n`);
  });

  it('times out with exit 124 and kills the whole group', async () => {
    const pidFile = join(agent.scratch, 'cmd-grandchild.pid');
    const started = Date.now();
    const r = await run({ command: 'bash', args: ['-c', `sleep 300 & echo $! > ${pidFile}; wait`], timeout: 1 });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(r).toMatchObject({ success: false, exit_code: 124, timed_out: true });
    expect(r.stderr).toContain('timed out');
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    expect(await eventually(() => !isAlive(grandchild))).toBe(true);
  });

  it('validates the body', async () => {
    const res = await agent.json('POST', '/commands/run', { args: ['x'] });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; error: string };
    expect(body.code).toBe('INVALID_REQUEST');
    expect(body.error).toContain('command');
  });
});
