import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  backgroundStartResponseSchema,
  killResponseSchema,
  type ProcessInfo,
  processListResponseSchema,
  systemProcessSchema,
} from '@warren/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, eventually, groupPids, isAlive, type TestAgent } from '../test-helpers.ts';

let agent: TestAgent;

beforeAll(async () => {
  agent = await createTestAgent({
    WARREN_TEMPLATE_ENV: JSON.stringify({ PATH: process.env.PATH ?? '' }),
    WARREN_AGENT_BACKGROUND_OUTPUT_BYTES: '1000',
    WARREN_AGENT_PROCESS_HISTORY: '4',
  });
});
afterAll(() => agent.cleanup());

async function startCommand(command: string, extra: Record<string, unknown> = {}) {
  const res = await agent.json('POST', '/commands/background', {
    command: 'bash',
    args: ['-c', command],
    timeout: 120,
    workdir: agent.workspace,
    ...extra,
  });
  expect(res.status).toBe(200);
  return backgroundStartResponseSchema.parse(await res.json());
}

async function list(): Promise<ProcessInfo[]> {
  const res = await agent.request('/execute/processes');
  expect(res.status).toBe(200);
  return processListResponseSchema.parse(await res.json()).processes;
}

async function info(id: string): Promise<ProcessInfo | undefined> {
  return (await list()).find((p) => p.process_id === id);
}

async function waitForStatus(id: string, status: string): Promise<ProcessInfo> {
  for (let i = 0; i < 200; i++) {
    const p = await info(id);
    if (p?.status === status) return p;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`process ${id} never reached ${status}: ${JSON.stringify(await info(id))}`);
}

