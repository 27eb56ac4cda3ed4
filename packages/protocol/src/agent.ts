import { z } from 'zod';
import { lazySchema } from './lazy-schema.ts';

// Wire shapes of the in-sandbox agent API (PROTOCOL §8–§9). Request schemas
// parse the snake_case wire JSON and output camelCase parameters; response
// schemas describe the snake_case JSON the agent sends. Every schema is a
// lazySchema, built on first use: the agent's start imports this file.

/** Languages `POST /execute` runs, after alias resolution. */
export const executeLanguages = ['python', 'javascript', 'bash', 'go'] as const;

/** A language `POST /execute` runs. */
export type ExecuteLanguage = (typeof executeLanguages)[number];

const languageAliases: Readonly<Record<string, ExecuteLanguage>> = {
  python: 'python',
  python3: 'python',
  py: 'python',
  javascript: 'javascript',
  js: 'javascript',
  node: 'javascript',
  nodejs: 'javascript',
  bash: 'bash',
  sh: 'bash',
  shell: 'bash',
  go: 'go',
  golang: 'go',
};

/**
 * Maps a wire language name or alias (case-insensitive) to the language it runs.
 * @example resolveExecuteLanguage('python3') // 'python'
 */
export function resolveExecuteLanguage(name: string): ExecuteLanguage | undefined {
  return languageAliases[name.trim().toLowerCase()];
}

/** Environment variable names the agent reserves for itself; never accepted from a request. */
export const reservedEnvPrefix = 'WARREN_';

const envName = lazySchema(() =>
  z
    .string()
    .min(1, 'environment variable name must not be empty')
    .refine((k) => !k.includes('=') && !k.includes('\0'), 'environment variable name must not contain "=" or NUL')
    .refine(
      (k) => !k.startsWith(reservedEnvPrefix),
      `environment variable names starting with ${reservedEnvPrefix} are reserved`,
    ),
);

const envValue = lazySchema(() =>
  z
    .union([z.string(), z.number(), z.boolean()])
    .transform(String)
    .refine((v) => !v.includes('\0'), 'environment variable value must not contain NUL'),
);

/** A map of environment variables; numbers and booleans are turned into strings. */
export const envMapSchema = lazySchema(() => z.record(envName, envValue));

/** Environment variables, name to value. */
export type EnvMap = Record<string, string>;

const noNul = (what: string) => z.string().refine((v) => !v.includes('\0'), `${what} must not contain NUL`);

/** A timeout in seconds; 0 or absent means the route's default. */
const timeoutSeconds = lazySchema(() => z.number().nonnegative().finite());

const languageSchema = lazySchema(() =>
  z.string().check((ctx) => {
    if (resolveExecuteLanguage(ctx.value) === undefined) {
      ctx.issues.push({
        code: 'custom',
        input: ctx.value,
        message: `unsupported language '${ctx.value}' (supported: ${executeLanguages.join(', ')})`,
      });
    }
  }),
);

