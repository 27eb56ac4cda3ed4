import { requestOptions } from './client.ts';
import { CommandExitError, type CommandResult, UnsupportedError } from './errors.ts';
import { type AgentLink, secondsFromMs } from './internal/agent.ts';
import type { RequestOptions } from './internal/http.ts';
import { type OutputCallbacks, type OutputEvent, RunStream } from './internal/run-stream.ts';

export type { OutputEvent } from './internal/run-stream.ts';

/** Options of {@link Commands.run}. */
export interface CommandOptions extends RequestOptions {
  /** Working directory. @default '/workspace' */
  cwd?: string | undefined;
  /** Environment variables added for this command. */
  envs?: Record<string, string> | undefined;
  /** Time the command may run before it is killed, in milliseconds. @default 60000 */
  commandTimeoutMs?: number | undefined;
  /** Called with each stdout chunk as it arrives. */
  onStdout?: ((data: string) => void) | undefined;
  /** Called with each stderr chunk as it arrives. */
  onStderr?: ((data: string) => void) | undefined;
  /** When false, a non-zero exit resolves with the result instead of throwing {@link CommandExitError}. @default true */
  reject?: boolean | undefined;
  /**
   * Keep the command's stdin open for {@link CommandHandle.sendStdin} and
   * {@link CommandHandle.closeStdin}. Without it the command reads an empty stdin.
   * @default false
   */
  stdin?: boolean | undefined;
}

/**
 * A running command. Iterate it (`for await`) for stdout/stderr chunks as they
 * arrive; `await` it (or `wait()`) for the {@link CommandResult}. Leaving the
 * iteration early, `kill()`, or aborting `signal` ends the command.
 */
export class CommandHandle implements AsyncIterable<OutputEvent>, PromiseLike<CommandResult> {
  /** The command line as given. */
  readonly command: string;
  readonly #run: Promise<RunStream>;
  readonly #reject: boolean;
  readonly #stdin: boolean;
  #result: Promise<CommandResult> | undefined;

  /** @internal */
  constructor(command: string, run: Promise<RunStream>, reject: boolean, stdin = false) {
    this.command = command;
    this.#run = run;
    this.#reject = reject;
    this.#stdin = stdin;
    run.catch(() => undefined);
  }

  /**
   * Waits for the command to end.
   * @throws {CommandExitError} on a non-zero exit (unless `reject: false`), carrying the result.
   */
  wait(): Promise<CommandResult> {
    this.#result ??= this.#run.then(async (run) => {
      const result = await run.wait();
      if (this.#reject && result.exitCode !== 0) throw new CommandExitError(this.command, result);
      return result;
    });
    return this.#result;
  }

  // biome-ignore lint/suspicious/noThenProperty: awaiting the handle waits for the command, as with execa
  then<T1 = CommandResult, T2 = never>(
    onfulfilled?: ((value: CommandResult) => T1 | PromiseLike<T1>) | null,
    onrejected?: ((reason: unknown) => T2 | PromiseLike<T2>) | null,
  ): Promise<T1 | T2> {
    return this.wait().then(onfulfilled, onrejected);
  }

  /** Like `Promise.prototype.catch` on {@link CommandHandle.wait}. */
  catch<T = never>(onrejected?: ((reason: unknown) => T | PromiseLike<T>) | null): Promise<CommandResult | T> {
    return this.wait().catch(onrejected);
  }

  /** Like `Promise.prototype.finally` on {@link CommandHandle.wait}. */
  finally(onfinally?: (() => void) | null): Promise<CommandResult> {
    return this.wait().finally(onfinally);
  }

  /** Kills the command (its whole process group); `wait()` then reports `killed: true`. */
  async kill(): Promise<void> {
    (await this.#run).kill();
  }

  /**
   * Writes to the command's stdin (the command must have been started with `{ stdin: true }`).
   * @throws {UnsupportedError} when it was started without `stdin: true`.
   * @example
   * const sort = sandbox.commands.run('sort', { stdin: true });
   * await sort.sendStdin('b\na\n');
   * await sort.closeStdin();
   * console.log((await sort).stdout); // "a\nb\n"
   */
  async sendStdin(data: string): Promise<void> {
    this.#needStdin();
    await (await this.#run).sendStdin(data);
  }

  /** Closes the command's stdin, so a command reading it sees the end of its input. */
  async closeStdin(): Promise<void> {
    this.#needStdin();
    await (await this.#run).closeStdin();
  }

  #needStdin(): void {
    if (!this.#stdin) {
      throw new UnsupportedError('start the command with { stdin: true } to write to its stdin');
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<OutputEvent> {
    yield* await this.#run;
  }
}

/** Runs shell commands in the sandbox. */
export class Commands {
  readonly #agent: AgentLink;

  /** @internal */
  constructor(agent: AgentLink) {
    this.#agent = agent;
  }

  /**
   * Starts `cmd` with `bash -c` and streams its output.
   * @example
   * const { stdout } = await sandbox.commands.run('ls -la /workspace');
   * for await (const ev of sandbox.commands.run('make', { reject: false })) process.stdout.write(ev.data);
   */
  run(cmd: string, options: CommandOptions = {}): CommandHandle {
    const callbacks: OutputCallbacks = { onStdout: options.onStdout, onStderr: options.onStderr };
    const run = this.#agent
      .stream(
        '/commands/stream',
        [
          {
            type: 'command',
            command: '/bin/bash',
            args: ['-c', cmd],
            timeout: secondsFromMs(options.commandTimeoutMs ?? 60_000),
            ...(options.cwd === undefined ? {} : { workdir: options.cwd }),
            ...(options.envs === undefined ? {} : { env: options.envs }),
            ...(options.stdin ? { stdin: true } : {}),
          },
        ],
        { ...requestOptions(options), endOn: ['complete'] },
      )
      .then((frames) => new RunStream(frames, callbacks));
    return new CommandHandle(cmd, run, options.reject ?? true, options.stdin ?? false);
  }
}