describe('background processes', () => {
  it('starts code in the background and lists it as running (python as a plain process)', async () => {
    const res = await agent.json('POST', '/execute/background', {
      code: 'import time\nprint("started", flush=True)\ntime.sleep(300)',
      language: 'python',
      timeout: 300,
      workdir: agent.workspace,
      name: 'sleeper',
    });
    expect(res.status).toBe(200);
    const started = backgroundStartResponseSchema.parse(await res.json());
    expect(started).toMatchObject({ status: 'running', name: 'sleeper', message: 'Background execution started' });
    expect(started.process_id).toMatch(/^proc_/);
    expect(started.execution_id).toMatch(/^exec_/);
    expect(groupPids(started.pid ?? -1)).toContain(started.pid);

    await expect.poll(async () => (await info(started.process_id))?.stdout).toBe('started\n');
    const listed = await info(started.process_id);
    expect(listed).toMatchObject({ status: 'running', language: 'python', kind: 'execute', exit_code: null });

    const killed = killResponseSchema.parse(
      await (await agent.request(`/execute/kill/${started.process_id}`, { method: 'POST' })).json(),
    );
    expect(killed).toMatchObject({ process_id: started.process_id, status: 'killed' });
    expect(await info(started.process_id)).toMatchObject({ status: 'killed', exit_code: 137 });
    expect(groupPids(started.pid ?? -1)).toEqual([]);
  });

  it.each([
    ['POST /execute/kill/{id}', (id: string) => agent.request(`/execute/kill/${id}`, { method: 'POST' })],
    [
      'DELETE /execute/kill?process_id=',
      (id: string) => agent.request(`/execute/kill?process_id=${id}`, { method: 'DELETE' }),
    ],
    ['POST /execute/kill {process_id}', (id: string) => agent.json('POST', '/execute/kill', { process_id: id })],
    ['DELETE /execute/kill {process_id}', (id: string) => agent.json('DELETE', '/execute/kill', { process_id: id })],
    ['POST /processes/{id}/kill', (id: string) => agent.request(`/processes/${id}/kill`, { method: 'POST' })],
  ])('kills the whole process group with %s', async (_form, kill) => {
    const pidFile = join(agent.scratch, `grandchild-${Math.random().toString(36).slice(2)}.pid`);
    // The grandchild ignores SIGTERM and SIGHUP: only a group SIGKILL ends it.
    const started = await startCommand(`trap '' TERM HUP; sleep 300 & echo $! > ${pidFile}; wait`);
    await expect.poll(() => readFile(pidFile, 'utf8').then(Number, () => 0)).toBeGreaterThan(0);
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    expect(groupPids(started.pid ?? -1).sort()).toEqual([started.pid, grandchild].sort());

    const res = await kill(started.process_id);
    expect(res.status).toBe(200);
    expect(killResponseSchema.parse(await res.json()).status).toBe('killed');
    expect(isAlive(grandchild)).toBe(false);
    expect(groupPids(started.pid ?? -1)).toEqual([]);
    expect(await info(started.process_id)).toMatchObject({ status: 'killed', kind: 'command', language: 'bash' });
  });

  it('kills what a finished leader left behind in its group, and answers 200 again', async () => {
    const pidFile = join(agent.scratch, 'orphan.pid');
    const started = await startCommand(`sleep 300 & echo $! > ${pidFile}`);
    const done = await waitForStatus(started.process_id, 'completed');
    expect(done.exit_code).toBe(0);
    const orphan = Number(await readFile(pidFile, 'utf8'));
    expect(isAlive(orphan)).toBe(true);

    const res = await agent.request(`/execute/kill/${started.process_id}`, { method: 'POST' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({
      status: 'completed',
      message: expect.stringContaining('already finished'),
    });
    expect(await eventually(() => !isAlive(orphan))).toBe(true);
    const again = await agent.request(`/execute/kill/${started.process_id}`, { method: 'POST' });
    expect(again.status).toBe(200);
  });

  it('answers 404 PROCESS_NOT_FOUND for an unknown id, and 400 without one', async () => {
    const res = await agent.request('/execute/kill/proc_nope', { method: 'POST' });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'PROCESS_NOT_FOUND' });
    const bare = await agent.json('POST', '/execute/kill', {});
    expect(bare.status).toBe(400);
  });

  it('reports failed and timed-out processes, and a timeout ends the whole group', async () => {
    const failed = await startCommand('echo oops >&2; exit 3');
    expect(await waitForStatus(failed.process_id, 'failed')).toMatchObject({ exit_code: 3, stderr: 'oops\n' });

    const pidFile = join(agent.scratch, 'timeout-grandchild.pid');
    const slow = await startCommand(`sleep 300 & echo $! > ${pidFile}; wait`, { timeout: 1 });
    const timedOut = await waitForStatus(slow.process_id, 'timeout');
    expect(timedOut.exit_code).toBe(124);
    expect(timedOut.duration).toBeGreaterThanOrEqual(0.9);
    const grandchild = Number(await readFile(pidFile, 'utf8'));
    expect(await eventually(() => !isAlive(grandchild))).toBe(true);
  });

  it('bounds kept output and remembers only the last finished processes', async () => {
    const flood = await startCommand('yes | head -c 100000; echo done >&2');
    const done = await waitForStatus(flood.process_id, 'completed');
    expect(done.stdout.length).toBe(1000);
    expect(done.stdout_truncated).toBe(true);
    expect(done.stderr).toBe('done\n');

    for (let i = 0; i < 5; i++) await waitForStatus((await startCommand('true')).process_id, 'completed');
    const finished = (await list()).filter((p) => p.status !== 'running');
    expect(finished.length).toBe(4);
    expect(finished.map((p) => p.process_id)).not.toContain(flood.process_id);
  });

  it('validates background bodies', async () => {
    const res = await agent.json('POST', '/execute/background', { language: 'python' });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'INVALID_REQUEST' });
  });
});

describe('GET /processes', () => {
  it('lists the processes of the machine from /proc, this one included', async () => {
    const res = await agent.request('/processes');
    expect(res.status).toBe(200);
    const body = (await res.json()) as { processes: unknown[]; count: number };
    const processes = body.processes.map((p) => systemProcessSchema.parse(p));
    expect(body.count).toBe(processes.length);
    const me = processes.find((p) => p.pid === process.pid);
    expect(me).toBeDefined();
    expect(me?.memory_mb).toBeGreaterThan(1);
    expect(me?.command).toContain('node');
    expect(me?.user).toBe(process.getuid?.() === 0 ? 'root' : expect.any(String));
  });
});
