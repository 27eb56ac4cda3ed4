import { randomBytes } from 'node:crypto';
import { ErrorCode, ServiceError } from '@warren/protocol';
import { agentRequest } from '../internal/agent-client.ts';
import { MAX_ADDRESS_INDEX } from '../runtime/container/network.ts';
import type { Driver } from '../runtime/driver.ts';
import {
  type ApiKeyRow,
  POOL_KEY_ID,
  type SandboxRow,
  type SandboxStatus,
  type Store,
  type TemplateRow,
} from '../store/store.ts';
import type { TokenService } from './tokens.ts';

export interface CreateSandboxInput {
  templateName?: string | undefined;
  templateId?: string | undefined;
  region?: string | undefined;
  timeoutSeconds?: number | undefined;
  internetAccess?: boolean | undefined;
  envVars?: Record<string, string> | undefined;
  metadata?: Record<string, string> | undefined;
}

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/**
 * Whether a warm-pool sandbox of this template boots with network egress.
 * Most creates ask for `internet_access: true` (the default), and granting it
 * on claim is an `nft` run on the create path, so pool sandboxes boot with it
 * when nothing runs in them before a claim. A template with a start command
 * runs that command before anyone owns the sandbox: those boot without egress,
 * and get it on claim.
 */
export function poolEgress(template: TemplateRow): boolean {
  return template.startCmd === null;
}

/** The `/health` features the server waits on. */
interface AgentFeatures {
  kernel_available?: boolean | null;
  kernel_state?: string;
  start_command?: 'none' | 'starting' | 'ready' | 'failed';
  start_command_error?: string | null;
}

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A sandbox id: `sb` + 14 lowercase letters/digits (a valid hostname label and crun id). */
export function newSandboxId(): string {
  const bytes = randomBytes(14);
  let id = 'sb';
  for (const b of bytes) id += ID_ALPHABET[b % ID_ALPHABET.length];
  return id;
}

/** How long a warm-pool boot runs at background CPU weight before it gets its normal weight. */
const POOL_BOOT_AGING_MS = 5_000;

/** States in which a sandbox has (or may have) a runtime to clean up. */
const LIVE: readonly SandboxStatus[] = ['creating', 'running', 'paused', 'stopped', 'error', 'pooled'];

export interface SandboxServiceDeps {
  store: Store;
  driver: Driver;
  tokens: TokenService;
  log: Logger;
  maxSandboxesPerKey: number;
}

/** What {@link SandboxService.create} returns: the row, the sandbox's agent token, and whether it came from the pool. */
export interface CreateResult {
  sandbox: SandboxRow;
  token: string;
  tokenExpiresAt: Date;
  pooled: boolean;
}

/** The lifecycle of sandboxes: every transition is written to the store before it is acted on. */
export class SandboxService {
  private readonly store: Store;
  private readonly driver: Driver;
  private readonly tokens: TokenService;
  private readonly log: Logger;
  private readonly maxSandboxesPerKey: number;
  /** Deletions in flight, so concurrent DELETEs of one sandbox share one teardown. */
  private readonly teardowns = new Map<string, { killed: Promise<void>; gone: Promise<void> }>();
  /**
   * Address slots whose previous sandbox is still being torn down (its veth and
   * egress entry may still exist): a sandbox given such a slot boots after it.
   */
  private readonly releasing = new Map<number, Promise<void>>();
  /** Creates still running (a cold one boots for a few hundred ms); shutdown waits for them. */
  private readonly creating = new Set<Promise<unknown>>();
  /** Called after a pooled sandbox was claimed (the pool refills in the background). */
  onPoolClaim: (templateId: string) => void = () => undefined;
  /** Templates whose warm pool is enabled. */
  pooledTemplates = new Set<string>();

  constructor(deps: SandboxServiceDeps) {
    this.store = deps.store;
    this.driver = deps.driver;
    this.tokens = deps.tokens;
    this.log = deps.log;
    this.maxSandboxesPerKey = deps.maxSandboxesPerKey;
  }

  /** Resolves the template a create request names. @throws ServiceError TEMPLATE_NOT_FOUND / INVALID_REQUEST. */
  resolveTemplate(input: CreateSandboxInput): TemplateRow {
    const ref = input.templateId ?? input.templateName;
    if (ref === undefined) {
      throw new ServiceError(ErrorCode.INVALID_REQUEST, 'template_name or template_id is required');
    }
    const template = this.store.findTemplate(ref);
    if (!template) throw new ServiceError(ErrorCode.TEMPLATE_NOT_FOUND, `Template not found: ${ref}`);
    if (template.status !== 'active' || template.rootfsDir === null) {
      throw new ServiceError(ErrorCode.CONFLICT, `Template ${template.name} is not active (status ${template.status})`);
    }
    return template;
  }

