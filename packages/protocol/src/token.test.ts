import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deriveSandboxKey, signSandboxToken, TokenVerifier } from './token.ts';

const secret = randomBytes(32);
const keyOf = (sid: string) => deriveSandboxKey(secret, sid);
const now = 1_800_000_000;
const token = (sid: string, exp = now + 60, key = keyOf(sid)) =>
  signSandboxToken(key, { sid, iat: now, exp, jti: randomBytes(4).toString('hex') });

describe('TokenVerifier', () => {
  it('accepts a good token, also when it comes again from memory', () => {
    const v = new TokenVerifier(keyOf);
    const t = token('sb1');
    expect(v.verify(t, { sandboxId: 'sb1', nowSeconds: now })).toMatchObject({ ok: true, claims: { sid: 'sb1' } });
    expect(v.verify(t, { sandboxId: 'sb1', nowSeconds: now })).toMatchObject({ ok: true, claims: { sid: 'sb1' } });
  });

  it('rejects a remembered token for another sandbox, and once it has expired', () => {
    const v = new TokenVerifier(keyOf);
    const t = token('sb1', now + 10);
    expect(v.verify(t, { sandboxId: 'sb1', nowSeconds: now }).ok).toBe(true);
    expect(v.verify(t, { sandboxId: 'sb2', nowSeconds: now })).toEqual({ ok: false, reason: 'bad_signature' });
    expect(v.verify(t, { sandboxId: 'sb1', nowSeconds: now + 10 })).toEqual({ ok: false, reason: 'expired' });
    expect(v.verify(t, { sandboxId: 'sb1', nowSeconds: now + 11 })).toEqual({ ok: false, reason: 'expired' });
  });

  it('never remembers a bad token: a forged signature fails every time', () => {
    const v = new TokenVerifier(keyOf);
    const forged = token('sb1', now + 60, randomBytes(32));
    for (let i = 0; i < 2; i++) {
      expect(v.verify(forged, { sandboxId: 'sb1', nowSeconds: now })).toEqual({ ok: false, reason: 'bad_signature' });
    }
    expect(v.verify('not.a.token', { sandboxId: 'sb1', nowSeconds: now })).toEqual({ ok: false, reason: 'malformed' });
  });

  it('keeps at most maxEntries tokens and still verifies the dropped ones from scratch', () => {
    let derivations = 0;
    const v = new TokenVerifier((sid) => {
      derivations++;
      return keyOf(sid);
    }, 2);
    const [a, b, c] = [token('sb1'), token('sb1'), token('sb1')];
    for (const t of [a, b, c]) expect(v.verify(t, { sandboxId: 'sb1', nowSeconds: now }).ok).toBe(true);
    expect(derivations).toBe(3);
    expect(v.verify(c, { sandboxId: 'sb1', nowSeconds: now }).ok).toBe(true); // remembered
    expect(derivations).toBe(3);
    expect(v.verify(a, { sandboxId: 'sb1', nowSeconds: now }).ok).toBe(true); // dropped, verified again
    expect(derivations).toBe(4);
  });
});
