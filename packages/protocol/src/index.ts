export type {
  CommandParams,
  CommandResponse,
  EnvMap,
  EnvResponse,
  EnvUpdateParams,
  ExecuteLanguage,
  ExecuteParams,
  ExecuteResponse,
  FileEntry,
  FileListResponse,
  FileReadResponse,
  FileWriteParams,
  HealthResponse,
} from './agent.ts';
export {
  commandRequestSchema,
  commandResponseSchema,
  envMapSchema,
  envResponseSchema,
  envUpdateRequestSchema,
  executeLanguages,
  executeRequestSchema,
  executeResponseSchema,
  fileEntrySchema,
  fileListQuerySchema,
  fileListResponseSchema,
  filePathQuerySchema,
  fileReadResponseSchema,
  fileWriteRequestSchema,
  healthResponseSchema,
  mkdirRequestSchema,
  reservedEnvPrefix,
  resolveExecuteLanguage,
  uploadFieldsSchema,
} from './agent.ts';
export { agentErrorBody, controlErrorBody, ErrorCode, errorStatus, rfc3339, ServiceError } from './errors.ts';
export type { SandboxTokenClaims, TokenCheck } from './token.ts';
export { deriveSandboxKey, peekSandboxToken, signSandboxToken, verifySandboxToken } from './token.ts';