  private limitError(maxSandboxes: number, current: number): ServiceError {
    return new ServiceError(ErrorCode.RESOURCE_LIMIT_ERROR, `Concurrent sandbox limit reached (${maxSandboxes})`, {
      details: { limit: maxSandboxes, current, available: 0, upgrade_url: null },
    });
  }

  /**
   * Boots a sandbox whose row exists (in `creating` or a pool boot), with its
   * template; with a start command, resolves only once its readiness check passed.
   */
  private async boot(
    row: SandboxRow,
    template: TemplateRow,
    internetAccess: boolean,
    options: { background?: boolean } = {},
  ): Promise<void> {
    await this.releasing.get(row.addressIndex);
    await this.driver.boot({
      background: options.background ?? false,
      sandboxId: row.id,
      templateRootfs: template.rootfsDir!,
      resources: template.resources,
      templateEnv: template.env,
      workdir: template.workdir,
      internetAccess,
      addressIndex: row.addressIndex,
      agentTokenKeyHex: this.tokens.sandboxKey(row.id).toString('hex'),
      startCmd: template.startCmd,
      readyCheck: template.readyCheck,
    });
    if (template.startCmd === null) return;
    try {
      await this.waitForAgent(row.id, (f) => f.start_command === 'ready' || f.start_command === 'none', {
        timeoutMs: (template.readyCheck?.timeoutMs ?? 0) + 10_000,
        what: 'start command readiness check',
      });
    } catch (err) {
      await this.driver.destroy(row.id, row.addressIndex);
      throw err;
    }
  }

  /** Applies the per-sandbox env vars to the agent's global env. */
  private async applyEnv(id: string, token: string, envVars: Record<string, string>): Promise<void> {
    if (Object.keys(envVars).length === 0) return;
    const res = await agentRequest(this.driver.agentSocket(id), token, 'PATCH', '/env', {
      env_vars: envVars,
      merge: true,
    });
    if (res.status !== 200) throw new Error(`agent answered ${res.status} to PATCH /env`);
  }

  /**
   * Creates a sandbox: claims a pooled one of the template when there is one,
   * else boots it. Tracked until it finishes, so a shutdown waits for it
   * ({@link creationsSettled}) before closing the store.
   */
  async create(key: ApiKeyRow, input: CreateSandboxInput): Promise<CreateResult> {
    const op = this.createNow(key, input);
    this.creating.add(op);
    try {
      return await op;
    } finally {
      this.creating.delete(op);
    }
  }

  /** Resolves when every create in flight has finished (succeeded or failed). */
  async creationsSettled(): Promise<void> {
    while (this.creating.size > 0) await Promise.allSettled([...this.creating]);
  }

  private async createNow(key: ApiKeyRow, input: CreateSandboxInput): Promise<CreateResult> {
    const template = this.resolveTemplate(input);
    const now = Date.now();
    const maxSandboxes = key.maxSandboxes ?? this.maxSandboxesPerKey;
    const fields = {
      apiKeyId: key.id,
      internetAccess: input.internetAccess ?? true,
      region: input.region ?? null,
      envVars: input.envVars ?? {},
      metadata: input.metadata ?? {},
      timeoutSeconds: input.timeoutSeconds ?? null,
      expiresAt: input.timeoutSeconds === undefined ? null : now + input.timeoutSeconds * 1000,
      createdAt: now,
    };

    // Warm path: claim a booted sandbox (the limit check and the claim are one transaction).
    let row: SandboxRow | undefined;
    if (this.pooledTemplates.has(template.id)) {
      row = this.store.db.transaction(() => {
        const current = this.store.countLive(key.id);
        if (current >= maxSandboxes) throw this.limitError(maxSandboxes, current);
        return this.store.claimPooled(template.id, fields);
      })();
      if (row) this.onPoolClaim(template.id);
    }
    const pooled = row !== undefined;

    if (!row) {
      const inserted = this.store.insertSandbox(
        { id: newSandboxId(), templateId: template.id, ...fields },
        { maxAddressIndex: MAX_ADDRESS_INDEX, maxSandboxes },
      );
      if (!inserted.ok) throw this.limitError(maxSandboxes, inserted.current);
      row = inserted.sandbox;
      try {
        await this.boot(row, template, row.internetAccess);
      } catch (err) {
        this.log.error(`sandbox ${row.id}: boot failed: ${(err as Error).message}`);
        this.store.transition(row.id, ['creating'], 'error', { error: (err as Error).message });
        throw new ServiceError(ErrorCode.INTERNAL_ERROR, 'Sandbox failed to start');
      }
    }

    const id = row.id;
    const issued = this.tokens.issue(id);
    try {
      // A pooled sandbox booted at background CPU weight, and with the egress `poolEgress` chose.
      if (pooled) await this.driver.setForeground(id, template.resources.vcpu);
      if (pooled && row.internetAccess !== poolEgress(template)) {
        await this.driver.setInternetAccess(row.addressIndex, row.internetAccess);
      }
      await this.applyEnv(id, issued.token, row.envVars);
    } catch (err) {
      this.log.error(`sandbox ${id}: set-up failed: ${(err as Error).message}`);
      await this.delete(id);
      throw new ServiceError(ErrorCode.INTERNAL_ERROR, 'Sandbox failed to start');
    }
    if (!this.store.transition(id, ['creating'], 'running')) {
      // Deleted (or expired) while starting: make sure nothing is left.
      await this.delete(id);
      throw new ServiceError(ErrorCode.SANDBOX_NOT_FOUND, `Sandbox ${id} not found`);
    }
    return { sandbox: this.store.getSandbox(id)!, token: issued.token, tokenExpiresAt: issued.expiresAt, pooled };
  }

