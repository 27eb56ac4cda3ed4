import { describe, expect, it } from 'vitest';
import type { Store } from '../store/store.ts';
import { isPreviewToken, PreviewService, type PreviewTarget, splitCookies } from './previews.ts';

function memoryStore(): Store {
  const meta = new Map<string, string>();
  return { getMeta: (k: string) => meta.get(k), setMeta: (k: string, v: string) => meta.set(k, v) } as unknown as Store;
}

const service = (domain?: string, store = memoryStore()) =>
  new PreviewService(store, { domain, publicHost: () => 'http://127.0.0.1:8080' });

describe('preview tokens', () => {
  it('verify what they were issued for, and expire', () => {
    const previews = service();
    const { token, expiresAt } = previews.issue('sbabc', 3000, 60);
    expect(isPreviewToken(token)).toBe(true);
    expect(expiresAt.getTime() - Date.now()).toBeGreaterThan(55_000);
    const check = previews.verify(token);
    expect(check).toEqual({
      ok: true,
      claims: { sid: 'sbabc', port: 3000, exp: Math.floor(expiresAt.getTime() / 1000) },
    });
    expect(previews.verify(token, Math.floor(expiresAt.getTime() / 1000))).toEqual({ ok: false, reason: 'expired' });
  });

  it('refuse tampering, other secrets and other shapes', () => {
    const store = memoryStore();
    const previews = service(undefined, store);
    const { token } = previews.issue('sbabc', 3000, 60);
    const [v, payload, sig] = token.split('.') as [string, string, string];
    const forged = Buffer.from(JSON.stringify({ sid: 'sbabc', port: 22, exp: 9_999_999_999 })).toString('base64url');
    expect(previews.verify(`${v}.${forged}.${sig}`).ok).toBe(false);
    expect(previews.verify(`${v}.${payload}.${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`).ok).toBe(false);
    expect(previews.verify(`${payload}.${sig}`).ok).toBe(false);
    expect(previews.verify('').ok).toBe(false);
    // The same store keeps the secret: a second service instance accepts the token, another store does not.
    expect(service(undefined, store).verify(token).ok).toBe(true);
    expect(service().verify(token).ok).toBe(false);
  });
});

describe('preview addressing', () => {
  it('reads the path form, strips the prefix and the token, keeps the rest of the query byte for byte', () => {
    const t = service().match('/sandboxes/sbx1/ports/8000/a/b?x=1&warren_preview_token=wpv1.a.b&y=a%20b+c', 'h');
    expect(t).toEqual<PreviewTarget>({
      sandboxId: 'sbx1',
      port: 8000,
      form: 'path',
      prefix: '/sandboxes/sbx1/ports/8000',
      forwardPath: '/a/b?x=1&y=a%20b+c',
      queryToken: 'wpv1.a.b',
      bare: false,
    });
    expect(service().match('/sandboxes/sbx1/ports/8000', undefined)).toMatchObject({ bare: true, forwardPath: '/' });
    expect(service().match('/sandboxes/sbx1/ports/8000?warren_preview_token=t', undefined)).toMatchObject({
      bare: true,
      forwardPath: '/',
      queryToken: 't',
    });
    expect(service().match('/sandboxes/sbx1/ports/8000/', undefined)).toMatchObject({ bare: false, forwardPath: '/' });
  });

  it('reports bad ports and ignores other paths', () => {
    for (const p of ['0', '65536', 'http', '', '123456'])
      expect(service().match(`/sandboxes/sbx1/ports/${p}/`, undefined)).toEqual({ badPort: p });
    expect(service().match('/sandboxes/sbx1', undefined)).toBeUndefined();
    expect(service().match('/v1/sandboxes/sbx1/ports/80/', undefined)).toBeUndefined();
    expect(service().match('/execute', undefined)).toBeUndefined();
  });

  it('reads the host form only when a domain is configured, with the path unchanged', () => {
    const withDomain = service('warren.localhost');
    expect(withDomain.match('/x?q=1&warren_preview_token=tok', '8080-sbx1.Warren.Localhost:9000')).toEqual({
      sandboxId: 'sbx1',
      port: 8080,
      form: 'host',
      prefix: '',
      forwardPath: '/x?q=1',
      queryToken: 'tok',
      bare: false,
    });
    expect(withDomain.match('/', '99999-sbx1.warren.localhost')).toEqual({ badPort: '99999' });
    expect(withDomain.match('/', 'warren.localhost')).toBeUndefined();
    expect(withDomain.match('/', 'sbx1.warren.localhost')).toBeUndefined();
    expect(withDomain.match('/', '8080-sbx1.evil.localhost')).toBeUndefined();
    expect(service().match('/', '8080-sbx1.warren.localhost')).toBeUndefined();
  });

  it('builds path- and host-form URLs and cookies', () => {
    const { token } = service().issue('sbx1', 3000, 60);
    expect(service().urls('sbx1', 3000)).toEqual({
      pathURL: 'http://127.0.0.1:8080/sandboxes/sbx1/ports/3000/',
      hostURL: undefined,
    });
    expect(service('warren.localhost').urls('sbx1', 3000, 'a+b')).toEqual({
      pathURL: 'http://127.0.0.1:8080/sandboxes/sbx1/ports/3000/?warren_preview_token=a%2Bb',
      hostURL: 'http://3000-sbx1.warren.localhost:8080/?warren_preview_token=a%2Bb',
    });
    const target = service().match('/sandboxes/sbx1/ports/3000/', undefined) as PreviewTarget;
    const exp = Math.floor(Date.now() / 1000) + 60;
    expect(service().cookie(target, token, exp, false)).toMatch(
      new RegExp(`^warren_preview=${token}; Path=/sandboxes/sbx1/ports/3000; Max-Age=(59|60); HttpOnly; SameSite=Lax$`),
    );
    const hostTarget = service('d.test').match('/', '3000-sbx1.d.test') as PreviewTarget;
    expect(service('d.test').cookie(hostTarget, token, exp, true)).toMatch(/; Path=\/; .*; Secure$/);
  });

  it('splits our cookie from the others', () => {
    expect(splitCookies('a=1; warren_preview=x; b=2;warren_preview=y', 'warren_preview')).toEqual({
      values: ['x', 'y'],
      rest: 'a=1; b=2',
    });
    expect(splitCookies('warren_preview=x', 'warren_preview')).toEqual({ values: ['x'], rest: undefined });
    expect(splitCookies(undefined, 'warren_preview')).toEqual({ values: [], rest: undefined });
  });
});
