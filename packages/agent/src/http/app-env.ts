import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Context } from 'hono';

/** Hono environment of the agent app: per-request variables set by middleware. */
export interface AppEnv {
  Variables: {
    /** Id echoed in the `X-Request-ID` header and in error bodies. */
    requestId: string;
  };
}

/** Request context of the agent app. */
export type AppContext = Context<AppEnv>;

/** Node's request behind a context on Node's server (http/node-server.ts); undefined in-process (`app.request()`). */
export function nodeRequest(c: AppContext): IncomingMessage | undefined {
  return (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
}

/** Node's response behind a context on Node's server (http/node-server.ts); undefined in-process (`app.request()`). */
export function nodeResponse(c: AppContext): ServerResponse | undefined {
  return (c.env as { outgoing?: ServerResponse } | undefined)?.outgoing;
}

/**
 * Sets `name` on the answer: on Node's response when there is one, where Hono
 * builds no web `Headers` (whose first use loads Node's undici, see
 * node-server.ts), else through Hono (`c.header`). Only for headers the
 * answer's own headers never carry: those are written over Node's.
 */
export function setAnswerHeader(c: AppContext, name: string, value: string): void {
  const outgoing = nodeResponse(c);
  if (outgoing !== undefined) outgoing.setHeader(name, value);
  else c.header(name, value);
}

/**
 * A request header as `c.req.header(name)` answers it (every value of the
 * name, joined with `, `), read from Node's raw headers when there are some:
 * `c.req.header` builds a web `Headers` of the whole request first, which
 * costs more than the rest of a small request's routing.
 *
 * @param name the header name in lower case.
 */
export function requestHeader(c: AppContext, name: string): string | undefined {
  const incoming = nodeRequest(c);
  if (incoming === undefined) return c.req.header(name);
  const raw = incoming.rawHeaders;
  let value: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = raw[i]!;
    if (key.length !== name.length || key.toLowerCase() !== name) continue;
    value = value === undefined ? raw[i + 1]! : `${value}, ${raw[i + 1]!}`;
  }
  return value;
}
