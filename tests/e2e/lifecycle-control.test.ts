import { readFile } from 'node:fs/promises';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { agent, type CreatedSandbox, cp, createSandbox, deleteSandbox, sh } from './client.ts';
import { tracesAfterTeardown, tracesOf } from './leaks.ts';

const ctx = inject('warren');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads a file of the sandbox from the host side (its overlay upper layer), which works while it is paused. */
async function hostRead(sb: CreatedSandbox, path: string): Promise<string> {
  return readFile(`${ctx.dataDir}/sandboxes/${sb.id}/upper${path}`, 'utf8');
}

const COUNTER =
  "setsid bash -c 'i=0; while true; do i=$((i+1)); echo $i > /workspace/counter; sleep 0.05; done' >/dev/null 2>&1 < /dev/null & sleep 0.5";

describe('pause and resume', () => {
  const created: CreatedSandbox[] = [];
  afterAll(async () => {
    await Promise.all(created.map(deleteSandbox));
    for (const s of created) expect(await tracesAfterTeardown(s.id, ctx)).toEqual([]);
  });

  it('freezes processes, keeps files, answers agent calls with 409, and continues after resume', async () => {
    const sb = await createSandbox({ template_name: 'base' });
    created.push(sb);
    await sh(sb, 'echo before-pause > /workspace/kept.txt');
    await sh(sb, COUNTER);
    const running1 = Number(await hostRead(sb, '/workspace/counter'));
    await sleep(300);
    expect(Number(await hostRead(sb, '/workspace/counter'))).toBeGreaterThan(running1);

    const paused = await cp<{ status: string }>('POST', `/v1/sandboxes/${sb.id}/pause`);
    expect(paused.status).toBe(200);
    expect(paused.body.status).toBe('paused');
    const frozenAt = await hostRead(sb, '/workspace/counter');
    await sleep(1500);
    expect(await hostRead(sb, '/workspace/counter')).toBe(frozenAt);

    const call = await agent<{ code: string }>(sb, 'POST', '/commands/run', { command: 'echo hi' });
    expect(call.status).toBe(409);
    expect(call.body.code).toBe('SANDBOX_PAUSED');
    expect((await cp<{ status: string }>('GET', `/v1/sandboxes/${sb.id}`)).body.status).toBe('paused');
    const refreshed = await cp<{ auth_token: string }>('POST', `/v1/sandboxes/${sb.id}/token/refresh`);
    expect(refreshed.status).toBe(200);
    expect(refreshed.body.auth_token.length).toBeGreaterThan(20);
    // Pausing twice is harmless; stopping... is allowed only from running/paused (tested below).
    expect((await cp('POST', `/v1/sandboxes/${sb.id}/pause`)).status).toBe(200);

    const resumed = await cp<{ status: string }>('POST', `/v1/sandboxes/${sb.id}/resume`);
    expect(resumed.body.status).toBe('running');
    await sleep(500);
    expect(Number(await hostRead(sb, '/workspace/counter'))).toBeGreaterThan(Number(frozenAt));
    expect((await sh(sb, 'cat /workspace/kept.txt')).stdout).toBe('before-pause\n');
  });

  it('stop ends processes and keeps /workspace; start boots it again', async () => {
    const sb = await createSandbox({ template_name: 'base', env_vars: { KEPT_ENV: 'yes' } });
    created.push(sb);
    await sh(sb, 'echo keep-me > /workspace/keep.txt');
    await sh(sb, 'setsid sleep 1000 >/dev/null 2>&1 < /dev/null & sleep 0.2');
    expect((await sh(sb, 'pgrep -x sleep || true')).stdout.trim()).not.toBe('');

    const stopped = await cp<{ status: string }>('POST', `/v1/sandboxes/${sb.id}/stop`);
    expect(stopped.body.status).toBe('stopped');
    const during = await agent<{ code: string }>(sb, 'GET', '/info');
    expect(during.status).toBe(409);
    expect(during.body.code).toBe('SANDBOX_STOPPED');
    // No process of the sandbox is left on the host while it is stopped.
    const traces = await tracesOf(sb.id, ctx);
    expect(traces.filter((t) => t.startsWith('process') || t.startsWith('crun') || t.startsWith('cgroup'))).toEqual([]);
    expect((await cp('POST', `/v1/sandboxes/${sb.id}/pause`)).status).toBe(409);

    const started = await cp<{ status: string }>('POST', `/v1/sandboxes/${sb.id}/start`);
    expect(started.status).toBe(200);
    expect(started.body.status).toBe('running');
    expect((await sh(sb, 'cat /workspace/keep.txt')).stdout).toBe('keep-me\n');
    expect((await sh(sb, 'pgrep -x sleep || echo none')).stdout.trim()).toBe('none');
    expect((await sh(sb, 'echo $KEPT_ENV')).stdout).toBe('yes\n');
  });
});

describe('timeouts', () => {
  it('a sandbox created with timeout_seconds 3 is gone within 5 s', async () => {
    const t0 = Date.now();
    const sb = await createSandbox({ template_name: 'base', timeout_seconds: 3 });
    const info = await cp<{ expires_at: string; timeout_seconds: number }>('GET', `/v1/sandboxes/${sb.id}`);
    expect(info.body.timeout_seconds).toBe(3);
    expect(Math.abs(Date.parse(info.body.expires_at) - (t0 + 3000))).toBeLessThan(2000);
    let goneAt = 0;
    while (Date.now() - t0 < 8000) {
      if ((await cp('GET', `/v1/sandboxes/${sb.id}`)).status === 404) {
        goneAt = Date.now();
        break;
      }
      await sleep(100);
    }
    expect(goneAt).toBeGreaterThan(0);
    expect(goneAt - t0).toBeLessThan(5000);
    expect(await tracesAfterTeardown(sb.id, ctx)).toEqual([]);
  });

  it('PUT /timeout extends the expiry past the original one', async () => {
    const sb = await createSandbox({ template_name: 'base', timeout_seconds: 3 });
    try {
      const put = await cp<{ expires_at: string; timeout_seconds: number }>('PUT', `/v1/sandboxes/${sb.id}/timeout`, {
        timeout_seconds: 30,
      });
      expect(put.status).toBe(200);
      expect(put.body.timeout_seconds).toBe(30);
      const got = await cp<{ expires_at: string; timeout_seconds: number }>('GET', `/v1/sandboxes/${sb.id}`);
      expect(got.body.expires_at).toBe(put.body.expires_at);
      await sleep(4500);
      expect((await cp('GET', `/v1/sandboxes/${sb.id}`)).status).toBe(200);
      expect((await sh(sb, 'echo alive')).stdout).toBe('alive\n');
      expect((await cp('PUT', `/v1/sandboxes/${sb.id}/timeout`, { timeout_seconds: 0 })).status).toBe(400);
    } finally {
      await deleteSandbox(sb);
    }
  });

  it('no timeout means none', async () => {
    const sb = await createSandbox({ template_name: 'base' });
    try {
      const got = await cp<{ expires_at: string | null; timeout_seconds: number | null }>(
        'GET',
        `/v1/sandboxes/${sb.id}`,
      );
      expect(got.body.expires_at).toBeNull();
      expect(got.body.timeout_seconds).toBeNull();
    } finally {
      await deleteSandbox(sb);
    }
  });
});
