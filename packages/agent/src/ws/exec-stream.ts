import { StringDecoder } from 'node:string_decoder';
import {
  commandStreamInputSchema,
  commandStreamStartSchema,
  type EnvMap,
  ErrorCode,
  executeStreamStartSchema,
  rfc3339,
  ServiceError,
} from '@warren/protocol';
import type { RawData, WebSocket } from 'ws';
import type { AgentDeps } from '../deps.ts';
import { parseWith } from '../http/body.ts';
import { prepareSource } from '../services/code-executor.ts';
import type { ManagedProcess } from '../services/process-manager.ts';
import { prepareRun, secondsOf, timeoutMsOf } from '../services/run-context.ts';
import { errorFrame, firstFrame, parseFrame } from './frames.ts';
import { PacedSender } from './paced-sender.ts';

/** Input frames kept while a stream's command is starting. */
const MAX_EARLY_INPUT_BYTES = 1024 * 1024;

/** Default timeout of a stream, in seconds (what the TS SDK sends). */
export const STREAM_DEFAULT_TIMEOUT_SECONDS = 60;

/** What a stream runs, worked out from its first frame. */
interface StreamLaunch {
  kind: string;
  command: string;
  args: readonly string[];
  cwd: string;
  env: EnvMap;
  timeoutMs: number;
  cleanup: () => Promise<void>;
  /** Open the child's stdin to the client's `stdin` / `stdin_close` frames. */
  stdin?: boolean;
}

/**
 * `/execute/stream` (PROTOCOL §11.2): the first frame is
 * `{type:"execute", code, language, timeout, workdir, env}`. The code runs as
 * a plain process (python included: streams never use the Jupyter kernel),
 * its output is sent as `stdout`/`stderr` frames, then `result`, an `error`
 * on timeout or start failure, and always `complete` last.
 */
export function handleExecuteStream(ws: WebSocket, _req: unknown, deps: AgentDeps): void {
  void runStream(ws, deps, async (raw) => {
    const params = parseWith(executeStreamStartSchema, raw);
    const ctx = await prepareRun(deps, params);
    const source = await prepareSource(params.language, params.code, ctx.env);
    return {
      kind: `stream_${params.language}`,
      command: source.launch.command,
      args: source.launch.args,
      cwd: ctx.cwd,
      // Unbuffered python, so prints arrive as they happen.
      env: { ...ctx.env, ...source.launch.env, PYTHONUNBUFFERED: '1' },
      timeoutMs: timeoutMsOf(params.timeoutSeconds, STREAM_DEFAULT_TIMEOUT_SECONDS),
      cleanup: source.cleanup,
    };
  });
}

/**
 * `/commands/stream`: the first frame is `{type:"command"|"execute", command,
 * args?, timeout?, workdir?, env?}`, run like `/commands/run` (`command` +
 * `args` via exec, a bare `command` through `/bin/sh -c`); the frames sent
 * back are those of `/execute/stream`.
 */
export function handleCommandStream(ws: WebSocket, _req: unknown, deps: AgentDeps): void {
  void runStream(ws, deps, async (raw) => {
    const params = parseWith(commandStreamStartSchema, raw);
    const ctx = await prepareRun(deps, params);
    const [command, args] =
      params.args === undefined ? ['/bin/sh', ['-c', params.command]] : [params.command, params.args];
    return {
      kind: 'stream_command',
      command,
      args,
      cwd: ctx.cwd,
      env: ctx.env,
      timeoutMs: timeoutMsOf(params.timeoutSeconds, STREAM_DEFAULT_TIMEOUT_SECONDS),
      cleanup: async () => undefined,
      stdin: params.stdin,
    };
  });
}

async function runStream(
  ws: WebSocket,
  deps: AgentDeps,
  prepare: (raw: unknown) => Promise<StreamLaunch>,
): Promise<void> {
  let proc: ManagedProcess | undefined;
  const sender = new PacedSender(ws, {
    onPressure: (paused) => (paused ? proc?.pauseOutput() : proc?.resumeOutput()),
  });
  const fail = async (err: unknown, code?: string) => {
    sender.send(errorFrame(err, code));
    await sender.finish({ type: 'complete', success: false, timestamp: rfc3339() });
  };

  // Frames after the first (stdin) may arrive before the command has started: keep them (bounded) until then.
  const early: RawData[] = [];
  let earlyBytes = 0;
  const collect = (data: RawData) => {
    const size = Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : (data as Buffer).byteLength;
    if (earlyBytes + size > MAX_EARLY_INPUT_BYTES) return;
    earlyBytes += size;
    early.push(data);
  };
  ws.on('message', collect);

  let launch: StreamLaunch;
  try {
    launch = await prepare(await firstFrame(ws));
  } catch (err) {
    ws.off('message', collect);
    if (!(err instanceof ServiceError)) {
      await fail(new ServiceError(ErrorCode.INVALID_REQUEST, (err as Error).message));
      return;
    }
    await fail(err);
    return;
  }

  const end = deps.stats.beginExecution(launch.kind);
  const stdout = new StringDecoder('utf8');
  const stderr = new StringDecoder('utf8');
  proc = deps.processes.start({
    command: launch.command,
    args: launch.args,
    cwd: launch.cwd,
    env: launch.env,
    timeoutMs: launch.timeoutMs,
    maxOutputBytes: 0, // everything goes to the socket, paced, with backpressure
    stdin: launch.stdin ? 'pipe' : 'ignore',
    onStdout: (chunk) => sender.sendData('stdout', stdout.write(chunk)),
    onStderr: (chunk) => sender.sendData('stderr', stderr.write(chunk)),
  });
  const running = proc;
  ws.off('message', collect);
  if (launch.stdin) {
    const input = (data: RawData) => {
      const parsed = commandStreamInputSchema.safeParse(parseFrame(data));
      if (!parsed.success || !running.stdin || running.stdin.destroyed) return;
      if (parsed.data.type === 'stdin') running.stdin.write(parsed.data.data);
      else running.stdin.end();
    };
    // The first early frame is the start frame; it is not an input frame and is ignored.
    for (const data of early) input(data);
    ws.on('message', input);
  }
  // A client that goes away ends the run.
  ws.once('close', () => {
    if (running.running) running.killGroup('SIGKILL');
    running.resumeOutput();
  });
  const result = await proc.wait();
  end();
  await launch.cleanup();
  sender.sendData('stdout', stdout.end());
  sender.sendData('stderr', stderr.end());
  const success = result.exitCode === 0 && !result.timedOut;
  sender.send({
    type: 'result',
    exit_code: result.exitCode,
    execution_time: secondsOf(result.durationMs),
    success,
    timed_out: result.timedOut,
    timestamp: rfc3339(),
  });
  if (result.timedOut) {
    sender.send(
      errorFrame(
        new ServiceError(ErrorCode.EXECUTION_TIMEOUT, `Execution timed out after ${launch.timeoutMs / 1000}s`),
      ),
    );
  } else if (result.spawnError !== undefined) {
    sender.send(errorFrame(new ServiceError(ErrorCode.EXECUTION_FAILED, result.spawnError)));
  }
  await sender.finish({ type: 'complete', success, timestamp: rfc3339() });
}
