import type { ReadyCheck } from '@warren/protocol';
import type Database from 'better-sqlite3';
import type { DB } from './db.ts';

/**
 * Stored sandbox states. `pooled` is internal: a booted warm-pool sandbox no
 * one has claimed yet (never listed, never counted against a key).
 */
export type SandboxStatus = 'creating' | 'running' | 'paused' | 'stopped' | 'error' | 'deleted' | 'pooled';

/** The internal API key warm-pool sandboxes belong to until claimed. */
export const POOL_KEY_ID = 'key_pool';
/** The internal API key template-build sandboxes belong to. */
export const BUILD_KEY_ID = 'key_build';
/** Internal keys: they own sandboxes but can never authenticate. */
export const INTERNAL_KEY_IDS: readonly string[] = [POOL_KEY_ID, BUILD_KEY_ID];

export interface SandboxRow {
  seq: number;
  id: string;
  apiKeyId: string;
  templateId: string;
  status: SandboxStatus;
  addressIndex: number;
  internetAccess: boolean;
  region: string | null;
  envVars: Record<string, string>;
  /** Caller-chosen labels, returned with the sandbox. */
  metadata: Record<string, string>;
  timeoutSeconds: number | null;
  expiresAt: number | null;
  createdAt: number;
  startedAt: number | null;
  updatedAt: number;
  deletedAt: number | null;
  error: string | null;
}

export interface TemplateResources {
  vcpu: number;
  memoryMiB: number;
  diskMiB: number;
  pidsLimit: number;
}

export interface TemplateRow {
  id: string;
  name: string;
  displayName: string;
  description: string;
  category: string;
  language: string;
  status: string;
  isPublic: boolean;
  rootfsDir: string | null;
  contentHash: string | null;
  resources: TemplateResources;
  env: Record<string, string>;
  workdir: string;
  features: string[];
  createdAt: number;
  updatedAt: number;
  /** `builtin` (Debian recipe, shipped) or `user` (built through the build API). */
  kind: TemplateKind;
  /** Key that built a user template. */
  apiKeyId: string | null;
  /** Command started at every boot of a sandbox of this template. */
  startCmd: string | null;
  /** Readiness check a sandbox passes before it is handed out. */
  readyCheck: ReadyCheck | null;
  /** The image's default user (recorded from USER; commands still run as root). */
  userName: string | null;
  build: TemplateBuildState;
  deletedAt: number | null;
}

export type TemplateKind = 'builtin' | 'user';

/** Progress of a template's latest build. */
export interface TemplateBuildState {
  startedAt: number | null;
  completedAt: number | null;
  /** 0–100. */
  progress: number;
  /** The step being built, e.g. `3/5 RUN pip install flask`. */
  step: string | null;
  error: string | null;
}

export interface ApiKeyRow {
  id: string;
  keyHash: string;
  name: string;
  maxSandboxes: number | null;
  createdAt: number;
}

interface RawSandbox {
  seq: number;
  id: string;
  api_key_id: string;
  template_id: string;
  status: SandboxStatus;
  address_index: number;
  internet_access: number;
  region: string | null;
  env_json: string;
  metadata_json: string;
  timeout_seconds: number | null;
  expires_at: number | null;
  created_at: number;
  started_at: number | null;
  updated_at: number;
  deleted_at: number | null;
  error: string | null;
}

interface RawTemplate {
  id: string;
  name: string;
  display_name: string;
  description: string;
  category: string;
  language: string;
  status: string;
  is_public: number;
  rootfs_dir: string | null;
  content_hash: string | null;
  resources_json: string;
  env_json: string;
  workdir: string;
  features_json: string;
  created_at: number;
  updated_at: number;
  kind: TemplateKind;
  api_key_id: string | null;
  start_cmd: string | null;
  ready_json: string | null;
  user_name: string | null;
  build_started_at: number | null;
  build_completed_at: number | null;
  build_progress: number;
  build_step: string | null;
  build_error: string | null;
  deleted_at: number | null;
}

