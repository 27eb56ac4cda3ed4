import Database from 'better-sqlite3';

/** Schema migrations, applied in order; the index + 1 is the schema version. */
const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
  CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    max_sandboxes INTEGER,
    created_at INTEGER NOT NULL
  );
  CREATE TABLE templates (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    category TEXT NOT NULL DEFAULT 'development',
    language TEXT NOT NULL DEFAULT 'python',
    status TEXT NOT NULL,
    is_public INTEGER NOT NULL DEFAULT 1,
    rootfs_dir TEXT,
    content_hash TEXT,
    resources_json TEXT NOT NULL,
    env_json TEXT NOT NULL DEFAULT '{}',
    workdir TEXT NOT NULL DEFAULT '/workspace',
    features_json TEXT NOT NULL DEFAULT '[]',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE sandboxes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    api_key_id TEXT NOT NULL REFERENCES api_keys(id),
    template_id TEXT NOT NULL REFERENCES templates(id),
    status TEXT NOT NULL,
    address_index INTEGER NOT NULL,
    internet_access INTEGER NOT NULL,
    region TEXT,
    env_json TEXT NOT NULL DEFAULT '{}',
    timeout_seconds INTEGER,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    updated_at INTEGER NOT NULL,
    deleted_at INTEGER,
    error TEXT
  );
  CREATE UNIQUE INDEX sandboxes_live_address ON sandboxes(address_index) WHERE status != 'deleted';
  CREATE INDEX sandboxes_status ON sandboxes(status);
  `,
  `
  -- Warm-pool sandboxes belong to this internal key until a create claims them.
  INSERT INTO api_keys (id, key_hash, name, max_sandboxes, created_at)
    VALUES ('key_pool', 'pool:' || lower(hex(randomblob(32))), 'warm pool (internal, cannot authenticate)', NULL, 0);
  CREATE INDEX sandboxes_expiry ON sandboxes(expires_at) WHERE expires_at IS NOT NULL AND status != 'deleted';
  CREATE INDEX sandboxes_pool ON sandboxes(template_id, status);
  -- A failed sandbox has no runtime left: its network address slot is free again.
  DROP INDEX sandboxes_live_address;
  CREATE UNIQUE INDEX sandboxes_live_address ON sandboxes(address_index) WHERE status NOT IN ('deleted', 'error');
  `,
  `
  -- Template builds (PROTOCOL §5.6): user templates, their start command and readiness check, build progress.
  INSERT INTO api_keys (id, key_hash, name, max_sandboxes, created_at)
    VALUES ('key_build', 'build:' || lower(hex(randomblob(32))), 'template builds (internal, cannot authenticate)', NULL, 0);
  ALTER TABLE templates ADD COLUMN kind TEXT NOT NULL DEFAULT 'builtin';
  ALTER TABLE templates ADD COLUMN api_key_id TEXT;
  ALTER TABLE templates ADD COLUMN start_cmd TEXT;
  ALTER TABLE templates ADD COLUMN ready_json TEXT;
  ALTER TABLE templates ADD COLUMN user_name TEXT;
  ALTER TABLE templates ADD COLUMN build_started_at INTEGER;
  ALTER TABLE templates ADD COLUMN build_completed_at INTEGER;
  ALTER TABLE templates ADD COLUMN build_progress INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE templates ADD COLUMN build_step TEXT;
  ALTER TABLE templates ADD COLUMN build_error TEXT;
  ALTER TABLE templates ADD COLUMN deleted_at INTEGER;
  `,
  `
  -- Caller-chosen key/value labels of a sandbox (Warren SDK \`metadata\`), returned with the sandbox.
  ALTER TABLE sandboxes ADD COLUMN metadata_json TEXT NOT NULL DEFAULT '{}';
  `,
];

export type DB = Database.Database;

/** Opens the database (WAL) and applies pending migrations. */
export function openDatabase(path: string): DB {
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  const version = db.pragma('user_version', { simple: true }) as number;
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] ?? '');
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}
