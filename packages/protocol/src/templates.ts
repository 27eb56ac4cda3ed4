/**
 * Wire shapes of the Hopx template-build API (PROTOCOL §5.5–5.6): the
 * upload link, the build request in both SDK dialects (TS: `type` COPY/RUN/
 * env/workdir; Python: COPY/RUN/ENV/WORKDIR/USER/CMD), the readiness check,
 * and the normalized form the server works with. Every schema is a
 * lazySchema, built on first use.
 */

import { z } from 'zod';
import { lazySchema } from './lazy-schema.ts';

/** Longest step list a build accepts (each COPY/RUN step becomes one filesystem layer). */
export const MAX_BUILD_STEPS = 64;

const noNul = (what: string) => z.string().refine((s) => !s.includes('\0'), `${what} must not contain NUL`);

/** `files_hash` is an opaque client key; Warren only accepts the sha256-hex shape the SDKs send (it names a file). */
export const filesHashSchema = lazySchema(() =>
  z.string().regex(/^[0-9a-f]{64}$/, 'files_hash must be 64 lowercase hex characters'),
);

/** `POST /v1/templates/files/upload-link` body. */
export const uploadLinkRequestSchema = lazySchema(() =>
  z.object({
    files_hash: filesHashSchema,
    content_length: z.number().int().nonnegative(),
  }),
);

const envKey = lazySchema(() => z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'invalid env var name'));
const absPath = (what: string) =>
  noNul(what)
    .min(1)
    .max(4096)
    .refine((p) => p.startsWith('/'), `${what} must be an absolute path`);

/** `readyCmd` in either dialect (TS: `name` for process; Python: `processName`, `timeout`/`interval` in ms). */
export const readyCheckSchema = lazySchema(() =>
  z
    .object({
      type: z.enum(['port', 'url', 'file', 'process', 'command']),
      port: z.number().int().min(1).max(65_535).nullish(),
      url: noNul('readyCmd.url').max(2048).nullish(),
      path: noNul('readyCmd.path').max(4096).nullish(),
      name: noNul('readyCmd.name').max(256).nullish(),
      processName: noNul('readyCmd.processName').max(256).nullish(),
      command: noNul('readyCmd.command').max(8192).nullish(),
      timeout: z.number().int().positive().max(3_600_000).nullish(),
      interval: z.number().int().positive().max(60_000).nullish(),
    })
    .superRefine((r, ctx) => {
      const missing =
        (r.type === 'port' && r.port == null) ||
        (r.type === 'url' && !r.url) ||
        (r.type === 'file' && !r.path) ||
        (r.type === 'process' && !(r.name ?? r.processName)) ||
        (r.type === 'command' && !r.command);
      if (missing) ctx.addIssue({ code: 'custom', message: `readyCmd of type ${r.type} is missing its target` });
    }),
);

/** A readiness check, normalized. */
export type ReadyCheck =
  | { type: 'port'; port: number; timeoutMs: number; intervalMs: number }
  | { type: 'url'; url: string; timeoutMs: number; intervalMs: number }
  | { type: 'file'; path: string; timeoutMs: number; intervalMs: number }
  | { type: 'process'; name: string; timeoutMs: number; intervalMs: number }
  | { type: 'command'; command: string; timeoutMs: number; intervalMs: number };

/** The SDKs' defaults (`waitForPort(port, 30000, 2000)`); Warren polls faster than the SDK's 2 s by default. */
const READY_DEFAULT_TIMEOUT_MS = 30_000;
const READY_DEFAULT_INTERVAL_MS = 100;

