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
