import { randomBytes } from 'node:crypto';
import { ErrorCode, ServiceError } from '@warren/protocol';
import { agentRequest } from '../internal/agent-client.ts';
import { MAX_ADDRESS_INDEX } from '../runtime/container/network.ts';
import type { Driver } from '../runtime/driver.ts';
import type { ApiKeyRow, SandboxRow, SandboxStatus, Store, TemplateRow } from '../store/store.ts';
import type { TokenService } from './tokens.ts';

export interface CreateSandboxInput {
  templateName?: string | undefined;
  templateId?: string | undefined;
  region?: string | undefined;
  timeoutSeconds?: number | undefined;
  internetAccess?: boolean | undefined;
  envVars?: Record<string, string> | undefined;
}

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A sandbox id: `sb` + 14 lowercase letters/digits (a valid hostname label and crun id). */
export function newSandboxId(): string {
  const bytes = randomBytes(14);
  let id = 'sb';
  for (const b of bytes) id += ID_ALPHABET[b % ID_ALPHABET.length];
  return id;
}

/** The lifecycle of sandboxes: every transition is written to the store before it is acted on. */
export class SandboxService {
  private readonly store: Store;
  private readonly driver: Driver;
  private readonly tokens: TokenService;
  private readonly log: Logger;
  private readonly maxSandboxesPerKey: number;
  /** Deletions in flight, so concurrent DELETEs of one sandbox share one teardown. */
  private readonly teardowns = new Map<string, Promise<void>>();

  constructor(deps: { store: Store; driver: Driver; tokens: TokenService; log: Logger; maxSandboxesPerKey: number }) {
    this.store = deps.store;
    this.driver = deps.driver;
    this.tokens = deps.tokens;
    this.log = deps.log;
    this.maxSandboxesPerKey = deps.maxSandboxesPerKey;
  }

  /** Resolves the template a create request names. @throws ServiceError TEMPLATE_NOT_FOUND / INVALID_REQUEST. */
  resolveTemplate(input: CreateSandboxInput): TemplateRow {
    const ref = input.templateId ?? input.templateName;
    if (ref === undefined)
      throw new ServiceError(ErrorCode.INVALID_REQUEST, 'template_name or template_id is required');
    const template = this.store.findTemplate(ref);
    if (!template) throw new ServiceError(ErrorCode.TEMPLATE_NOT_FOUND, `Template not found: ${ref}`);
    if (template.status !== 'active' || template.rootfsDir === null) {
      throw new ServiceError(ErrorCode.CONFLICT, `Template ${template.name} is not active (status ${template.status})`);
    }
    return template;
  }

  async create(
    key: ApiKeyRow,
    input: CreateSandboxInput,
  ): Promise<{ sandbox: SandboxRow; token: string; tokenExpiresAt: Date }> {
    const template = this.resolveTemplate(input);
    const now = Date.now();
    const id = newSandboxId();
    const maxSandboxes = key.maxSandboxes ?? this.maxSandboxesPerKey;
    const inserted = this.store.insertSandbox(
      {
        id,
        apiKeyId: key.id,
        templateId: template.id,
        internetAccess: input.internetAccess ?? true,
        region: input.region ?? null,
        envVars: input.envVars ?? {},
        timeoutSeconds: input.timeoutSeconds ?? null,
        expiresAt: input.timeoutSeconds === undefined ? null : now + input.timeoutSeconds * 1000,
        createdAt: now,
      },
      { maxAddressIndex: MAX_ADDRESS_INDEX, maxSandboxes },
    );
    if (!inserted.ok) {
      throw new ServiceError(ErrorCode.RESOURCE_LIMIT_ERROR, `Concurrent sandbox limit reached (${maxSandboxes})`, {
        details: { limit: maxSandboxes, current: inserted.current, available: 0, upgrade_url: null },
      });
    }
    const row = inserted.sandbox;
    try {
      await this.driver.boot({
        sandboxId: id,
        templateRootfs: template.rootfsDir!,
        resources: template.resources,
        templateEnv: template.env,
        workdir: template.workdir,
        internetAccess: row.internetAccess,
        addressIndex: row.addressIndex,
        agentTokenKeyHex: this.tokens.sandboxKey(id).toString('hex'),
      });
    } catch (err) {
      this.log.error(`sandbox ${id}: boot failed: ${(err as Error).message}`);
      this.store.transition(id, ['creating'], 'error', { error: (err as Error).message });
      throw new ServiceError(ErrorCode.INTERNAL_ERROR, 'Sandbox failed to start');
    }
    const issued = this.tokens.issue(id);
    if (input.envVars && Object.keys(input.envVars).length > 0) {
      const res = await agentRequest(this.driver.agentSocket(id), issued.token, 'PATCH', '/env', {
        env_vars: input.envVars,
        merge: true,
      });
      if (res.status !== 200) {
        await this.delete(id).catch(() => undefined);
        throw new ServiceError(
          ErrorCode.INTERNAL_ERROR,
          `Sandbox failed to apply env_vars (agent answered ${res.status})`,
        );
      }
    }
    if (!this.store.transition(id, ['creating'], 'running')) {
      // Deleted while booting: make sure nothing is left.
      await this.delete(id).catch(() => undefined);
      throw new ServiceError(ErrorCode.SANDBOX_NOT_FOUND, `Sandbox ${id} not found`);
    }
    return { sandbox: this.store.getSandbox(id)!, token: issued.token, tokenExpiresAt: issued.expiresAt };
  }