  /**
   * Inserts a sandbox owned by an internal key (warm pool, template builds):
   * no per-key limit, no timeout, no env vars; it starts as `creating`.
   */
  insertInternal(templateId: string, apiKeyId: string, internetAccess: boolean) {
    return this.store.insertSandbox(
      {
        id: newSandboxId(),
        templateId,
        apiKeyId,
        internetAccess,
        region: null,
        envVars: {},
        metadata: {},
        timeoutSeconds: null,
        expiresAt: null,
        createdAt: Date.now(),
      },
      { maxAddressIndex: MAX_ADDRESS_INDEX, maxSandboxes: Number.MAX_SAFE_INTEGER },
    );
  }

  /**
   * Boots one warm-pool sandbox of a template: no owner, agent up, egress as
   * `poolEgress` says. It stays `creating` (unclaimable) until booted, then
   * becomes `pooled`.
   */
  async bootPooled(template: TemplateRow): Promise<void> {
    const egress = poolEgress(template);
    const inserted = this.insertInternal(template.id, POOL_KEY_ID, egress);
    if (!inserted.ok) return;
    const row = inserted.sandbox;
    // A background boot starved for long on a saturated host gets its normal weight, then drops it once booted.
    let aged: Promise<void> | undefined;
    const aging = setTimeout(() => {
      aged = this.driver.setForeground(row.id, template.resources.vcpu).catch(() => undefined);
    }, POOL_BOOT_AGING_MS);
    try {
      await this.boot(row, template, egress, { background: true });
      await this.waitForKernel(row.id);
      await this.warmAgentRequests(row.id);
      clearTimeout(aging);
      if (aged) {
        await aged;
        await this.driver.setBackground(row.id);
      }
    } catch (err) {
      this.store.transition(row.id, ['creating'], 'error', { error: (err as Error).message });
      await this.driver.destroy(row.id, row.addressIndex);
      throw err;
    } finally {
      clearTimeout(aging);
    }
    if (!this.store.transition(row.id, ['creating'], 'pooled')) await this.delete(row.id);
  }

  /**
   * Sends a pooled agent what its first client requests exercise besides the
   * readiness polls: an authenticated request (the token check) and a JSON
   * body read and validated (a no-op `PATCH /env`, which changes nothing), so
   * V8 has compiled that path before a claim. The agent warms its own run
   * paths itself. Failures are ignored: the boot's readiness checks decide.
   */
  private async warmAgentRequests(id: string): Promise<void> {
    const token = this.tokens.issue(id, 300).token;
    const socket = this.driver.agentSocket(id);
    for (let i = 0; i < 2; i++) {
      await agentRequest(socket, token, 'PATCH', '/env', { env_vars: {}, merge: true }).catch(() => undefined);
      await agentRequest(socket, token, 'GET', '/env').catch(() => undefined);
    }
  }

  /**
   * Waits until the agent's Python kernel is warm (idle), or the agent has
   * found the template has none, so a claimed pool sandbox runs python at once.
   */
  private waitForKernel(id: string): Promise<void> {
    return this.waitForAgent(
      id,
      (f) => f.kernel_available === false || (f.kernel_available === true && f.kernel_state === 'idle'),
      { timeoutMs: 60_000, what: 'python kernel warm-up' },
    );
  }

