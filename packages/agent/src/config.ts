import { dirname, isAbsolute, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { normalizedReadyCheckSchema, type ReadyCheck, reservedEnvPrefix } from '@warren/protocol';
import { z } from 'zod';

/** Where the agent listens: a unix socket, or TCP for development and tests. */
export type ListenTarget =
  | { readonly kind: 'socket'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number };

/** The agent's configuration, parsed once from the environment. */
export interface AgentConfig {
  /** Id of the sandbox this agent serves; tokens for other sandboxes are refused. */
  readonly sandboxId: string;
  /** Per-sandbox key that signs agent tokens. */
  readonly tokenKey: Buffer;
  /** Socket or TCP address to listen on. */
  readonly listen: ListenTarget;
  /** Absolute, normalized roots the files API may touch. @default ['/workspace', '/tmp'] */
  readonly fileRoots: readonly string[];
  /** Default working directory of executions and commands. @default '/workspace' */
  readonly workdir: string;
  /** The template's start command, run once at agent start with no timeout. */
  readonly startCmd: string | null;
  /** Readiness check of the start command. */
  readonly readyCheck: ReadyCheck | null;
  /** Output kept per stream per execution; the rest is dropped. @default 4 MiB */
  readonly maxOutputBytes: number;
  /** Largest request body accepted. @default 64 MiB */
  readonly maxBodyBytes: number;
  /** Largest `/files/upload` body (streamed to disk, not held in memory). @default 4 GiB */
  readonly maxUploadBytes: number;
  /** Base environment of the template, applied below the global and request env. */
  readonly templateEnv: Readonly<Record<string, string>>;
  /** Output kept per stream per background process. @default 256 KiB */
  readonly backgroundOutputBytes: number;
  /** Finished background processes remembered by `/execute/processes`. @default 100 */
  readonly processHistory: number;
  /** The Jupyter kernel bridge script. @default kernel_bridge.py beside the agent */
  readonly kernelBridgePath: string;
  /** The static PTY helper behind `/terminal`. @default /.warren/bin/warren-pty */
  readonly ptyHelperPath: string;
  /**
   * The static exec helper that starts children with posix_spawn instead of a fork of the agent, or null when
   * every child is forked (`WARREN_AGENT_SPAWNER=direct`). @default /.warren/bin/warren-exec
   */
  readonly execHelperPath: string | null;
  /** cgroup v1 mount the metrics read (memory, cpuacct, pids, cpu). @default /sys/fs/cgroup */
  readonly cgroupRoot: string;
  /**
   * The runtime bundle is recording the agent's code cache (boot.ts): the
   * agent serves requests but starts neither the kernel nor the start command.
   */
  readonly recordingCodeCache: boolean;
}

/** kernel_bridge.py sits beside this module in the source tree and beside agent.mjs in the bundle. */
const DEFAULT_KERNEL_BRIDGE = join(dirname(fileURLToPath(import.meta.url)), 'kernel_bridge.py');

const MiB = 1024 * 1024;

const absolutePath = z
  .string()
  .refine((p) => isAbsolute(p), 'must be an absolute path')
  .transform((p) => stripTrailingSlash(normalize(p)));

const byteCount = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const templateEnvSchema = z
  .string()
  .transform((raw, ctx) => {
    try {
      return JSON.parse(raw) as unknown;
    } catch {
      ctx.issues.push({ code: 'custom', input: raw, message: 'must be a JSON object' });
      return z.NEVER;
    }
  })
  .pipe(z.record(z.string(), z.union([z.string(), z.number(), z.boolean()]).transform(String)))
  .transform((env) =>
    Object.fromEntries(
      Object.entries(env).filter(
        ([k, v]) => k !== '' && !k.includes('=') && !k.startsWith(reservedEnvPrefix) && !v.includes('\0'),
      ),
    ),
  );

const envSchema = z.object({
  WARREN_SANDBOX_ID: z.string({ error: 'is required' }).min(1, 'is required'),
  WARREN_AGENT_TOKEN_KEY: z
    .string({ error: 'is required' })
    .regex(/^(?:[0-9a-fA-F]{2})+$/, 'must be a non-empty even-length hex string'),
  WARREN_AGENT_SOCKET: absolutePath.optional(),
  WARREN_AGENT_HOST: z.string().default('127.0.0.1'),
  WARREN_AGENT_PORT: z.coerce.number().int().min(0).max(65535).default(7777),
  WARREN_AGENT_FILE_ROOTS: z
    .string()
    .default('/workspace:/tmp')
    .transform((s) => s.split(':').filter((p) => p !== ''))
    .pipe(z.array(absolutePath).min(1, 'must list at least one root')),
  WARREN_AGENT_WORKDIR: absolutePath.default('/workspace'),
  WARREN_AGENT_MAX_OUTPUT_BYTES: byteCount(4 * MiB),
  WARREN_AGENT_MAX_BODY_BYTES: byteCount(64 * MiB),
  WARREN_AGENT_MAX_UPLOAD_BYTES: byteCount(4096 * MiB),
  WARREN_TEMPLATE_ENV: templateEnvSchema.optional(),
  WARREN_START_CMD: z.string().optional(),
  WARREN_READY_CHECK: z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: 'custom', message: 'must be JSON' });
        return z.NEVER;
      }
    })
    .pipe(normalizedReadyCheckSchema)
    .optional(),
  WARREN_AGENT_BACKGROUND_OUTPUT_BYTES: byteCount(256 * 1024),
  WARREN_AGENT_PROCESS_HISTORY: z.coerce.number().int().min(1).max(10_000).default(100),
  WARREN_AGENT_KERNEL_BRIDGE: absolutePath.default(DEFAULT_KERNEL_BRIDGE),
  WARREN_AGENT_PTY_HELPER: absolutePath.default('/.warren/bin/warren-pty'),
  WARREN_AGENT_EXEC_HELPER: absolutePath.default('/.warren/bin/warren-exec'),
  WARREN_AGENT_SPAWNER: z.enum(['helper', 'direct'], { error: "must be 'helper' or 'direct'" }).default('helper'),
  WARREN_AGENT_CGROUP_ROOT: absolutePath.default('/sys/fs/cgroup'),
  WARREN_AGENT_CODE_CACHE_RECORD: z.string().optional(),
});