function toSandbox(r: RawSandbox): SandboxRow {
  return {
    seq: r.seq,
    id: r.id,
    apiKeyId: r.api_key_id,
    templateId: r.template_id,
    status: r.status,
    addressIndex: r.address_index,
    internetAccess: r.internet_access === 1,
    region: r.region,
    envVars: JSON.parse(r.env_json) as Record<string, string>,
    metadata: JSON.parse(r.metadata_json) as Record<string, string>,
    timeoutSeconds: r.timeout_seconds,
    expiresAt: r.expires_at,
    createdAt: r.created_at,
    startedAt: r.started_at,
    updatedAt: r.updated_at,
    deletedAt: r.deleted_at,
    error: r.error,
  };
}

function toTemplate(r: RawTemplate): TemplateRow {
  return {
    id: r.id,
    name: r.name,
    displayName: r.display_name,
    description: r.description,
    category: r.category,
    language: r.language,
    status: r.status,
    isPublic: r.is_public === 1,
    rootfsDir: r.rootfs_dir,
    contentHash: r.content_hash,
    resources: JSON.parse(r.resources_json) as TemplateResources,
    env: JSON.parse(r.env_json) as Record<string, string>,
    workdir: r.workdir,
    features: JSON.parse(r.features_json) as string[],
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    kind: r.kind,
    apiKeyId: r.api_key_id,
    startCmd: r.start_cmd,
    readyCheck: r.ready_json === null ? null : (JSON.parse(r.ready_json) as ReadyCheck),
    userName: r.user_name,
    build: {
      startedAt: r.build_started_at,
      completedAt: r.build_completed_at,
      progress: r.build_progress,
      step: r.build_step,
      error: r.build_error,
    },
    deletedAt: r.deleted_at,
  };
}

interface RawApiKey {
  id: string;
  key_hash: string;
  name: string;
  max_sandboxes: number | null;
  created_at: number;
}

function toApiKey(r: RawApiKey): ApiKeyRow {
  return { id: r.id, keyHash: r.key_hash, name: r.name, maxSandboxes: r.max_sandboxes, createdAt: r.created_at };
}

/** Prefix of a revoked key's stored hash: a SHA-256 hex digest never starts with it. */
const REVOKED_PREFIX = 'revoked:';

/**
 * SQL condition of a key that can authenticate: its stored hash is a SHA-256
 * hex digest. Internal keys (`pool:…`, `build:…`) and revoked keys never are.
 */
const USABLE_KEY = "length(key_hash) = 64 AND key_hash NOT GLOB '*[^0-9a-f]*'";

/** Thrown when no free network address slot is left. */
export class AddressesExhaustedError extends Error {}

/** All SQL lives here; services call these typed methods. */
export class Store {
  readonly db: DB;

  /** Prepared statements by SQL text: preparing costs tens of microseconds, and a create runs about ten. */
  private readonly statements = new Map<string, Database.Statement>();

