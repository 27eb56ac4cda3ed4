import type { HTTPClient, RequestOptions } from './http.ts';
import { type Frame, FrameStream, wsURL } from './ws.ts';

/** What the sandbox's sub-APIs (commands, files, pty, env) use to reach its agent. */
export interface AgentLink {
  readonly sandboxId: string;
  /** HTTP client at the sandbox's `public_host` with its token. */
  readonly http: HTTPClient;
  /** Opens an agent WebSocket at `path`, sending `initial` frames once open. */
  stream(path: string, initial: Frame[], options: RequestOptions & { endOn?: readonly string[] }): Promise<FrameStream>;
}

/** Builds an {@link AgentLink} from the sandbox's host and a token source. */
export function agentLink(
  sandboxId: string,
  publicHost: string,
  http: HTTPClient,
  authHeaders: () => Promise<Record<string, string>>,
): AgentLink {
  return {
    sandboxId,
    http,
    async stream(path, initial, options) {
      const frames = new FrameStream({
        url: wsURL(publicHost, path),
        headers: await authHeaders(),
        initial,
        signal: options.signal,
        connectTimeoutMs: options.timeoutMs ?? http.timeoutMs,
        endOn: options.endOn,
      });
      await frames.opened();
      return frames;
    },
  };
}

/** Seconds for the agent from milliseconds, rounded up; `undefined` stays undefined. */
export function secondsFromMs(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : Math.max(1, Math.ceil(ms / 1000));
}
