import { createHmac, timingSafeEqual } from 'node:crypto';

/** Claims of a per-sandbox agent token (HS256 JWT). */
export interface SandboxTokenClaims {
  /** Sandbox id. */
  sid: string;
  /** Issued at, unix seconds. */
  iat: number;
  /** Expiry, unix seconds. */
  exp: number;
  /** Token id, unique per issue. */
  jti: string;
}

const HEADER = base64url(Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })));

function base64url(buf: Buffer): string {
  return buf.toString('base64url');
}

/**
 * Derives the key that signs one sandbox's tokens. The agent of that sandbox
 * holds only this key, so code inside a sandbox can never mint a token for
 * another sandbox.
 */
export function deriveSandboxKey(serverSecret: Buffer, sandboxId: string): Buffer {
  return createHmac('sha256', serverSecret).update(`warren-sandbox-token:${sandboxId}`).digest();
}

/** Signs claims into a compact HS256 JWT. */
export function signSandboxToken(key: Buffer, claims: SandboxTokenClaims): string {
  const payload = base64url(Buffer.from(JSON.stringify(claims)));
  const sig = base64url(createHmac('sha256', key).update(`${HEADER}.${payload}`).digest());
  return `${HEADER}.${payload}.${sig}`;
}

/** Reads the claims of a token without checking its signature (to pick the key). */
export function peekSandboxToken(token: string): SandboxTokenClaims | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== HEADER) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8')) as unknown;
    if (
      typeof claims === 'object' &&
      claims !== null &&
      typeof (claims as SandboxTokenClaims).sid === 'string' &&
      typeof (claims as SandboxTokenClaims).exp === 'number'
    ) {
      return claims as SandboxTokenClaims;
    }
  } catch {
    // not a token of ours
  }
  return undefined;
}

export type TokenCheck =
  | { ok: true; claims: SandboxTokenClaims }
  | { ok: false; reason: 'malformed' | 'bad_signature' | 'expired' | 'wrong_sandbox' };

/** Verifies signature, expiry and (when given) the sandbox the token must belong to. */
export function verifySandboxToken(
  key: Buffer,
  token: string,
  options: { sandboxId?: string; nowSeconds?: number } = {},
): TokenCheck {
  const claims = peekSandboxToken(token);
  if (!claims) return { ok: false, reason: 'malformed' };
  const [h, p, s] = token.split('.') as [string, string, string];
  const expected = createHmac('sha256', key).update(`${h}.${p}`).digest();
  const given = Buffer.from(s, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: 'bad_signature' };
  }
  if (options.sandboxId !== undefined && claims.sid !== options.sandboxId)
    return { ok: false, reason: 'wrong_sandbox' };
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (claims.exp <= now) return { ok: false, reason: 'expired' };
  return { ok: true, claims };
}

/**
 * Verifies tokens with one key per sandbox, remembering the tokens whose
 * signature checked out (at most `maxEntries`, oldest dropped first), so a
 * token used again costs a map lookup instead of two HMACs and a JSON parse.
 * Expiry and the sandbox are checked on every call.
 */
export class TokenVerifier {
  readonly #keyOf: (sandboxId: string) => Buffer;
  readonly #maxEntries: number;
  readonly #verified = new Map<string, SandboxTokenClaims>();

  constructor(keyOf: (sandboxId: string) => Buffer, maxEntries = 4096) {
    this.#keyOf = keyOf;
    this.#maxEntries = maxEntries;
  }

  /** Like {@link verifySandboxToken} with the key of `options.sandboxId`. */
  verify(token: string, options: { sandboxId: string; nowSeconds?: number }): TokenCheck {
    const known = this.#verified.get(token);
    if (known === undefined || known.sid !== options.sandboxId) {
      const check = verifySandboxToken(this.#keyOf(options.sandboxId), token, options);
      if (check.ok) {
        if (this.#verified.size >= this.#maxEntries) this.#verified.delete(this.#verified.keys().next().value!);
        this.#verified.set(token, check.claims);
      }
      return check;
    }
    const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
    if (known.exp <= now) {
      this.#verified.delete(token);
      return { ok: false, reason: 'expired' };
    }
    return { ok: true, claims: known };
  }
}