export function normalizeReadyCheck(r: z.infer<typeof readyCheckSchema>): ReadyCheck {
  const timeoutMs = r.timeout ?? READY_DEFAULT_TIMEOUT_MS;
  // The SDKs' 2 s interval is a client default, not a server requirement: poll at most every 250 ms.
  const intervalMs = Math.min(r.interval ?? READY_DEFAULT_INTERVAL_MS, 250);
  switch (r.type) {
    case 'port':
      return { type: 'port', port: r.port as number, timeoutMs, intervalMs };
    case 'url':
      return { type: 'url', url: r.url as string, timeoutMs, intervalMs };
    case 'file':
      return { type: 'file', path: r.path as string, timeoutMs, intervalMs };
    case 'process':
      return { type: 'process', name: (r.name ?? r.processName) as string, timeoutMs, intervalMs };
    case 'command':
      return { type: 'command', command: r.command as string, timeoutMs, intervalMs };
  }
}

/** One build step as either SDK sends it. */
export const buildStepSchema = lazySchema(() =>
  z.object({
    type: z.enum(['COPY', 'RUN', 'ENV', 'WORKDIR', 'USER', 'CMD', 'env', 'workdir', 'copy', 'run', 'user', 'cmd']),
    args: z.array(noNul('step argument').max(65_536)).max(1024).optional(),
    filesHash: filesHashSchema.nullish(),
    owner: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,32}(:[A-Za-z0-9_.-]{1,32})?$/, 'owner must be user[:group]')
      .nullish(),
    permissions: z
      .string()
      .regex(/^0?[0-7]{3,4}$/, 'permissions must be an octal mode like 0755')
      .nullish(),
    key: envKey.nullish(),
    value: noNul('env value').max(65_536).nullish(),
    path: noNul('workdir').max(4096).nullish(),
    skipCache: z.boolean().nullish(),
  }),
);

/** A build step, normalized. COPY sources are the comma-split `args[0]`. */
export type BuildStep =
  | {
      kind: 'COPY';
      sources: string[];
      dest: string;
      filesHash: string;
      owner: string | null;
      permissions: number | null;
      skipCache: boolean;
    }
  | { kind: 'RUN'; command: string; skipCache: boolean }
  | { kind: 'ENV'; key: string; value: string }
  | { kind: 'WORKDIR'; path: string }
  | { kind: 'USER'; user: string }
  | { kind: 'CMD'; command: string };

/** `POST /v1/templates/build` body (both dialects). */
export const buildRequestSchema = lazySchema(() =>
  z.object({
    name: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'name may contain letters, digits, ".", "_" and "-"'),
    from_image: noNul('from_image').min(1, 'from_image is required').max(1024),
    steps: z.array(buildStepSchema).max(MAX_BUILD_STEPS, `at most ${MAX_BUILD_STEPS} steps`).default([]),
    cpu: z.number().int().min(1).max(64).nullish(),
    memory: z.number().int().min(64).max(262_144).nullish(),
    diskGB: z.number().int().min(1).max(1024).nullish(),
    skipCache: z.boolean().nullish(),
    update: z.boolean().nullish(),
    startCmd: noNul('startCmd').max(8192).nullish(),
    readyCmd: readyCheckSchema.nullish(),
    agent_version: z.string().max(100).nullish(),
    registry_credentials: z
      .object({ type: z.string().max(32).optional(), username: z.string().max(512), password: z.string().max(4096) })
      .nullish(),
  }),
);

/** A template build request, normalized. */
export interface BuildRequest {
  name: string;
  fromImage: string;
  steps: BuildStep[];
  vcpu: number;
  memoryMiB: number;
  diskMiB: number;
  skipCache: boolean;
  update: boolean;
  startCmd: string | null;
  readyCheck: ReadyCheck | null;
  registryCredentials: { username: string; password: string } | null;
}

/** Why a syntactically valid request still cannot be built. */
export class BuildRequestError extends Error {}