  private prepare(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  constructor(db: DB) {
    this.db = db;
  }

  getMeta(key: string): string | undefined {
    const row = this.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.prepare(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value',
    ).run(key, value);
  }

  // API keys

  insertApiKey(row: ApiKeyRow): void {
    this.prepare('INSERT INTO api_keys (id, key_hash, name, max_sandboxes, created_at) VALUES (?, ?, ?, ?, ?)').run(
      row.id,
      row.keyHash,
      row.name,
      row.maxSandboxes,
      row.createdAt,
    );
  }

  findApiKeyByHash(keyHash: string): ApiKeyRow | undefined {
    const r = this.prepare('SELECT * FROM api_keys WHERE key_hash = ?').get(keyHash) as RawApiKey | undefined;
    return r && toApiKey(r);
  }

  /** API keys that can authenticate (internal and revoked keys cannot). */
  countApiKeys(): number {
    return (this.prepare(`SELECT COUNT(*) AS n FROM api_keys WHERE ${USABLE_KEY}`).get() as { n: number }).n;
  }

  /** Keys that can authenticate, oldest first (internal and revoked keys are left out). */
  listApiKeys(): ApiKeyRow[] {
    const rows = this.prepare(
      `SELECT * FROM api_keys WHERE ${USABLE_KEY} ORDER BY created_at, id`,
    ).all() as RawApiKey[];
    return rows.map(toApiKey);
  }

  /** A key that can authenticate, by id. */
  getApiKey(id: string): ApiKeyRow | undefined {
    const r = this.prepare(`SELECT * FROM api_keys WHERE id = ? AND ${USABLE_KEY}`).get(id) as RawApiKey | undefined;
    return r && toApiKey(r);
  }

  /**
   * Revokes a key unless it holds live sandboxes, in one transaction. The row
   * stays (its sandboxes' history refers to it); its hash is replaced by one
   * no presented key can ever hash to.
   */
  revokeApiKey(
    id: string,
  ): { ok: true } | { ok: false; reason: 'not_found' } | { ok: false; reason: 'live'; live: number } {
    return this.db.transaction(() => {
      if (!this.getApiKey(id)) return { ok: false as const, reason: 'not_found' as const };
      const live = this.countLive(id);
      if (live > 0) return { ok: false as const, reason: 'live' as const, live };
      this.prepare(`UPDATE api_keys SET key_hash = '${REVOKED_PREFIX}' || id || ':' || key_hash WHERE id = ?`).run(id);
      return { ok: true as const };
    })();
  }

  // Templates

  /** Inserts or updates a built-in template's row (by name). */
  upsertTemplate(
    t: Omit<
      TemplateRow,
      | 'id'
      | 'createdAt'
      | 'updatedAt'
      | 'kind'
      | 'apiKeyId'
      | 'startCmd'
      | 'readyCheck'
      | 'userName'
      | 'build'
      | 'deletedAt'
    > & { id?: string },
  ): TemplateRow {
    const now = Date.now();
    const existing = this.findTemplate(t.name);
    const id = existing?.id ?? t.id ?? this.nextTemplateId();
    this.prepare(
      `INSERT INTO templates (id, name, display_name, description, category, language, status, is_public, rootfs_dir,
           content_hash, resources_json, env_json, workdir, features_json, created_at, updated_at)
         VALUES (@id, @name, @display_name, @description, @category, @language, @status, @is_public, @rootfs_dir,
           @content_hash, @resources_json, @env_json, @workdir, @features_json, @now, @now)
         ON CONFLICT(id) DO UPDATE SET display_name = excluded.display_name, description = excluded.description,
           category = excluded.category, language = excluded.language, status = excluded.status,
           is_public = excluded.is_public, rootfs_dir = excluded.rootfs_dir, content_hash = excluded.content_hash,
           resources_json = excluded.resources_json, env_json = excluded.env_json, workdir = excluded.workdir,
           features_json = excluded.features_json, updated_at = excluded.updated_at`,
    ).run({
      id,
      name: t.name,
      display_name: t.displayName,
      description: t.description,
      category: t.category,
      language: t.language,
      status: t.status,
      is_public: t.isPublic ? 1 : 0,
      rootfs_dir: t.rootfsDir,
      content_hash: t.contentHash,
      resources_json: JSON.stringify(t.resources),
      env_json: JSON.stringify(t.env),
      workdir: t.workdir,
      features_json: JSON.stringify(t.features),
      now,
    });
    return this.findTemplate(id)!;
  }

  private nextTemplateId(): string {
    const r = this.prepare('SELECT MAX(CAST(id AS INTEGER)) AS n FROM templates').get() as { n: number | null };
    return String((r.n ?? 0) + 1);
  }

  /** Finds a template (not deleted) by id or by name. */
  findTemplate(nameOrId: string): TemplateRow | undefined {
    const r = this.prepare(
      'SELECT * FROM templates WHERE (id = ? OR name = ?) AND deleted_at IS NULL ORDER BY id = ? DESC LIMIT 1',
    ).get(nameOrId, nameOrId, nameOrId) as RawTemplate | undefined;
    return r && toTemplate(r);
  }

  /** A template by id, deleted ones included (sandboxes of a deleted template keep running). */
  getTemplateById(id: string): TemplateRow | undefined {
    const r = this.prepare('SELECT * FROM templates WHERE id = ?').get(id) as RawTemplate | undefined;
    return r && toTemplate(r);
  }

  /**
   * Starts a user template's build: inserts the row (or, with `replace`,
   * resets an existing user template's build state, keeping its active
   * rootfs until the new one is ready). Returns undefined when the name is
   * taken and `replace` is false, or taken by a built-in template.
   */
  beginUserTemplateBuild(t: {
    name: string;
    apiKeyId: string;
    resources: TemplateResources;
    startCmd: string | null;
    readyCheck: ReadyCheck | null;
    replace: boolean;
  }): TemplateRow | undefined {
    return this.db.transaction(() => {
      const now = Date.now();
      const existing = this.findTemplate(t.name);
      if (existing && (existing.kind !== 'user' || !t.replace)) return undefined;
      const id = existing?.id ?? this.nextTemplateId();
      if (!existing) {
        this.prepare(
          `INSERT INTO templates (id, name, display_name, description, category, language, status, is_public,
               resources_json, env_json, workdir, features_json, created_at, updated_at, kind, api_key_id)
             VALUES (?, ?, ?, '', 'custom', 'python', 'building', 0, ?, '{}', '/workspace', '[]', ?, ?, 'user', ?)`,
        ).run(id, t.name, t.name, JSON.stringify(t.resources), now, now, t.apiKeyId);
      }
      this.prepare(
        `UPDATE templates SET status = CASE WHEN rootfs_dir IS NULL THEN 'building' ELSE status END,
             build_started_at = ?, build_completed_at = NULL, build_progress = 0, build_step = NULL, build_error = NULL,
             updated_at = ? WHERE id = ?`,
      ).run(now, now, id);
      // A rebuild's resources and start command take effect when it succeeds (finishUserTemplateBuild).
      return this.getTemplateById(id);
    })();
  }

  /** Records build progress. */
  setBuildProgress(id: string, progress: number, step: string | null): void {
    this.prepare('UPDATE templates SET build_progress = ?, build_step = ?, updated_at = ? WHERE id = ?').run(
      progress,
      step,
      Date.now(),
      id,
    );
  }

  /** Activates a finished build: the template now boots from `rootfsDir` with this metadata. */
  finishUserTemplateBuild(
    id: string,
    r: {
      rootfsDir: string;
      contentHash: string;
      resources: TemplateResources;
      env: Record<string, string>;
      workdir: string;
      userName: string | null;
      startCmd: string | null;
      readyCheck: ReadyCheck | null;
      language: string;
      features: string[];
    },
  ): void {
    const now = Date.now();
    this.prepare(
      `UPDATE templates SET status = 'active', rootfs_dir = ?, content_hash = ?, resources_json = ?, env_json = ?,
           workdir = ?, user_name = ?, start_cmd = ?, ready_json = ?, language = ?, features_json = ?,
           build_progress = 100, build_step = NULL, build_completed_at = ?, updated_at = ?
         WHERE id = ? AND deleted_at IS NULL`,
    ).run(
      r.rootfsDir,
      r.contentHash,
      JSON.stringify(r.resources),
      JSON.stringify(r.env),
      r.workdir,
      r.userName,
      r.startCmd,
      r.readyCheck === null ? null : JSON.stringify(r.readyCheck),
      r.language,
      JSON.stringify(r.features),
      now,
      now,
      id,
    );
  }

  /** Marks a build failed; a template that was active before the rebuild stays active on its old rootfs. */
  failUserTemplateBuild(id: string, error: string): void {
    const now = Date.now();
    this.prepare(
      `UPDATE templates SET status = CASE WHEN rootfs_dir IS NULL THEN 'failed' ELSE status END, build_error = ?,
           build_step = NULL, build_completed_at = ?, updated_at = ? WHERE id = ?`,
    ).run(error, now, now, id);
  }

  /** User templates whose build was running (used at startup: a restart ends every build). */
  buildingUserTemplates(): TemplateRow[] {
    const rows = this.prepare(
      "SELECT * FROM templates WHERE kind = 'user' AND deleted_at IS NULL AND build_started_at IS NOT NULL AND build_completed_at IS NULL",
    ).all() as RawTemplate[];
    return rows.map(toTemplate);
  }

  /**
   * Deletes a user template: the row stays as a tombstone (sandboxes refer to
   * it) under a name no request can use, so the name is free again.
   */
  deleteUserTemplate(id: string): boolean {
    const now = Date.now();
    const r = this.prepare(
      `UPDATE templates SET deleted_at = ?, status = 'archived', name = name || '~deleted-' || id, updated_at = ?
         WHERE id = ? AND kind = 'user' AND deleted_at IS NULL`,
    ).run(now, now, id);
    return r.changes === 1;
  }

  listTemplates(filter: { category?: string; language?: string } = {}): TemplateRow[] {
    const rows = this.prepare(
      'SELECT * FROM templates WHERE deleted_at IS NULL ORDER BY CAST(id AS INTEGER)',
    ).all() as RawTemplate[];
    return rows
      .map(toTemplate)
      .filter(
        (t) =>
          (filter.category === undefined || t.category === filter.category) &&
          (filter.language === undefined || t.language === filter.language),
      );
  }

  // Sandboxes

  /**
   * Inserts a new sandbox in `creating` with the lowest free address slot, and
   * enforces the key's concurrent-sandbox limit, in one transaction.
   */
  insertSandbox(
    row: Omit<SandboxRow, 'seq' | 'addressIndex' | 'updatedAt' | 'deletedAt' | 'error' | 'startedAt' | 'status'>,
    limits: { maxAddressIndex: number; maxSandboxes: number },
    status: 'creating' | 'pooled' = 'creating',
  ): { ok: true; sandbox: SandboxRow } | { ok: false; current: number } {
    return this.db.transaction(() => {
      const current = this.countLive(row.apiKeyId);
      if (current >= limits.maxSandboxes) return { ok: false as const, current };
      const free = this.prepare(
        `SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM sandboxes WHERE status NOT IN ('deleted', 'error') AND address_index = 1) THEN 1
             ELSE (SELECT MIN(s.address_index) + 1 FROM sandboxes s WHERE s.status NOT IN ('deleted', 'error')
               AND NOT EXISTS (SELECT 1 FROM sandboxes t WHERE t.status NOT IN ('deleted', 'error')
                 AND t.address_index = s.address_index + 1))
           END AS idx`,
      ).get() as { idx: number };
      if (free.idx > limits.maxAddressIndex) throw new AddressesExhaustedError('no free sandbox address');
      this.prepare(
        `INSERT INTO sandboxes (id, api_key_id, template_id, status, address_index, internet_access, region, env_json,
             metadata_json, timeout_seconds, expires_at, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        row.id,
        row.apiKeyId,
        row.templateId,
        status,
        free.idx,
        row.internetAccess ? 1 : 0,
        row.region,
        JSON.stringify(row.envVars),
        JSON.stringify(row.metadata),
        row.timeoutSeconds,
        row.expiresAt,
        row.createdAt,
        row.createdAt,
      );
      return { ok: true as const, sandbox: this.getSandbox(row.id)! };
    })();
  }

  getSandbox(id: string): SandboxRow | undefined {
    const r = this.prepare('SELECT * FROM sandboxes WHERE id = ?').get(id) as RawSandbox | undefined;
    return r && toSandbox(r);
  }

  /** Moves a sandbox to `to` only if it is in one of `from`; returns whether it moved. */
  transition(id: string, from: readonly SandboxStatus[], to: SandboxStatus, fields: { error?: string } = {}): boolean {
    const now = Date.now();
    const placeholders = from.map(() => '?').join(', ');
    const r = this.prepare(
      `UPDATE sandboxes SET status = ?, updated_at = ?,
           started_at = CASE WHEN ? = 'running' AND started_at IS NULL THEN ? ELSE started_at END,
           deleted_at = CASE WHEN ? = 'deleted' THEN ? ELSE deleted_at END,
           error = COALESCE(?, error)
         WHERE id = ? AND status IN (${placeholders})`,
    ).run(to, now, to, now, to, now, fields.error ?? null, id, ...from);
    return r.changes === 1;
  }

  setTimeout(id: string, timeoutSeconds: number | null, expiresAt: number | null): void {
    this.prepare('UPDATE sandboxes SET timeout_seconds = ?, expires_at = ?, updated_at = ? WHERE id = ?').run(
      timeoutSeconds,
      expiresAt,
      Date.now(),
      id,
    );
  }

  /**
   * Atomically hands one booted pool sandbox of a template to a key: it leaves
   * the pool in the same statement that picks it, so two claims never get the
   * same sandbox. Returns undefined when the pool is empty.
   */
  claimPooled(
    templateId: string,
    claim: Pick<
      SandboxRow,
      'apiKeyId' | 'internetAccess' | 'region' | 'envVars' | 'metadata' | 'timeoutSeconds' | 'expiresAt' | 'createdAt'
    >,
  ): SandboxRow | undefined {
    const r = this.prepare(
      `UPDATE sandboxes SET status = 'creating', api_key_id = @apiKeyId, internet_access = @internetAccess,
           region = @region, env_json = @envJson, metadata_json = @metadataJson, timeout_seconds = @timeoutSeconds, expires_at = @expiresAt,
           created_at = @createdAt, updated_at = @createdAt
         WHERE id = (SELECT id FROM sandboxes WHERE status = 'pooled' AND template_id = @templateId ORDER BY seq LIMIT 1)
         RETURNING *`,
    ).get({
      templateId,
      apiKeyId: claim.apiKeyId,
      internetAccess: claim.internetAccess ? 1 : 0,
      region: claim.region,
      envJson: JSON.stringify(claim.envVars),
      metadataJson: JSON.stringify(claim.metadata),
      timeoutSeconds: claim.timeoutSeconds,
      expiresAt: claim.expiresAt,
      createdAt: claim.createdAt,
    }) as RawSandbox | undefined;
    return r && toSandbox(r);
  }

  /** Sandboxes a key holds now (everything not deleted, failed or pooled). */
  countLive(apiKeyId: string): number {
    const r = this.prepare(
      "SELECT COUNT(*) AS n FROM sandboxes WHERE api_key_id = ? AND status NOT IN ('deleted', 'error', 'pooled')",
    ).get(apiKeyId) as { n: number };
    return r.n;
  }

  /** Warm-pool sandboxes of a template: booted (`pooled`) or booting. */
  countPool(templateId: string): number {
    const r = this.prepare(
      "SELECT COUNT(*) AS n FROM sandboxes WHERE template_id = ? AND api_key_id = ? AND status IN ('creating', 'pooled')",
    ).get(templateId, POOL_KEY_ID) as { n: number };
    return r.n;
  }

  /** Live sandboxes whose expiry has passed. */
  expiredSandboxes(nowMs: number): SandboxRow[] {
    const rows = this.prepare(
      "SELECT * FROM sandboxes WHERE expires_at IS NOT NULL AND expires_at <= ? AND status NOT IN ('deleted', 'pooled')",
    ).all(nowMs) as RawSandbox[];
    return rows.map(toSandbox);
  }

  /** Live sandboxes of one key, newest first, keyset-paginated by `seq`. */
  listSandboxes(filter: {
    apiKeyId: string;
    status?: string;
    region?: string;
    beforeSeq?: number;
    limit: number;
  }): SandboxRow[] {
    const where = ['api_key_id = @apiKeyId', "status != 'deleted'"];
    if (filter.status !== undefined) where.push('status = @status');
    if (filter.region !== undefined) where.push('region = @region');
    if (filter.beforeSeq !== undefined) where.push('seq < @beforeSeq');
    const rows = this.prepare(
      `SELECT * FROM sandboxes WHERE ${where.join(' AND ')} ORDER BY seq DESC LIMIT @limit`,
    ).all({ ...filter, limit: filter.limit }) as RawSandbox[];
    return rows.map(toSandbox);
  }

  /** Sandboxes in any of the given states (all keys). */
  sandboxesInStatus(statuses: readonly SandboxStatus[]): SandboxRow[] {
    const rows = this.prepare(`SELECT * FROM sandboxes WHERE status IN (${statuses.map(() => '?').join(', ')})`).all(
      ...statuses,
    ) as RawSandbox[];
    return rows.map(toSandbox);
  }
}
