/**
 * PROTOCOL.md §15: the conformance scenario of the official TS SDK 0.5.1,
 * steps 1–45 and 48–49 in order, one assertion (or more) per step, against a
 * real server and a real sandbox. (46–47, template builds, belong to the
 * template-build issue.)
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuthenticationError,
  FileNotFoundError,
  HopxError,
  Sandbox,
  SandboxExpiredError,
  type StreamMessage,
} from '@hopx-ai/sdk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const ctx = inject('warren');
const base = ctx.baseURL;
const apiKey = ctx.apiKey;
const opts = { baseURL: base, apiKey };

describe.sequential('PROTOCOL §15 conformance scenario (TS SDK 0.5.1)', () => {
  let sb: Sandbox;
  let bgId: string;
  let localDir: string;

  beforeAll(async () => {
    localDir = await mkdtemp(join(tmpdir(), 'warren-conf-'));
  });
  afterAll(async () => {
    await rm(localDir, { recursive: true, force: true });
    await sb?.kill().catch(() => undefined);
  });

  it('1 healthCheck', async () => {
    const health = (await Sandbox.healthCheck(base)) as { status: string };
    expect(health.status).toBe('healthy');
  });

  it('2 listTemplates', async () => {
    const templates = await Sandbox.listTemplates(opts);
    expect(templates.map((t) => t.name)).toContain('code-interpreter');
  });

  it('3 getTemplate', async () => {
    const t = await Sandbox.getTemplate('code-interpreter', opts);
    expect(t.displayName).toBeTruthy();
  });

  it('4 create with timeout and env vars', async () => {
    sb = await Sandbox.create({ template: 'code-interpreter', timeoutSeconds: 600, envVars: { FOO: 'bar' }, ...opts });
    expect(sb.sandboxId).toMatch(/^sb/);
  });

  it('5 getInfo', async () => {
    const info = await sb.getInfo();
    expect(info.status).toBe('running');
    expect(info.publicHost).toBe(base);
  });

  it('6 runCode python', async () => {
    const r = await sb.runCode("print('hi')");
    expect([r.stdout, r.exit_code, r.success]).toEqual(['hi\n', 0, true]);
  });

  it('7 runCode javascript with options', async () => {
    const r = await sb.runCode('console.log(1)', {
      language: 'javascript',
      timeout: 10,
      workingDir: '/tmp',
      env: { A: '1' },
    });
    expect(r.stdout).toBe('1\n');
  });

  it('8 files.write', async () => {
    await sb.files.write('/workspace/a.txt', 'hello');
    expect(await sb.files.exists('/workspace/a.txt')).toBe(true);
  });

  it('9 files.read', async () => {
    expect(await sb.files.read('/workspace/a.txt')).toBe('hello');
  });

  it('10 files.list', async () => {
    const entry = (await sb.files.list('/workspace')).find((e) => e.name === 'a.txt');
    expect(entry?.is_dir).toBe(false);
    expect(entry?.size).toBe(5);
  });

  it('11 files.exists with a space', async () => {
    expect(await sb.files.exists('/workspace/a b.txt')).toBe(false);
    expect(await sb.files.exists('/workspace/a.txt')).toBe(true);
  });

  it('12 files.writeBytes', async () => {
    await sb.files.writeBytes('/workspace/b.bin', Buffer.from([0, 1, 2, 255]), { mode: '0600' });
    expect(await sb.files.exists('/workspace/b.bin')).toBe(true);
  });

  it('13 files.readBytes', async () => {
    expect([...(await sb.files.readBytes('/workspace/b.bin'))]).toEqual([0, 1, 2, 255]);
  });

  it('14 files.upload', async () => {
    const local = join(localDir, 'up.txt');
    await writeFile(local, 'uploaded text');
    await sb.files.upload(local, '/workspace/up.txt');
    expect(await sb.files.read('/workspace/up.txt')).toBe('uploaded text');
  });

  it('15 files.mkdir', async () => {
    await sb.files.mkdir('/workspace/d');
    expect(await sb.files.exists('/workspace/d')).toBe(true);
  });

  it('16 files.remove', async () => {
    await sb.files.remove('/workspace/d');
    expect(await sb.files.exists('/workspace/d')).toBe(false);
  });

  it('17 commands.run with a pipe', async () => {
    const r = await sb.commands.run('echo hi | tr a-z A-Z');
    expect([r.stdout, r.exit_code]).toEqual(['HI\n', 0]);
  });

  it('18 commands.run with workingDir, timeout, env', async () => {
    const r = await sb.commands.run('pwd', { workingDir: '/tmp', timeout: 5, env: { Z: '9' } });
    expect(r.stdout).toBe('/tmp\n');
  });

  it('19 commands.run exit 3', async () => {
    const r = await sb.commands.run('exit 3');
    expect(r.exit_code).toBe(3);
  });

  it('20 commands.run in the background', async () => {
    const r = (await sb.commands.run('sleep 5', { background: true })) as unknown as { process_id: string };
    expect(r.process_id).toBeTruthy();
  });

  it('21 env.set', async () => {
    await sb.env.set('K', 'V');
    expect(await sb.env.get('K')).toBe('V');
  });

  it('22 env.get of a create-time variable', async () => {
    expect(await sb.env.get('FOO')).toBe('bar');
  });

  it('23 env.update', async () => {
    expect(await sb.env.update({ A: 'b' })).toMatchObject({ FOO: 'bar', K: 'V', A: 'b' });
  });

  it('24 global env reaches code', async () => {
    expect((await sb.runCode("import os;print(os.environ['K'])")).stdout).toBe('V\n');
  });

  it('25 env.delete', async () => {
    await sb.env.delete('K');
    expect(await sb.env.getAll()).not.toHaveProperty('K');
  });

  it('26 runCodeBackground', async () => {
    const bg = await sb.runCodeBackground('import time; time.sleep(30)', { name: 'sleeper' });
    expect(bg.status).toBe('running');
    bgId = bg.process_id;
    expect(bgId).toBeTruthy();
  });

  it('27 listProcesses', async () => {
    const p = (await sb.listProcesses()).find((x) => x.process_id === bgId);
    expect(p?.status).toBe('running');
  });

  it('28 killProcess', async () => {
    await sb.killProcess(bgId);
    const p = (await sb.listProcesses()).find((x) => x.process_id === bgId);
    expect(p?.status).toBe('killed');
  });

  it('29 runCodeStream', async () => {
    const messages: StreamMessage[] = [];
    for await (const m of sb.runCodeStream("print('hi')")) messages.push(m);
    const stdout = messages.filter((m) => m.type === 'stdout').map((m) => (m as { data: string }).data);
    expect(stdout.join('')).toBe('hi\n');
    const result = messages.find((m) => m.type === 'result') as { exit_code: number } | undefined;
    expect(result?.exit_code).toBe(0);
    expect(messages.at(-1)?.type).toBe('complete');
  });

  it('30 terminal: input, resize, exit', async () => {
    const ws = await sb.terminal.connect();
    let output = '';
    let exit: { code: number } | undefined;
    sb.terminal.sendInput(ws, 'echo hi\n');
    sb.terminal.resize(ws, 120, 40);
    let sentSize = false;
    let sentExit = false;
    for await (const m of sb.terminal.output(ws)) {
      if (m.type === 'output') output += (m as { data: string }).data;
      if (m.type === 'exit') {
        exit = m as unknown as { code: number };
        break;
      }
      if (!sentSize && output.includes('hi')) {
        sentSize = true;
        sb.terminal.sendInput(ws, 'stty size\n');
      }
      if (sentSize && !sentExit && output.includes('40 120')) {
        sentExit = true;
        sb.terminal.sendInput(ws, 'exit\n');
      }
    }
    ws.close();
    expect(output).toContain('hi');
    expect(output).toContain('40 120');
    expect(exit?.code).toBe(0);
  });

  it('31 watchFiles', async () => {
    const events: Array<{ path: string; event: string }> = [];
    const iterator = sb.watchFiles('/workspace')[Symbol.asyncIterator]();
    const first = iterator.next();
    await new Promise((r) => setTimeout(r, 500));
    await sb.files.write('/workspace/watched.txt', 'x');
    const deadline = Date.now() + 10_000;
    let next = first;
    while (Date.now() < deadline) {
      const r = await Promise.race([next, new Promise<null>((ok) => setTimeout(() => ok(null), 10_000))]);
      if (r === null || r.done) break;
      events.push(r.value as { path: string; event: string });
      if (events.some((e) => e.path === '/workspace/watched.txt')) break;
      next = iterator.next();
    }
    await iterator.return?.();
    expect(events.some((e) => e.path === '/workspace/watched.txt')).toBe(true);
  });

  it('32 getMetricsSnapshot', async () => {
    const m = (await sb.getMetricsSnapshot()) as unknown as Record<string, unknown>;
    expect(typeof m).toBe('object');
    expect(Object.keys(m).length).toBeGreaterThan(0);
  });

  it('33 getHealth / isHealthy', async () => {
    expect(((await sb.getHealth()) as { status: string }).status).toBe('healthy');
    expect(await sb.isHealthy()).toBe(true);
  });

  it('34 getAgentInfo', async () => {
    const info = (await sb.getAgentInfo()) as unknown as Record<string, unknown>;
    expect(info.vm_id).toBe(sb.sandboxId);
  });

  it('35 cache.stats / cache.clear', async () => {
    expect(typeof (await sb.cache.stats())).toBe('object');
    expect(typeof (await sb.cache.clear())).toBe('object');
  });

  it('36 listSystemProcesses / getJupyterSessions', async () => {
    expect(Array.isArray(await sb.listSystemProcesses())).toBe(true);
    expect((await sb.listSystemProcesses()).length).toBeGreaterThan(0);
    expect(Array.isArray(await sb.getJupyterSessions())).toBe(true);
  });

  it('37 getPreviewUrl throws HopxError for a local public_host', async () => {
    await expect(sb.getPreviewUrl(8080)).rejects.toBeInstanceOf(HopxError);
  });

  it('38 pause', async () => {
    await sb.pause();
    expect((await sb.getInfo()).status).toBe('paused');
  });

  it('39 resume', async () => {
    await sb.resume();
    expect((await sb.getInfo()).status).toBe('running');
    expect((await sb.runCode('print(2)')).stdout).toBe('2\n');
  });

  it('40 setTimeout', async () => {
    await sb.setTimeout(900);
    const expiry = await sb.getExpiryInfo();
    expect(expiry.hasTimeout).toBe(true);
    expect(expiry.timeToExpiry).toBeGreaterThan(880);
    expect(expiry.timeToExpiry).toBeLessThanOrEqual(900);
  });

  it('41 Sandbox.list with status and limit', async () => {
    const list = await Sandbox.list({ ...opts, status: 'running', limit: 10 });
    expect(list.map((s) => s.sandboxId)).toContain(sb.sandboxId);
  });

  it('42 Sandbox.iter', async () => {
    const seen: string[] = [];
    for await (const s of Sandbox.iter(opts)) seen.push(s.sandboxId);
    expect(seen).toContain(sb.sandboxId);
  });

  it('43 Sandbox.connect (also resumes a paused sandbox)', async () => {
    const sb2 = await Sandbox.connect(sb.sandboxId, apiKey, base);
    expect((await sb2.runCode('print(1)')).stdout).toBe('1\n');
    await sb.pause();
    const sb3 = await Sandbox.connect(sb.sandboxId, apiKey, base);
    expect((await sb3.getInfo()).status).toBe('running');
    expect((await sb3.runCode('print(3)')).stdout).toBe('3\n');
  });

  it('48 files.read of a missing file throws FileNotFoundError', async () => {
    await expect(sb.files.read('/workspace/missing')).rejects.toBeInstanceOf(FileNotFoundError);
  });

  it('49 a garbage token: 401, one refresh and retry, then AuthenticationError', async () => {
    const other = await Sandbox.connect(sb.sandboxId, apiKey, base);
    await other.getInfo();
    // The SDK keeps sending the token it was built with, even after a refresh (PROTOCOL §2.2).
    const client = (other as unknown as { agentClient: { client: { defaults: { headers: Record<string, unknown> } } } })
      .agentClient.client;
    client.defaults.headers.Authorization = 'Bearer garbage';
    await expect(other.runCode('print(1)')).rejects.toBeInstanceOf(AuthenticationError);
    // The real sandbox and its real token are unaffected.
    expect((await sb.runCode('print(4)')).stdout).toBe('4\n');
  });

  it('44 kill', async () => {
    await sb.kill();
    const list = await Sandbox.list(opts);
    expect(list.map((s) => s.sandboxId)).not.toContain(sb.sandboxId);
  });

  it('45 getInfo after kill throws SandboxExpiredError', async () => {
    await expect(sb.getInfo()).rejects.toBeInstanceOf(SandboxExpiredError);
  });
});