  /** Polls the agent's `/health` features until `done` holds; a failed start command fails at once. */
  private async waitForAgent(
    id: string,
    done: (features: AgentFeatures) => boolean,
    options: { timeoutMs: number; what: string },
  ): Promise<void> {
    const token = this.tokens.issue(id, 300).token;
    const deadline = Date.now() + options.timeoutMs;
    while (Date.now() < deadline) {
      const res = await agentRequest(this.driver.agentSocket(id), token, 'GET', '/health');
      const f = (res.body as { features?: AgentFeatures }).features ?? {};
      if (f.start_command === 'failed') {
        throw new Error(`sandbox ${id}: start command failed: ${f.start_command_error ?? 'unknown error'}`);
      }
      if (done(f)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`sandbox ${id}: ${options.what} did not finish within ${options.timeoutMs} ms`);
  }

  /** A sandbox owned by `key` that is not deleted. @throws ServiceError SANDBOX_NOT_FOUND ("Sandbox … not found"). */
  get(key: ApiKeyRow, id: string): SandboxRow {
    const row = this.store.getSandbox(id);
    if (!row || row.apiKeyId !== key.id || row.status === 'deleted' || row.status === 'pooled') {
      throw new ServiceError(ErrorCode.SANDBOX_NOT_FOUND, `Sandbox ${id} not found`, { status: 404 });
    }
    return row;
  }

  /**
   * Marks the sandbox deleted, kills every process in it, then removes every
   * trace of it (container, network, mounts, cgroups, files). Resolves once
   * all of that is done, or with `untilGone: false` as soon as its processes
   * were killed (the rest goes on in the background; its address slot is
   * reused only after it). Idempotent.
   */
  async delete(id: string, options: { untilGone?: boolean } = {}): Promise<void> {
    let teardown = this.teardowns.get(id);
    if (!teardown) {
      const row = this.store.getSandbox(id);
      if (!row) return;
      this.store.transition(id, LIVE, 'deleted');
      const fail = (what: string) => (err: unknown) =>
        this.log.error(`sandbox ${id}: ${what} failed: ${(err as Error).message}`);
      const killed = this.driver.kill(id).catch(fail('kill'));
      const gone = killed
        .then(() => this.driver.destroy(id, row.addressIndex))
        .catch(fail('teardown'))
        .finally(() => {
          this.teardowns.delete(id);
          if (this.releasing.get(row.addressIndex) === gone) this.releasing.delete(row.addressIndex);
        });
      teardown = { killed, gone };
      this.teardowns.set(id, teardown);
      this.releasing.set(row.addressIndex, gone);
    }
    await (options.untilGone === false ? teardown.killed : teardown.gone);
  }

  /** Resolves when every teardown in flight has finished. */
  async settled(): Promise<void> {
    while (this.teardowns.size > 0) await Promise.all([...this.teardowns.values()].map((t) => t.gone));
  }

  private conflict(row: SandboxRow, action: string): ServiceError {
    return new ServiceError(ErrorCode.CONFLICT, `Cannot ${action} sandbox ${row.id}: it is ${row.status}`, {
      details: { status: row.status },
    });
  }

  /** Freezes a running sandbox's processes (cgroup freezer). Idempotent on a paused sandbox. */
  async pause(key: ApiKeyRow, id: string): Promise<SandboxRow> {
    const row = this.get(key, id);
    if (row.status === 'paused') return row;
    if (!this.store.transition(id, ['running'], 'paused')) throw this.conflict(row, 'pause');
    try {
      await this.driver.pause(id);
    } catch (err) {
      this.store.transition(id, ['paused'], 'running');
      throw err;
    }
    return this.store.getSandbox(id)!;
  }

  /** Thaws a paused sandbox. Idempotent on a running sandbox. */
  async resume(key: ApiKeyRow, id: string): Promise<SandboxRow> {
    const row = this.get(key, id);
    if (row.status === 'running') return row;
    if (!this.store.transition(id, ['paused'], 'running')) throw this.conflict(row, 'resume');
    try {
      await this.driver.resume(id);
    } catch (err) {
      this.store.transition(id, ['running'], 'paused');
      throw err;
    }
    return this.store.getSandbox(id)!;
  }

  /** Ends every process of the sandbox; its filesystem is kept for `start`. */
  async stop(key: ApiKeyRow, id: string): Promise<SandboxRow> {
    const row = this.get(key, id);
    if (row.status === 'stopped') return row;
    if (!this.store.transition(id, ['running', 'paused'], 'stopped')) throw this.conflict(row, 'stop');
    await this.driver.stop(id, row.addressIndex);
    return this.store.getSandbox(id)!;
  }

  /** Boots a stopped sandbox again over its kept filesystem; create-time env vars are applied again. */
  async start(key: ApiKeyRow, id: string): Promise<SandboxRow> {
    const row = this.get(key, id);
    if (row.status === 'running') return row;
    if (!this.store.transition(id, ['stopped'], 'creating')) throw this.conflict(row, 'start');
    const template = this.store.findTemplate(row.templateId);
    try {
      if (!template?.rootfsDir) throw new Error(`template ${row.templateId} is gone`);
      await this.boot(row, template, row.internetAccess);
      await this.applyEnv(id, this.tokens.issue(id, 300).token, row.envVars);
    } catch (err) {
      this.log.error(`sandbox ${id}: start failed: ${(err as Error).message}`);
      await this.driver.stop(id, row.addressIndex).catch(() => undefined);
      this.store.transition(id, ['creating'], 'stopped');
      throw new ServiceError(ErrorCode.INTERNAL_ERROR, 'Sandbox failed to start');
    }
    if (!this.store.transition(id, ['creating'], 'running')) {
      await this.delete(id);
      throw new ServiceError(ErrorCode.SANDBOX_NOT_FOUND, `Sandbox ${id} not found`);
    }
    return this.store.getSandbox(id)!;
  }

  /** Sets a new timeout from now: `expires_at = now + timeoutSeconds`. */
  setTimeout(key: ApiKeyRow, id: string, timeoutSeconds: number): SandboxRow {
    this.get(key, id);
    this.store.setTimeout(id, timeoutSeconds, Date.now() + timeoutSeconds * 1000);
    return this.store.getSandbox(id)!;
  }

  refreshToken(key: ApiKeyRow, id: string): { sandbox: SandboxRow; token: string; tokenExpiresAt: Date } {
    const sandbox = this.get(key, id);
    const issued = this.tokens.issue(id);
    return { sandbox, token: issued.token, tokenExpiresAt: issued.expiresAt };
  }

  /** Deletes every sandbox whose `expires_at` has passed; returns how many. */
  async reapExpired(nowMs = Date.now()): Promise<number> {
    const expired = this.store.expiredSandboxes(nowMs);
    await Promise.all(
      expired.map((row) => {
        this.log.info(`sandbox ${row.id}: expired; deleting`);
        return this.delete(row.id);
      }),
    );
    return expired.length;
  }

  /** Deletes every sandbox that has a runtime (used by a shutdown that stops everything). */
  async deleteAll(): Promise<void> {
    await Promise.all(this.store.sandboxesInStatus(LIVE).map((row) => this.delete(row.id)));
  }

  /**
   * Brings the store and the runtime into agreement after a (re)start:
   * running, paused and pooled sandboxes whose container is alive are kept;
   * stopped sandboxes keep their files; those whose runtime vanished and
   * half-made ones are marked `error` and cleaned; leftovers of deleted ones
   * (containers, directories) are removed.
   */
  async reconcile(): Promise<{ adopted: number; cleaned: number }> {
    const runtime = new Map((await this.driver.list()).map((c) => [c.sandboxId, c.running]));
    const dirs = new Set(await this.driver.directories());
    let adopted = 0;
    let cleaned = 0;
    for (const row of this.store.sandboxesInStatus(LIVE)) {
      const alive = runtime.get(row.id) === true;
      const hasRuntime = runtime.has(row.id) || dirs.has(row.id);
      runtime.delete(row.id);
      dirs.delete(row.id);
      if (alive && (row.status === 'running' || row.status === 'paused' || row.status === 'pooled')) {
        adopted++;
        continue;
      }
      if (row.status === 'stopped') {
        await this.driver.stop(row.id, row.addressIndex);
        continue;
      }
      if (row.status === 'error') {
        if (hasRuntime) await this.driver.destroy(row.id, row.addressIndex);
        continue;
      }
      this.log.warn(`sandbox ${row.id}: runtime gone or half-made (status ${row.status}); marked error and cleaned`);
      this.store.transition(row.id, LIVE, row.status === 'pooled' ? 'deleted' : 'error', { error: 'runtime vanished' });
      await this.driver.destroy(row.id, row.addressIndex);
      cleaned++;
    }
    // Containers and directories of deleted sandboxes (or unknown to this data directory).
    for (const sandboxId of new Set([...runtime.keys(), ...dirs])) {
      const row = this.store.getSandbox(sandboxId);
      await this.driver.destroy(sandboxId, row?.addressIndex ?? 0);
      cleaned++;
    }
    return { adopted, cleaned };
  }
}
