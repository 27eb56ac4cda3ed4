export type { Agent, CreateAppOptions } from './app.ts';
export { createAgent, createApp } from './app.ts';
export type { AgentConfig, ListenTarget } from './config.ts';
export { ConfigError, loadConfig } from './config.ts';
export type { AgentDeps } from './deps.ts';
export type { AppEnv } from './http/app-env.ts';
export { ProcessManager } from './services/process-manager.ts';
export { AGENT_NAME, AGENT_VERSION } from './version.ts';
