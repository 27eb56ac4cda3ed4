import { mkdir } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { type EnvMap, rfc3339, terminalClientFrameSchema } from '@warren/protocol';
import type { RawData, WebSocket } from 'ws';
import type { AgentDeps } from '../deps.ts';
import { buildChildEnv } from '../services/child-env.ts';
import { findExecutable } from '../services/executable.ts';
import type { ManagedProcess } from '../services/process-manager.ts';
import { errorFrame, parseFrame } from './frames.ts';
import { PacedSender } from './paced-sender.ts';

/** How long a hung-up shell gets before its helper is killed. */
const HANGUP_GRACE_MS = 3000;
/** Input queued for the shell above which the socket stops being read. */
const INPUT_HIGH_WATER_BYTES = 1024 * 1024;
/** Time the helper gets to apply a resize before later input is written. */
const RESIZE_SETTLE_MS = 10;
/** Size of a new terminal until the client resizes it. */
const INITIAL_ROWS = 24;
const INITIAL_COLS = 80;

/**
 * `/terminal` (PROTOCOL §11.3): a login shell (bash, else sh) in the workdir
 * on a real PTY, with the sandbox's global env and `TERM=xterm-256color`.
 * The PTY comes from the static `warren-pty` helper: the agent writes input
 * to its stdin, reads the terminal from its stdout, and sends resizes as
 * "ROWS COLS" lines on its fd 3. Client frames: `{type:"input", data}`,
 * `{type:"resize", cols, rows}`. Server frames: `{type:"output", data}`
 * (paced), then `{type:"exit", code}` when the shell exits, and the socket closes.
 * Closing the socket hangs the terminal up.
 */
export function handleTerminal(ws: WebSocket, _req: unknown, deps: AgentDeps): void {
  // Frames that arrive while the shell is being started are kept and replayed.
  const early: RawData[] = [];
  const keep = (data: RawData) => early.push(data);
  ws.on('message', keep);
  void runTerminal(ws, deps, () => {
    ws.off('message', keep);
    return early;
  });
}

async function runTerminal(ws: WebSocket, deps: AgentDeps, takeEarly: () => RawData[]): Promise<void> {
  const { config } = deps;
  const env: EnvMap = {
    ...buildChildEnv({ template: config.templateEnv, global: deps.envStore.all() }),
    TERM: 'xterm-256color',
  };
  const shell = (await findExecutable('bash', env.PATH)) ?? '/bin/sh';
  await mkdir(config.workdir, { recursive: true }).catch(() => undefined);
  let proc: ManagedProcess | undefined;
  const sender = new PacedSender(ws, {
    onPressure: (paused) => (paused ? proc?.pauseOutput() : proc?.resumeOutput()),
  });
  const output = new StringDecoder('utf8');
  const end = deps.stats.beginExecution('terminal');
  proc = deps.processes.start({
    command: config.ptyHelperPath,
    args: ['-r', String(INITIAL_ROWS), '-c', String(INITIAL_COLS), '--', shell, '-l'],
    cwd: config.workdir,
    env,
    timeoutMs: 0,
    maxOutputBytes: 64 * 1024, // the helper's own diagnostics (stderr); the terminal is stdout
    stdin: 'pipe',
    controlPipe: true,
    onStdout: (chunk) => sender.sendData('output', output.write(chunk)),
  });
  const pty = proc;

  // Frames are applied in order: a resize reaches the helper (fd 3) before input sent after it (stdin).
  let applied: Promise<void> = Promise.resolve();
  const onFrame = (data: RawData) => {
    const parsed = terminalClientFrameSchema.safeParse(parseFrame(data));
    if (!parsed.success) return; // unknown frames are ignored, like the SDKs ignore ours
    const frame = parsed.data;
    applied = applied.then(async () => {
      if (frame.type === 'input') {
        pty.stdin?.write(frame.data);
        if ((pty.stdin?.writableLength ?? 0) > INPUT_HIGH_WATER_BYTES) {
          ws.pause();
          pty.stdin?.once('drain', () => ws.resume());
        }
        return;
      }
      await new Promise<void>((resolve) => {
        if (!pty.control?.write(`${frame.rows} ${frame.cols}\n`, () => resolve())) resolve();
      });
      await new Promise((resolve) => setTimeout(resolve, RESIZE_SETTLE_MS));
    });
  };
  for (const data of takeEarly()) onFrame(data);
  ws.on('message', onFrame);
  ws.once('close', () => {
    pty.resumeOutput();
    if (!pty.running) return;
    pty.stdin?.end(); // the helper hangs the shell up
    const timer = setTimeout(() => pty.killGroup('SIGKILL'), HANGUP_GRACE_MS);
    timer.unref();
    void pty.wait().then(() => clearTimeout(timer));
  });

  const result = await pty.wait();
  end();
  sender.sendData('output', output.end());
  if (result.spawnError !== undefined) {
    sender.send(errorFrame(new Error(`cannot start the terminal: ${result.spawnError}`), 'EXECUTION_FAILED'));
  } else if (result.exitCode >= 126 && result.stderr.trim() !== '') {
    deps.log(`agent: terminal helper: ${result.stderr.trim().slice(0, 500)}`);
  }
  await sender.finish({ type: 'exit', code: result.exitCode, timestamp: rfc3339() }, { reason: 'terminal exited' });
}
