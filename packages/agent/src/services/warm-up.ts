import type { AgentConfig } from '../config.ts';
import type { CodeExecutor } from './code-executor.ts';
import { CommandRunner } from './command-runner.ts';
import type { EnvStore } from './env-store.ts';
import type { KernelStartOutcome } from './kernel.ts';
import type { ProcessManager } from './process-manager.ts';

/**
 * Python run in the kernel by the warm-up: output on both streams (discarded)
 * and no name bound, so the user's namespace stays as it was.
 */
export const KERNEL_WARM_UP_CODE = "print(end=' '); print(end=' ', file=__import__('sys').stderr)";

/** Seconds each warm-up run may take. */
const WARM_UP_TIMEOUT_SECONDS = 10;

/** What {@link warmUpRunPaths} uses: the agent's executor, and what a command runner needs. */
export interface WarmUpDeps {
  config: AgentConfig;
  envStore: EnvStore;
  processes: ProcessManager;
  executor: CodeExecutor;
  log: (line: string) => void;
}

/**
 * Runs the agent's own python (kernel), command and code-as-a-process paths
 * once, so that the first user request does not pay for compiling them. The
 * runs are not counted in the agent's stats (a command runner without stats,
 * the executor's `warmUp` option), the kernel run is kept out of its history
 * and execution count, and their results are dropped. The python run is
 * skipped unless the kernel started (`kernel`, the start's outcome). Never throws.
 */
export async function warmUpRunPaths(deps: WarmUpDeps, run: { kernel: KernelStartOutcome }): Promise<void> {
  const runs: Array<[string, () => Promise<unknown>]> = [
    [
      'python',
      () =>
        run.kernel === 'ready'
          ? deps.executor.execute(
              { language: 'python', code: KERNEL_WARM_UP_CODE, timeoutSeconds: WARM_UP_TIMEOUT_SECONDS },
              undefined,
              { warmUp: true },
            )
          : Promise.resolve(),
    ],
    [
      'command',
      () =>
        new CommandRunner({ config: deps.config, envStore: deps.envStore, processes: deps.processes }).run({
          command: 'true',
          timeoutSeconds: WARM_UP_TIMEOUT_SECONDS,
        }),
    ],
    [
      'code process',
      () =>
        deps.executor.execute({ language: 'bash', code: ':', timeoutSeconds: WARM_UP_TIMEOUT_SECONDS }, undefined, {
          warmUp: true,
        }),
    ],
  ];
  for (const [name, warm] of runs) {
    try {
      await warm();
    } catch (err) {
      deps.log(`agent: warm-up of the ${name} path failed: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
}
