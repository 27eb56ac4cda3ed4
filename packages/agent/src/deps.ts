import type { AgentConfig } from './config.ts';
import type { BackgroundJobs } from './services/background-jobs.ts';
import type { CodeExecutor } from './services/code-executor.ts';
import type { CommandRunner } from './services/command-runner.ts';
import type { EnvStore } from './services/env-store.ts';
import type { FileService } from './services/file-service.ts';
import type { KernelService } from './services/kernel.ts';
import type { SystemMetrics } from './services/metrics.ts';
import type { PathGuard } from './services/path-guard.ts';
import type { ProcessManager } from './services/process-manager.ts';
import type { StartCommand } from './services/start-command.ts';
import type { AgentStats } from './services/stats.ts';

/** Everything the routes and WebSocket endpoints use, built once per agent by `createAgent`. */
export interface AgentDeps {
  config: AgentConfig;
  startedAt: Date;
  envStore: EnvStore;
  processes: ProcessManager;
  executor: CodeExecutor;
  commands: CommandRunner;
  files: FileService;
  guard: PathGuard;
  kernel: KernelService;
  jobs: BackgroundJobs;
  startCommand: StartCommand;
  stats: AgentStats;
  metrics: SystemMetrics;
  log: (line: string) => void;
}
