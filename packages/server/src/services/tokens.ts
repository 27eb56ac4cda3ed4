import { randomBytes } from 'node:crypto';
import {
  deriveSandboxKey,
  type SandboxTokenClaims,
  signSandboxToken,
  type TokenCheck,
  TokenVerifier,
} from '@warren/protocol';
import type { Store } from '../store/store.ts';

/** Issues and checks per-sandbox agent tokens (HS256 JWTs, one derived key per sandbox). */
export class TokenService {
  private readonly secret: Buffer;
  private readonly ttlSeconds: number;
  private readonly verifier = new TokenVerifier((sandboxId) => this.sandboxKey(sandboxId));

  constructor(store: Store, ttlSeconds: number) {
    let hex = store.getMeta('token_secret');
    if (hex === undefined) {
      hex = randomBytes(32).toString('hex');
      store.setMeta('token_secret', hex);
    }
    this.secret = Buffer.from(hex, 'hex');
    this.ttlSeconds = ttlSeconds;
  }

  /** The key a sandbox's agent verifies its tokens with. */
  sandboxKey(sandboxId: string): Buffer {
    return deriveSandboxKey(this.secret, sandboxId);
  }

  /** A new token; earlier tokens of the sandbox stay valid until their own expiry. */
  issue(sandboxId: string, ttlSeconds = this.ttlSeconds): { token: string; expiresAt: Date } {
    const iat = Math.floor(Date.now() / 1000);
    const claims: SandboxTokenClaims = {
      sid: sandboxId,
      iat,
      exp: iat + ttlSeconds,
      jti: randomBytes(8).toString('hex'),
    };
    return { token: signSandboxToken(this.sandboxKey(sandboxId), claims), expiresAt: new Date(claims.exp * 1000) };
  }

  verify(token: string, sandboxId: string): TokenCheck {
    return this.verifier.verify(token, { sandboxId });
  }
}