/** Drops `undefined` members so the result fits `exactOptionalPropertyTypes` optionals. */
function definedOnly<T extends Record<string, unknown>>(obj: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (v !== undefined) out[k] = v;
  return out as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/**
 * The fields every run request takes beside what it runs: a timeout in seconds, `workdir` (or the docs'
 * `working_dir`) and `env`. Called inside a schema's builder, so that it stays lazy.
 */
function runOptionFields() {
  return {
    timeout: timeoutSeconds.nullish(),
    workdir: noNul('workdir').nullish(),
    working_dir: noNul('working_dir').nullish(),
    env: envMapSchema.nullish(),
  };
}

/** Those fields as run parameters: a 0 timeout is the route's default, `workdir` wins over `working_dir`. */
function runOptions(b: {
  timeout?: number | null | undefined;
  workdir?: string | null | undefined;
  working_dir?: string | null | undefined;
  env?: EnvMap | null | undefined;
}): { timeoutSeconds: number | undefined; workdir: string | undefined; env: EnvMap | undefined } {
  return {
    timeoutSeconds: b.timeout || undefined,
    workdir: b.workdir ?? b.working_dir ?? undefined,
    env: b.env ?? undefined,
  };
}

/** `POST /execute` body. Accepts `workdir` and the docs' `working_dir`. */
export const executeRequestSchema = lazySchema(() =>
  z
    .object({
      code: noNul('code'),
      language: languageSchema.nullish(),
      ...runOptionFields(),
    })
    .transform(
      (b): ExecuteParams => ({
        code: b.code,
        language: resolveExecuteLanguage(b.language ?? 'python') ?? 'python',
        ...definedOnly(runOptions(b)),
      }),
    ),
);

/** Parsed `POST /execute` parameters. */
export interface ExecuteParams {
  code: string;
  language: ExecuteLanguage;
  /** Seconds; absent means the default (120). */
  timeoutSeconds?: number;
  workdir?: string;
  env?: EnvMap;
}

/**
 * `POST /commands/run` body: the SDK form `{command, args}` (exec, no shell) or
 * the docs' form `{command}` (run by `/bin/sh -c`).
 */
export const commandRequestSchema = lazySchema(() =>
  z
    .object({
      command: noNul('command').min(1, 'command must not be empty'),
      args: z.array(noNul('args')).nullish(),
      ...runOptionFields(),
    })
    .transform(
      (b): CommandParams => ({
        command: b.command,
        ...definedOnly({
          args: b.args ?? undefined,
          ...runOptions(b),
        }),
      }),
    ),
);

/** Parsed `POST /commands/run` parameters. */
export interface CommandParams {
  command: string;
  /** Present: exec `command` with these args. Absent: run `command` with `/bin/sh -c`. */
  args?: string[];
  /** Seconds; absent means the default (30). */
  timeoutSeconds?: number;
  workdir?: string;
  env?: EnvMap;
}

/** `POST /execute/ipython` body: like `/execute`, always python (the persistent kernel). */
export const ipythonRequestSchema = lazySchema(() =>
  z
    .object({
      code: noNul('code'),
      ...runOptionFields(),
    })
    .transform(
      (b): ExecuteParams => ({
        code: b.code,
        language: 'python',
        ...definedOnly(runOptions(b)),
      }),
    ),
);

const processName = lazySchema(() => noNul('name').max(256, 'name must be at most 256 characters'));

/** `POST /execute/background` body: `/execute` plus an optional `name`. */
export const backgroundExecuteRequestSchema = lazySchema(() =>
  z
    .object({
      code: noNul('code'),
      language: languageSchema.nullish(),
      ...runOptionFields(),
      name: processName.nullish(),
    })
    .transform(
      (b): BackgroundExecuteParams => ({
        code: b.code,
        language: resolveExecuteLanguage(b.language ?? 'python') ?? 'python',
        ...definedOnly({
          ...runOptions(b),
          name: b.name ?? undefined,
        }),
      }),
    ),
);

/** Parsed `POST /execute/background` parameters. */
export interface BackgroundExecuteParams extends ExecuteParams {
  name?: string;
}

/** `POST /commands/background` body: `/commands/run` plus an optional `name`. */
export const backgroundCommandRequestSchema = lazySchema(() =>
  z
    .object({
      command: noNul('command').min(1, 'command must not be empty'),
      args: z.array(noNul('args')).nullish(),
      ...runOptionFields(),
      name: processName.nullish(),
    })
    .transform(
      (b): BackgroundCommandParams => ({
        command: b.command,
        ...definedOnly({
          args: b.args ?? undefined,
          ...runOptions(b),
          name: b.name ?? undefined,
        }),
      }),
    ),
);

/** Parsed `POST /commands/background` parameters. */
export interface BackgroundCommandParams extends CommandParams {
  name?: string;
}

/** Body (or query) naming the background process to kill: `{process_id}`. */
export const killRequestSchema = lazySchema(() =>
  z.object({ process_id: z.string().min(1, 'process_id is required') }),
);

/** Status of a background process (PROTOCOL §10). */
export const processStatuses = ['queued', 'running', 'completed', 'failed', 'killed', 'timeout'] as const;

/** Status of a background process. */
export type ProcessStatus = (typeof processStatuses)[number];

/** A background process as `GET /execute/processes` lists it (PROTOCOL §10), with both SDKs' spellings. */
export const processInfoSchema = lazySchema(() =>
  z.object({
    process_id: z.string(),
    execution_id: z.string(),
    name: z.string().nullable(),
    status: z.enum(processStatuses),
    kind: z.enum(['execute', 'command']),
    language: z.string(),
    command: z.string().nullable(),
    pid: z.number().int().nullable(),
    start_time: z.string(),
    started_at: z.string(),
    end_time: z.string().nullable(),
    completed_at: z.string().nullable(),
    exit_code: z.number().int().nullable(),
    duration: z.number(),
    execution_time: z.number(),
    stdout: z.string(),
    stderr: z.string(),
    stdout_truncated: z.boolean(),
    stderr_truncated: z.boolean(),
  }),
);

/** A background process as `GET /execute/processes` lists it. */
export type ProcessInfo = z.infer<typeof processInfoSchema>;

/** Response of `GET /execute/processes`. */
export const processListResponseSchema = lazySchema(() =>
  z.object({
    processes: z.array(processInfoSchema),
    count: z.number().int(),
    timestamp: z.string(),
  }),
);

/** Response of `GET /execute/processes`. */
export type ProcessListResponse = z.infer<typeof processListResponseSchema>;

/** Response of `POST /execute/background` and `POST /commands/background`. */
export const backgroundStartResponseSchema = lazySchema(() =>
  z.object({
    process_id: z.string(),
    execution_id: z.string(),
    status: z.enum(processStatuses),
    name: z.string().nullable(),
    pid: z.number().int().nullable(),
    start_time: z.string(),
    message: z.string(),
  }),
);

/** Response of `POST /execute/background` and `POST /commands/background`. */
export type BackgroundStartResponse = z.infer<typeof backgroundStartResponseSchema>;

/** Response of the kill routes. */
export const killResponseSchema = lazySchema(() =>
  z.object({
    process_id: z.string(),
    status: z.enum(processStatuses),
    message: z.string(),
    timestamp: z.string(),
  }),
);

/** Response of the kill routes. */
export type KillResponse = z.infer<typeof killResponseSchema>;

/** A process of the sandbox as `GET /processes` lists it (PROTOCOL §8.1). */
export const systemProcessSchema = lazySchema(() =>
  z.object({
    pid: z.number().int(),
    ppid: z.number().int(),
    pgid: z.number().int(),
    name: z.string(),
    status: z.string(),
    cpu_percent: z.number(),
    memory_mb: z.number(),
    memory_bytes: z.number().int(),
    threads: z.number().int(),
    command: z.string(),
    user: z.string(),
    uid: z.number().int(),
    start_time: z.string(),
  }),
);

/** A process of the sandbox as `GET /processes` lists it. */
export type SystemProcess = z.infer<typeof systemProcessSchema>;

/** One Jupyter kernel session as `GET /jupyter/sessions` lists it (PROTOCOL §8.1). */
export const jupyterSessionSchema = lazySchema(() =>
  z.object({
    kernel_id: z.string(),
    kernel_name: z.string(),
    execution_state: z.enum(['starting', 'idle', 'busy', 'restarting', 'dead']),
    connections: z.number().int(),
    last_activity: z.string(),
    execution_count: z.number().int(),
    pid: z.number().int().nullable(),
  }),
);

/** One Jupyter kernel session. */
export type JupyterSession = z.infer<typeof jupyterSessionSchema>;

/** First frame of the `/execute/stream` WebSocket (PROTOCOL §11.2). */
export const executeStreamStartSchema = lazySchema(() =>
  z
    .object({
      type: z.literal('execute').nullish(),
      code: noNul('code'),
      language: languageSchema.nullish(),
      ...runOptionFields(),
    })
    .transform(
      (b): ExecuteParams => ({
        code: b.code,
        language: resolveExecuteLanguage(b.language ?? 'python') ?? 'python',
        ...definedOnly(runOptions(b)),
      }),
    ),
);

/**
 * First frame of the `/commands/stream` WebSocket: `{type: "command" | "execute",
 * command, args?, timeout?, workdir?, env?}`, run like `/commands/run`.
 */
export const commandStreamStartSchema = lazySchema(() =>
  z
    .object({
      type: z.enum(['command', 'execute']).nullish(),
      command: noNul('command').min(1, 'command must not be empty'),
      args: z.array(noNul('args')).nullish(),
      ...runOptionFields(),
      /** Open the command's stdin to `stdin` / `stdin_close` frames (otherwise it reads /dev/null). */
      stdin: z.boolean().nullish(),
    })
    .transform((b): CommandParams & { stdin: boolean } => ({
      command: b.command,
      stdin: b.stdin === true,
      ...definedOnly({
        args: b.args ?? undefined,
        ...runOptions(b),
      }),
    })),
);

/** A frame a client sends on `/commands/stream` after the first, for a command started with `stdin: true`. */
export const commandStreamInputSchema = lazySchema(() =>
  z.discriminatedUnion('type', [
    z.object({ type: z.literal('stdin'), data: z.string() }),
    z.object({ type: z.literal('stdin_close') }),
  ]),
);

/** Largest terminal dimension accepted in a resize. */
const terminalDimension = lazySchema(() => z.number().int().min(1).max(10000));

/** A frame the client sends on the `/terminal` WebSocket (PROTOCOL §11.3). */
export const terminalClientFrameSchema = lazySchema(() =>
  z.discriminatedUnion('type', [
    z.object({ type: z.literal('input'), data: z.string() }),
    z.object({ type: z.literal('resize'), cols: terminalDimension, rows: terminalDimension }),
  ]),
);

/** A frame the client sends on the `/terminal` WebSocket. */
export type TerminalClientFrame = z.infer<typeof terminalClientFrameSchema>;

/** The frame that starts a `/files/watch` WebSocket (PROTOCOL §11.4). */
export const fileWatchStartSchema = lazySchema(() =>
  z.object({
    action: z.literal('watch'),
    path: z.string().min(1, 'path is required'),
  }),
);

/** Kind of change `/files/watch` reports. */
export type FileChangeEvent = 'created' | 'modified' | 'deleted' | 'renamed';

/** Query of the file routes that need a path (`read`, `download`, `exists`, `remove`). */
export const filePathQuerySchema = lazySchema(() => z.object({ path: z.string().min(1, 'path is required') }));

/** Query of `GET /files/list`; the path defaults to the workdir. */
export const fileListQuerySchema = lazySchema(() => z.object({ path: z.string().min(1).optional() }));

/** `POST /files/write` body. */
export const fileWriteRequestSchema = lazySchema(() =>
  z
    .object({
      path: z.string().min(1, 'path is required'),
      content: z.string().nullish(),
      encoding: z
        .string()
        .transform((e) => e.toLowerCase())
        .pipe(z.enum(['utf-8', 'utf8', 'text', 'base64'], { error: "encoding must be 'utf-8' or 'base64'" }))
        .nullish(),
      mode: z
        .union([z.string(), z.number().int()])
        .transform(String)
        .pipe(z.string().regex(/^0?o?[0-7]{1,4}$/, 'mode must be an octal string such as "0644"'))
        .nullish(),
      overwrite: z.boolean().nullish(),
    })
    .transform(
      (b): FileWriteParams => ({
        path: b.path,
        content: b.content ?? '',
        encoding: b.encoding === 'base64' ? ('base64' as const) : ('utf-8' as const),
        overwrite: b.overwrite ?? true,
        ...definedOnly({ mode: b.mode == null ? undefined : Number.parseInt(b.mode.replace(/^0?o?/, '') || '0', 8) }),
      }),
    ),
);

/** Parsed `POST /files/write` parameters. */
export interface FileWriteParams {
  path: string;
  content: string;
  encoding: 'utf-8' | 'base64';
  overwrite: boolean;
  /** Numeric permission bits to chmod the file to. */
  mode?: number;
}

/** `POST /files/mkdir` body. */
export const mkdirRequestSchema = lazySchema(() => z.object({ path: z.string().min(1, 'path is required') }));

/** The non-file parts of a `POST /files/upload` multipart body. */
export const uploadFieldsSchema = lazySchema(() => z.object({ path: z.string().min(1, 'path is required') }));

/** `PUT /env` and `PATCH /env` body. */
export const envUpdateRequestSchema = lazySchema(() =>
  z
    .object({
      env_vars: envMapSchema,
      merge: z.boolean().nullish(),
    })
    .transform((b): EnvUpdateParams => ({ envVars: b.env_vars })),
);

/** Parsed `PUT`/`PATCH /env` parameters. */
export interface EnvUpdateParams {
  envVars: EnvMap;
}

const nullableString = lazySchema(() => z.string().nullable());

/** Response of `POST /execute` (PROTOCOL §9). */
export const executeResponseSchema = lazySchema(() =>
  z.object({
    success: z.boolean(),
    stdout: z.string(),
    stderr: z.string(),
    exit_code: z.number().int(),
    execution_time: z.number(),
    timestamp: z.string(),
    language: z.string(),
    png: nullableString,
    html: nullableString,
    json: z.record(z.string(), z.unknown()).nullable(),
    svg: nullableString,
    markdown: nullableString,
    result: nullableString,
    rich_outputs: z.array(z.unknown()),
    stdout_truncated: z.boolean(),
    stderr_truncated: z.boolean(),
    timed_out: z.boolean(),
    /** Kernel execution counter, when the code ran in the Jupyter kernel. */
    execution_count: z.number().int().optional(),
    /** Display outputs left out because they exceeded the size budget. */
    rich_outputs_dropped: z.number().int().optional(),
    error: z.string().optional(),
  }),
);

/** Response of `POST /execute`. */
export type ExecuteResponse = z.infer<typeof executeResponseSchema>;

/** Response of `POST /commands/run` (PROTOCOL §8.3); HTTP 200 also for non-zero exits. */
export const commandResponseSchema = lazySchema(() =>
  z.object({
    success: z.boolean(),
    stdout: z.string(),
    stderr: z.string(),
    exit_code: z.number().int(),
    execution_time: z.number(),
    command: z.string(),
    pid: z.number().int().nullable(),
    timestamp: z.string(),
    stdout_truncated: z.boolean(),
    stderr_truncated: z.boolean(),
    timed_out: z.boolean(),
    error: z.string().optional(),
  }),
);

/** Response of `POST /commands/run`. */
export type CommandResponse = z.infer<typeof commandResponseSchema>;

/** One entry of `GET /files/list`, with both SDKs' spellings (PROTOCOL §8.4). */
export const fileEntrySchema = lazySchema(() =>
  z.object({
    name: z.string(),
    path: z.string(),
    size: z.number().int(),
    is_dir: z.boolean(),
    is_directory: z.boolean(),
    is_file: z.boolean(),
    is_symlink: z.boolean(),
    modified: z.string(),
    modified_time: z.string(),
    permissions: z.string(),
    mode: z.string(),
  }),
);

/** One entry of `GET /files/list`. */
export type FileEntry = z.infer<typeof fileEntrySchema>;

/** Response of `GET /files/list`. */
export const fileListResponseSchema = lazySchema(() =>
  z.object({
    path: z.string(),
    count: z.number().int(),
    files: z.array(fileEntrySchema),
  }),
);

/** Response of `GET /files/list`. */
export type FileListResponse = z.infer<typeof fileListResponseSchema>;

/** Response of `GET /files/read`. */
export const fileReadResponseSchema = lazySchema(() =>
  z.object({ content: z.string(), path: z.string(), size: z.number().int() }),
);

/** Response of `GET /files/read`. */
export type FileReadResponse = z.infer<typeof fileReadResponseSchema>;

/** Response of `GET|PUT|PATCH /env`. */
export const envResponseSchema = lazySchema(() =>
  z.object({
    env_vars: z.record(z.string(), z.string()),
    count: z.number().int(),
    timestamp: z.string(),
  }),
);

/** Response of `GET|PUT|PATCH /env`. */
export type EnvResponse = z.infer<typeof envResponseSchema>;

/** Response of `GET /health` (PROTOCOL §8.1); `status` is always `"healthy"`. */
export const healthResponseSchema = lazySchema(() =>
  z.looseObject({
    status: z.literal('healthy'),
    agent: z.string(),
    version: z.string(),
    uptime: z.string(),
    uptime_seconds: z.number(),
    features: z.record(z.string(), z.unknown()),
  }),
);

/** Response of `GET /health`. */
export type HealthResponse = z.infer<typeof healthResponseSchema>;
