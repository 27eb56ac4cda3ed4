import WebSocket from 'ws';

/** How a streamed command ended. */
export interface StreamedCommandResult {
  exitCode: number;
  timedOut: boolean;
  /** The agent's error frame, if it sent one (e.g. the command could not start). */
  error: string | undefined;
}

/**
 * Runs a command through the agent's `/commands/stream` WebSocket over its
 * unix socket, handing output to `onOutput` as it arrives (not at the end).
 * Aborting `signal` closes the socket, which makes the agent kill the
 * command's process group.
 * @throws Error when the agent cannot be reached or the stream ends without a result.
 */
export function streamAgentCommand(
  socketPath: string,
  token: string,
  request: { command: string; args?: string[]; timeoutSeconds: number; workdir: string },
  onOutput: (stream: 'stdout' | 'stderr', text: string) => void,
  signal: AbortSignal,
): Promise<StreamedCommandResult> {
  return new Promise((resolve, reject) => {
    signal.throwIfAborted();
    const ws = new WebSocket(`ws+unix://${socketPath}:/commands/stream`, {
      headers: { authorization: `Bearer ${token}` },
      maxPayload: 16 * 1024 * 1024,
    });
    let exitCode: number | undefined;
    let timedOut = false;
    let error: string | undefined;
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      ws.terminate();
      if (err) reject(err);
      else if (exitCode === undefined)
        reject(new Error(error ?? 'the agent ended the command stream without a result'));
      else resolve({ exitCode, timedOut, error });
    };
    const onAbort = () => finish(signal.reason instanceof Error ? signal.reason : new Error(String(signal.reason)));
    signal.addEventListener('abort', onAbort, { once: true });
    ws.on('open', () => {
      ws.send(
        JSON.stringify({
          type: 'command',
          command: request.command,
          args: request.args,
          timeout: request.timeoutSeconds,
          workdir: request.workdir,
        }),
      );
    });
    ws.on('message', (raw) => {
      let frame: { type?: string; data?: unknown; exit_code?: unknown; timed_out?: unknown; error?: unknown };
      try {
        frame = JSON.parse(raw.toString()) as typeof frame;
      } catch {
        return;
      }
      if ((frame.type === 'stdout' || frame.type === 'stderr') && typeof frame.data === 'string') {
        onOutput(frame.type, frame.data);
      } else if (frame.type === 'result') {
        exitCode = typeof frame.exit_code === 'number' ? frame.exit_code : -1;
        timedOut = frame.timed_out === true;
      } else if (frame.type === 'error' && typeof frame.error === 'string') {
        error = frame.error;
      } else if (frame.type === 'complete') {
        finish();
      }
    });
    ws.on('error', (err) => finish(err));
    ws.on('close', () => finish());
  });
}