/** Thrown when the environment does not describe a valid configuration. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function stripTrailingSlash(p: string): string {
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

/**
 * Parses the agent's environment into a frozen config. Empty variables count as unset.
 * @throws {ConfigError} naming the first invalid variable.
 * @example const config = loadConfig(process.env);
 */
export function loadConfig(env: NodeJS.ProcessEnv | Record<string, string | undefined>): AgentConfig {
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const name = String(issue?.path[0] ?? 'environment');
    throw new ConfigError(`Invalid environment variable ${name}: ${issue?.message ?? 'invalid'}`);
  }
  const e = parsed.data;
  const listen: ListenTarget =
    e.WARREN_AGENT_SOCKET === undefined
      ? { kind: 'tcp', host: e.WARREN_AGENT_HOST, port: e.WARREN_AGENT_PORT }
      : { kind: 'socket', path: e.WARREN_AGENT_SOCKET };
  return Object.freeze({
    sandboxId: e.WARREN_SANDBOX_ID,
    tokenKey: Buffer.from(e.WARREN_AGENT_TOKEN_KEY, 'hex'),
    listen: Object.freeze(listen),
    fileRoots: Object.freeze([...new Set(e.WARREN_AGENT_FILE_ROOTS)]),
    workdir: e.WARREN_AGENT_WORKDIR,
    startCmd: e.WARREN_START_CMD ?? null,
    readyCheck: e.WARREN_READY_CHECK ?? null,
    maxOutputBytes: e.WARREN_AGENT_MAX_OUTPUT_BYTES,
    maxBodyBytes: e.WARREN_AGENT_MAX_BODY_BYTES,
    maxUploadBytes: e.WARREN_AGENT_MAX_UPLOAD_BYTES,
    templateEnv: Object.freeze({ ...(e.WARREN_TEMPLATE_ENV ?? {}) }),
    backgroundOutputBytes: e.WARREN_AGENT_BACKGROUND_OUTPUT_BYTES,
    processHistory: e.WARREN_AGENT_PROCESS_HISTORY,
    kernelBridgePath: e.WARREN_AGENT_KERNEL_BRIDGE,
    ptyHelperPath: e.WARREN_AGENT_PTY_HELPER,
    execHelperPath: e.WARREN_AGENT_SPAWNER === 'direct' ? null : e.WARREN_AGENT_EXEC_HELPER,
    cgroupRoot: e.WARREN_AGENT_CGROUP_ROOT,
    recordingCodeCache: e.WARREN_AGENT_CODE_CACHE_RECORD !== undefined,
  });
}
