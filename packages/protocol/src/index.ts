export { agentErrorBody, controlErrorBody, ErrorCode, errorStatus, rfc3339, ServiceError } from './errors.ts';
export type { SandboxTokenClaims, TokenCheck } from './token.ts';
export { deriveSandboxKey, peekSandboxToken, signSandboxToken, verifySandboxToken } from './token.ts';
