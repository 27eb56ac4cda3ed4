import { Hono } from 'hono';
import type { AgentConfig } from './config.ts';
import type { AgentDeps } from './deps.ts';
import type { AppEnv } from './http/app-env.ts';
import { requireToken } from './http/auth.ts';
import { notFound, onError } from './http/errors.ts';
import { requestId } from './http/request-id.ts';
import { commandRoutes } from './routes/commands.ts';
import { envRoutes } from './routes/env.ts';
import { executeRoutes } from './routes/execute.ts';
import { fileRoutes } from './routes/files.ts';
import { healthRoutes } from './routes/health.ts';
import { CodeExecutor } from './services/code-executor.ts';
import { CommandRunner } from './services/command-runner.ts';
import { EnvStore } from './services/env-store.ts';
import { FileService } from './services/file-service.ts';
import { PathGuard } from './services/path-guard.ts';
import { ProcessManager } from './services/process-manager.ts';

/** Routes answered without a token. */
const PUBLIC_PATHS: ReadonlySet<string> = new Set(['/health']);

/** Options of {@link createApp}. */
export interface CreateAppOptions {
  /** Where unexpected errors are logged. @default console.error */
  log?: (line: string) => void;
  /** Process manager to start children with; pass one to kill them all on shutdown. @default a new one */
  processes?: ProcessManager;
}

/**
 * Builds the agent: services, auth, error handling and every route.
 * @example
 * const app = createApp(loadConfig(process.env));
 * const res = await app.request('/health');
 */
export function createApp(config: AgentConfig, options: CreateAppOptions = {}): Hono<AppEnv> {
  const log = options.log ?? ((line: string) => console.error(line));
  const envStore = new EnvStore();
  const processes = options.processes ?? new ProcessManager();
  const runDeps = { config, envStore, processes };
  const deps: AgentDeps = {
    config,
    startedAt: new Date(),
    envStore,
    processes,
    executor: new CodeExecutor(runDeps),
    commands: new CommandRunner(runDeps),
    files: new FileService({ guard: new PathGuard(config.fileRoots), maxReadBytes: config.maxBodyBytes }),
  };

  const app = new Hono<AppEnv>();
  app.onError(onError(log));
  app.notFound(notFound);
  app.use('*', requestId());
  const auth = requireToken({ key: config.tokenKey, sandboxId: config.sandboxId });
  app.use('*', (c, next) => (PUBLIC_PATHS.has(c.req.path) ? next() : auth(c, next)));

  app.route('/', healthRoutes(deps));
  app.route('/', executeRoutes(deps));
  app.route('/', commandRoutes(deps));
  app.route('/', fileRoutes(deps));
  app.route('/', envRoutes(deps));
  return app;
}
