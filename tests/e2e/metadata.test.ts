import { describe, expect, it } from 'vitest';
import { cp } from './client.ts';

describe('sandbox metadata', () => {
  it('is stored at create and returned by create, get and list; invalid metadata is refused', async () => {
    const created = await cp<{ id: string; metadata: Record<string, string> }>('POST', '/v1/sandboxes', {
      template_name: 'base',
      metadata: { team: 'search', run: '42' },
    });
    expect(created.status).toBe(201);
    try {
      expect(created.body.metadata).toEqual({ team: 'search', run: '42' });
      const got = await cp<{ metadata: Record<string, string> }>('GET', `/v1/sandboxes/${created.body.id}`);
      expect(got.body.metadata).toEqual({ team: 'search', run: '42' });
      const listed = await cp<{ data: Array<{ id: string; metadata: Record<string, string> }> }>(
        'GET',
        '/v1/sandboxes?limit=100',
      );
      expect(listed.body.data.find((s) => s.id === created.body.id)?.metadata).toEqual({ team: 'search', run: '42' });
    } finally {
      await cp('DELETE', `/v1/sandboxes/${created.body.id}`);
    }
    const tooMany = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
    for (const metadata of [{ k: 1 }, tooMany, { '': 'x' }, 'text']) {
      const bad = await cp<{ error: { code: string } }>('POST', '/v1/sandboxes', { template_name: 'base', metadata });
      expect(bad.status).toBe(400);
    }
  });
});