function normalizeStep(s: z.infer<typeof buildStepSchema>, index: number): BuildStep {
  const args = s.args ?? [];
  const where = `steps[${index}]`;
  const arg = (i: number, what: string): string => {
    const v = args[i];
    if (v === undefined || v === '') throw new BuildRequestError(`${where}: ${what} is required`);
    return v;
  };
  switch (s.type.toUpperCase()) {
    case 'COPY': {
      if (!s.filesHash) throw new BuildRequestError(`${where}: COPY needs filesHash (upload the files first)`);
      const sources = arg(0, 'COPY source')
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x !== '');
      if (sources.length === 0) throw new BuildRequestError(`${where}: COPY source is required`);
      const dest = arg(1, 'COPY destination');
      if (!dest.startsWith('/')) throw new BuildRequestError(`${where}: COPY destination must be an absolute path`);
      return {
        kind: 'COPY',
        sources,
        dest,
        filesHash: s.filesHash,
        owner: s.owner ?? null,
        permissions: s.permissions ? Number.parseInt(s.permissions, 8) : null,
        skipCache: s.skipCache ?? false,
      };
    }
    case 'RUN':
      return { kind: 'RUN', command: args.join(' ').trim() || arg(0, 'RUN command'), skipCache: s.skipCache ?? false };
    case 'ENV': {
      const key = s.key ?? args[0];
      const value = s.value ?? args[1] ?? '';
      const parsed = envKey.safeParse(key);
      if (!parsed.success) throw new BuildRequestError(`${where}: ENV needs a valid variable name`);
      return { kind: 'ENV', key: parsed.data, value };
    }
    case 'WORKDIR': {
      const path = s.path ?? args[0];
      const parsed = absPath('WORKDIR path').safeParse(path);
      if (!parsed.success) throw new BuildRequestError(`${where}: WORKDIR needs an absolute path`);
      return { kind: 'WORKDIR', path: parsed.data };
    }
    case 'USER':
      return { kind: 'USER', user: arg(0, 'USER name') };
    default:
      return { kind: 'CMD', command: args.join(' ') };
  }
}

/**
 * Turns a parsed build request into the server's form.
 * @throws BuildRequestError naming the step that cannot be built.
 */
export function normalizeBuildRequest(b: z.infer<typeof buildRequestSchema>): BuildRequest {
  const steps = b.steps.map(normalizeStep);
  if (b.readyCmd && !b.startCmd) throw new BuildRequestError('readyCmd needs startCmd');
  return {
    name: b.name,
    fromImage: b.from_image.trim(),
    steps,
    vcpu: b.cpu ?? 2,
    memoryMiB: b.memory ?? 2048,
    diskMiB: (b.diskGB ?? 10) * 1024,
    skipCache: b.skipCache ?? false,
    update: b.update ?? false,
    startCmd: b.startCmd?.trim() || null,
    readyCheck: b.readyCmd ? normalizeReadyCheck(b.readyCmd) : null,
    registryCredentials: b.registry_credentials
      ? { username: b.registry_credentials.username, password: b.registry_credentials.password }
      : null,
  };
}

/** Template build statuses (PROTOCOL §5.6 / §7). */
export const buildStatuses = ['building', 'active', 'failed'] as const;
export type BuildStatus = (typeof buildStatuses)[number];

/** A normalized readiness check as the server hands it to a sandbox's agent (`WARREN_READY_CHECK`). */
export const normalizedReadyCheckSchema: z.ZodType<ReadyCheck> = lazySchema(() =>
  z.discriminatedUnion('type', [
    z.object({
      type: z.literal('port'),
      port: z.number().int().min(1).max(65_535),
      timeoutMs: z.number(),
      intervalMs: z.number(),
    }),
    z.object({ type: z.literal('url'), url: z.string(), timeoutMs: z.number(), intervalMs: z.number() }),
    z.object({ type: z.literal('file'), path: z.string(), timeoutMs: z.number(), intervalMs: z.number() }),
    z.object({ type: z.literal('process'), name: z.string(), timeoutMs: z.number(), intervalMs: z.number() }),
    z.object({ type: z.literal('command'), command: z.string(), timeoutMs: z.number(), intervalMs: z.number() }),
  ]),
);
