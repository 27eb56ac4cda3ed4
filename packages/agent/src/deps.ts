import type { AgentConfig } from './config.ts';
import type { CodeExecutor } from './services/code-executor.ts';
import type { CommandRunner } from './services/command-runner.ts';
import type { EnvStore } from './services/env-store.ts';
import type { FileService } from './services/file-service.ts';
import type { ProcessManager } from './services/process-manager.ts';

/** Everything the routes use, built once per agent by `createApp`. */
export interface AgentDeps {
  config: AgentConfig;
  startedAt: Date;
  envStore: EnvStore;
  processes: ProcessManager;
  executor: CodeExecutor;
  commands: CommandRunner;
  files: FileService;
}
