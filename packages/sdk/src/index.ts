export type { ConnectionOptions } from './client.ts';
export type { CommandOptions, OutputEvent } from './commands.ts';
export { CommandHandle, Commands } from './commands.ts';
export { Env } from './env.ts';
export type { APIErrorInit, CommandResult } from './errors.ts';
export {
  APIConnectionError,
  APIError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadRequestError,
  CommandExitError,
  ConflictError,
  FileNotFoundError,
  InternalServerError,
  InvalidResponseError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  SandboxNotFoundError,
  SandboxNotRunningError,
  StreamError,
  TemplateBuildError,
  TemplateNotFoundError,
  UnsupportedError,
  WarrenError,
} from './errors.ts';
export type { CodeLanguage, Execution, Result } from './execution.ts';
export type { FileChange, FileInfo, ReadOptions, WriteData } from './files.ts';
export { Files, FileWatch } from './files.ts';
export type { Fetch, RequestOptions } from './internal/http.ts';
export type { PtyOptions, PtySize } from './pty.ts';
export { Pty, PtyApi } from './pty.ts';
export type {
  RunCodeOptions,
  RunCodeStreamOptions,
  SandboxCreateOptions,
  SandboxInfo,
  SandboxListOptions,
  SandboxResources,
} from './sandbox.ts';
export { CodeRun, Sandbox } from './sandbox.ts';
export type { BuildEvent, BuildOptions, ReadyCheck, TemplateInfo } from './template.ts';
export { Template, TemplateBuild, waitForCommand, waitForPort, waitForURL } from './template.ts';