  /** A live sandbox owned by `key`. @throws ServiceError SANDBOX_NOT_FOUND ("Sandbox … not found"). */
  get(key: ApiKeyRow, id: string): SandboxRow {
    const row = this.store.getSandbox(id);
    if (!row || row.apiKeyId !== key.id || row.status === 'deleted') {
      throw new ServiceError(ErrorCode.SANDBOX_NOT_FOUND, `Sandbox ${id} not found`, { status: 404 });
    }
    return row;
  }

  /** Marks the sandbox deleted, then removes every trace of it. Idempotent. */
  async delete(id: string): Promise<void> {
    const inFlight = this.teardowns.get(id);
    if (inFlight) return inFlight;
    const row = this.store.getSandbox(id);
    if (!row) return;
    this.store.transition(id, ['creating', 'running', 'paused', 'stopped', 'error'], 'deleted');
    const teardown = this.driver
      .destroy(id, row.addressIndex)
      .catch((err: unknown) => this.log.error(`sandbox ${id}: teardown failed: ${(err as Error).message}`))
      .finally(() => this.teardowns.delete(id));
    this.teardowns.set(id, teardown);
    return teardown;
  }

  refreshToken(key: ApiKeyRow, id: string): { sandbox: SandboxRow; token: string; tokenExpiresAt: Date } {
    const sandbox = this.get(key, id);
    const issued = this.tokens.issue(id);
    return { sandbox, token: issued.token, tokenExpiresAt: issued.expiresAt };
  }

  /**
   * Brings the store and the runtime into agreement after a (re)start:
   * running sandboxes whose container is alive are kept; those whose runtime
   * vanished, half-created ones, and leftovers of deleted ones are cleaned.
   */
  async reconcile(): Promise<{ adopted: number; cleaned: number }> {
    const runtime = new Map((await this.driver.list()).map((c) => [c.sandboxId, c.running]));
    let adopted = 0;
    let cleaned = 0;
    const live: SandboxStatus[] = ['creating', 'running', 'paused', 'stopped', 'error'];
    for (const row of this.store.sandboxesInStatus(live)) {
      if ((row.status === 'running' || row.status === 'paused') && runtime.get(row.id) === true) {
        adopted++;
        runtime.delete(row.id);
        continue;
      }
      this.log.warn(`sandbox ${row.id}: runtime gone or half-made (status ${row.status}); cleaning up`);
      this.store.transition(row.id, live, 'error', { error: 'runtime vanished' });
      await this.driver.destroy(row.id, row.addressIndex);
      cleaned++;
      runtime.delete(row.id);
    }
    // Containers the store does not consider live (deleted, or unknown to this data directory).
    for (const sandboxId of runtime.keys()) {
      const row = this.store.getSandbox(sandboxId);
      if (row) {
        await this.driver.destroy(sandboxId, row.addressIndex);
        cleaned++;
      }
    }
    return { adopted, cleaned };
  }
}
