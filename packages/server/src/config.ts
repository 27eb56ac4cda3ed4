import { join } from 'node:path';
import { z } from 'zod';

const schema = z.object({
  WARREN_HOST: z.string().default('127.0.0.1'),
  WARREN_PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
  WARREN_DATA_DIR: z.string().default('/var/lib/warren'),
  WARREN_CACHE_DIR: z.string().default('/var/cache/warren'),
  WARREN_API_KEY: z.string().min(8).optional(),
  /** Origin clients use to reach this server (public_host); derived from host/port when unset. */
  WARREN_PUBLIC_URL: z.url().optional(),
  WARREN_BRIDGE: z
    .string()
    .regex(/^[a-z0-9]{1,15}$/)
    .default('warren0'),
  WARREN_BRIDGE_CIDR: z.string().default('10.213.0.0/16'),
  WARREN_NFT_TABLE: z
    .string()
    .regex(/^[a-z_][a-z0-9_]{0,29}$/)
    .default('warren'),
  WARREN_CGROUP_PARENT: z
    .string()
    .regex(/^[a-z0-9_-]{1,40}$/)
    .default('warren'),
  WARREN_TOKEN_TTL_SECONDS: z.coerce.number().int().min(3700).default(86_400),
  WARREN_MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(1024 * 1024),
  WARREN_MAX_SANDBOXES_PER_KEY: z.coerce.number().int().min(1).default(100),
  /** Largest page `GET /v1/sandboxes` returns, whatever `limit` asks for. */
  WARREN_LIST_PAGE_MAX: z.coerce.number().int().min(1).max(1000).default(100),
  WARREN_BOOT_TIMEOUT_MS: z.coerce.number().int().min(1000).default(30_000),
  /** Warm pool size per template: `name=count,…`, or one number for every template; 0 disables it. */
  WARREN_POOL: z.string().default('base=2,code-interpreter=2'),
  /** After a claim, the pool waits this long before booting a replacement, so the boot does not slow the request. */
  WARREN_POOL_REFILL_DELAY_MS: z.coerce.number().int().min(0).max(60_000).default(150),
  /** When true, SIGTERM deletes every sandbox before the server exits (default: they keep running). */
  WARREN_STOP_SANDBOXES_ON_EXIT: z.enum(['true', 'false', '1', '0']).default('false'),
  /** Preview host domain: `{port}-{id}.{WARREN_DOMAIN}` reaches a sandbox port (needs wildcard DNS); unset = path form only. */
  WARREN_DOMAIN: z
    .string()
    .regex(/^(?=.{1,200}$)[a-z0-9-]+(\.[a-z0-9-]+)*$/i, 'a host name like warren.example.com')
    .optional(),
  /** Hosts `/execute/async` may POST callbacks to: `host,*.suffix,…`; unset or `*` = any host. */
  WARREN_WEBHOOK_ALLOW: z.string().optional(),
  /** Async executions one sandbox may have in flight. */
  WARREN_ASYNC_MAX_PER_SANDBOX: z.coerce.number().int().min(1).default(8),
  /** Open preview connections (HTTP in flight + WebSockets) per sandbox. */
  WARREN_PREVIEW_MAX_CONNECTIONS: z.coerce.number().int().min(1).default(256),
  /** Comma-separated built-in templates to build at start (default: all). */
  WARREN_TEMPLATES: z.string().default('base,code-interpreter'),
  /** Largest build-context upload (`PUT` of an upload link), in bytes. */
  WARREN_BUILD_UPLOAD_MAX_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .default(1024 ** 3),
  /** Limit of one RUN step of a template build, in seconds (at most 3600, the agent's own cap). */
  WARREN_BUILD_STEP_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(3600).default(1800),
  /** Limit of a whole template build, in seconds. */
  WARREN_BUILD_TIMEOUT_SECONDS: z.coerce.number().int().min(1).default(7200),
  WARREN_BUILD_CONCURRENCY: z.coerce.number().int().min(1).max(16).default(2),
  /** Registry short image names (`python:3.11`) are pulled from; `none` = short names are not pulled. */
  WARREN_IMAGE_DEFAULT_REGISTRY: z.string().default('docker.io'),
  /** Registries (as written in image references, comma-separated) builds may pull from; unset = any. */
  WARREN_IMAGE_REGISTRIES: z.string().optional(),
  /** Registries (`host[:port]`, comma-separated) reached over plain HTTP; loopback ones always are. */
  WARREN_IMAGE_INSECURE_REGISTRIES: z.string().default(''),
  /** Directory `oci:`, `oci-archive:` and `docker-archive:` base images are read from (default `<data dir>/images`). */
  WARREN_IMAGE_IMPORT_DIR: z.string().optional(),
});

