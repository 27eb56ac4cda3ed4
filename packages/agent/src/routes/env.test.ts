import { envResponseSchema } from '@warren/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestAgent, type TestAgent } from '../test-helpers.ts';

let agent: TestAgent;
beforeAll(async () => {
  agent = await createTestAgent();
});
afterAll(() => agent.cleanup());

async function envOf(res: Response): Promise<Record<string, string>> {
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const parsed = envResponseSchema.parse(await res.json());
  expect(parsed.count).toBe(Object.keys(parsed.env_vars).length);
  return parsed.env_vars;
}

describe('/env', () => {
  it('starts empty', async () => {
    expect(await envOf(await agent.request('/env'))).toEqual({});
  });

  it('PUT replaces everything and returns the full set', async () => {
    await agent.json('PUT', '/env', { env_vars: { OLD: '1' } });
    expect(await envOf(await agent.json('PUT', '/env', { env_vars: { A: 'b', API_KEY: 'sk-secret' } }))).toEqual({
      A: 'b',
      API_KEY: 'sk-secret',
    });
  });

  it('PATCH merges and returns the full set, never masking values', async () => {
    const merged = await envOf(await agent.json('PATCH', '/env', { env_vars: { C: 'd', A: 'z' }, merge: true }));
    expect(merged).toEqual({ A: 'z', API_KEY: 'sk-secret', C: 'd' });
    expect(await envOf(await agent.request('/env'))).toEqual(merged);
  });

  it('supports the SDK delete composite (GET then PUT without the key)', async () => {
    const all = await envOf(await agent.request('/env'));
    delete all.C;
    expect(await envOf(await agent.json('PUT', '/env', { env_vars: all }))).toEqual({ A: 'z', API_KEY: 'sk-secret' });
  });

  it('applies to later commands', async () => {
    const res = await agent.json('POST', '/commands/run', { command: 'echo "$A $API_KEY"' });
    expect(await res.json()).toMatchObject({ stdout: 'z sk-secret\n' });
  });

  it('DELETE clears', async () => {
    const res = await agent.request('/env', { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ message: 'cleared' });
    expect(await envOf(await agent.request('/env'))).toEqual({});
  });

  it('validates bodies', async () => {
    for (const bad of [{}, { env_vars: { 'A=B': 'x' } }, { env_vars: { WARREN_X: 'x' } }, { env_vars: { A: null } }]) {
      const res = await agent.json('PUT', '/env', bad);
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'INVALID_REQUEST' });
    }
  });
});
