import { ServiceError } from '@warren/protocol';
import { Hono } from 'hono';
import { HTTPException } from 'hono/http-exception';
import { describe, expect, it } from 'vitest';
import type { AppEnv } from './app-env.ts';
import { notFound, onError } from './errors.ts';
import { requestId } from './request-id.ts';

function appWith(logged: string[]): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.onError(onError((line) => logged.push(line)));
  app.notFound(notFound);
  app.use('*', requestId());
  app.get('/boom', () => {
    throw new Error('kaboom at /secret/place');
  });
  app.get('/conflict', () => {
    throw new ServiceError('FILE_ALREADY_EXISTS', 'File already exists: /w/a', { path: '/w/a' });
  });
  app.get('/http', () => {
    throw new HTTPException(413);
  });
  return app;
}

describe('onError', () => {
  it('answers unexpected exceptions with a 500 envelope without a stack, and logs them', async () => {
    const logged: string[] = [];
    const res = await appWith(logged).request('/boom');
    expect(res.status).toBe(500);
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
    const text = await res.text();
    expect(JSON.parse(text)).toMatchObject({ code: 'INTERNAL_ERROR', error: 'Internal error' });
    expect(text).not.toContain('kaboom');
    expect(text).not.toContain('at ');
    expect(logged.join('\n')).toContain('kaboom');
  });

  it('answers a ServiceError with its status, code and path', async () => {
    const res = await appWith([]).request('/conflict');
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ code: 'FILE_ALREADY_EXISTS', path: '/w/a' });
  });

  it('maps Hono HTTP exceptions onto agent codes', async () => {
    const res = await appWith([]).request('/http');
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ code: 'PAYLOAD_TOO_LARGE' });
  });

  it('answers unknown routes with NOT_FOUND', async () => {
    const res = await appWith([]).request('/missing', { method: 'POST' });
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ code: 'NOT_FOUND', error: 'Not found: POST /missing' });
  });
});