export type Config = Readonly<{
  host: string;
  port: number;
  dataDir: string;
  cacheDir: string;
  apiKey: string | undefined;
  publicURL: string | undefined;
  bridge: string;
  bridgeCIDR: string;
  nftTable: string;
  cgroupParent: string;
  tokenTtlSeconds: number;
  maxBodyBytes: number;
  maxSandboxesPerKey: number;
  bootTimeoutMs: number;
  listPageMax: number;
  pool: string;
  poolRefillDelayMs: number;
  stopSandboxesOnExit: boolean;
  domain: string | undefined;
  webhookAllow: string | undefined;
  asyncMaxPerSandbox: number;
  previewMaxConnections: number;
  templates: readonly string[];
  buildUploadMaxBytes: number;
  buildStepTimeoutMs: number;
  buildTimeoutMs: number;
  buildConcurrency: number;
  imageDefaultRegistry: string | null;
  imageInsecureRegistries: readonly string[];
  imageRegistries: readonly string[] | undefined;
  imageImportDir: string;
}>;

/**
 * Parses the environment once into a frozen config.
 * @throws Error naming the offending variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable counts as unset.
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`invalid environment: ${String(issue?.path[0])}: ${issue?.message}`);
  }
  const e = parsed.data;
  return Object.freeze({
    host: e.WARREN_HOST,
    port: e.WARREN_PORT,
    dataDir: e.WARREN_DATA_DIR,
    cacheDir: e.WARREN_CACHE_DIR,
    apiKey: e.WARREN_API_KEY,
    publicURL: e.WARREN_PUBLIC_URL?.replace(/\/$/, ''),
    bridge: e.WARREN_BRIDGE,
    bridgeCIDR: e.WARREN_BRIDGE_CIDR,
    nftTable: e.WARREN_NFT_TABLE,
    cgroupParent: e.WARREN_CGROUP_PARENT,
    tokenTtlSeconds: e.WARREN_TOKEN_TTL_SECONDS,
    maxBodyBytes: e.WARREN_MAX_BODY_BYTES,
    maxSandboxesPerKey: e.WARREN_MAX_SANDBOXES_PER_KEY,
    bootTimeoutMs: e.WARREN_BOOT_TIMEOUT_MS,
    listPageMax: e.WARREN_LIST_PAGE_MAX,
    pool: e.WARREN_POOL,
    poolRefillDelayMs: e.WARREN_POOL_REFILL_DELAY_MS,
    stopSandboxesOnExit: e.WARREN_STOP_SANDBOXES_ON_EXIT === 'true' || e.WARREN_STOP_SANDBOXES_ON_EXIT === '1',
    domain: e.WARREN_DOMAIN?.toLowerCase(),
    webhookAllow: e.WARREN_WEBHOOK_ALLOW,
    asyncMaxPerSandbox: e.WARREN_ASYNC_MAX_PER_SANDBOX,
    previewMaxConnections: e.WARREN_PREVIEW_MAX_CONNECTIONS,
    templates: e.WARREN_TEMPLATES.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    buildUploadMaxBytes: e.WARREN_BUILD_UPLOAD_MAX_BYTES,
    buildStepTimeoutMs: e.WARREN_BUILD_STEP_TIMEOUT_SECONDS * 1000,
    buildTimeoutMs: e.WARREN_BUILD_TIMEOUT_SECONDS * 1000,
    buildConcurrency: e.WARREN_BUILD_CONCURRENCY,
    imageDefaultRegistry: e.WARREN_IMAGE_DEFAULT_REGISTRY === 'none' ? null : e.WARREN_IMAGE_DEFAULT_REGISTRY,
    imageInsecureRegistries: e.WARREN_IMAGE_INSECURE_REGISTRIES.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    imageImportDir: e.WARREN_IMAGE_IMPORT_DIR ?? join(e.WARREN_DATA_DIR, 'images'),
    imageRegistries: e.WARREN_IMAGE_REGISTRIES?.split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  });
}
