import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { isAbsolute, join, normalize, relative, resolve, sep } from 'node:path';
import { z } from 'zod';
import { CLIError } from './errors.ts';
import { parseDuration } from './parse.ts';

/** The file `warren template build` reads from the build directory. */
export const TEMPLATE_FILE = 'warren.template.json';

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'invalid environment variable name');
const absolutePath = z
  .string()
  .min(1)
  .refine((p) => p.startsWith('/'), 'must be an absolute path');
/** A duration: milliseconds as a number, or a string like `30s`. */
const duration = z.union([z.number().int().positive(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  try {
    return parseDuration(v);
  } catch (err) {
    ctx.issues.push({ code: 'custom', input: v, message: (err as Error).message });
    return z.NEVER;
  }
});

const STEP_KINDS = ['copy', 'run', 'env', 'workdir', 'user'] as const;

/** One step: exactly one of `copy` (with `to`), `run`, `env`, `workdir`, `user`. */
const stepSchema = z
  .strictObject({
    copy: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    to: absolutePath.optional(),
    owner: z
      .string()
      .regex(/^[A-Za-z0-9_.-]{1,32}(:[A-Za-z0-9_.-]{1,32})?$/, 'must be user or user:group')
      .optional(),
    mode: z
      .string()
      .regex(/^0?[0-7]{3,4}$/, 'must be an octal mode like 0755')
      .optional(),
    run: z.string().min(1).optional(),
    env: z.record(envName, z.string()).optional(),
    workdir: absolutePath.optional(),
    user: z.string().min(1).max(64).optional(),
  })
  .superRefine((s, ctx) => {
    const kinds = STEP_KINDS.filter((k) => s[k] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: `a step has exactly one of ${STEP_KINDS.join(', ')} (found ${kinds.length === 0 ? 'none' : kinds.join(', ')})`,
      });
      return;
    }
    if (s.copy === undefined && (s.to !== undefined || s.owner !== undefined || s.mode !== undefined)) {
      ctx.addIssue({ code: 'custom', message: '"to", "owner" and "mode" belong to a copy step' });
    }
    if (s.copy !== undefined && s.to === undefined) ctx.addIssue({ code: 'custom', message: 'a copy step needs "to"' });
  });

/** The readiness check of the start command: exactly one target. */
const readySchema = z
  .strictObject({
    port: z.number().int().min(1).max(65_535).optional(),
    url: z.url().optional(),
    file: absolutePath.optional(),
    process: z.string().min(1).optional(),
    command: z.string().min(1).optional(),
    timeout: duration.optional(),
    interval: duration.optional(),
  })
  .superRefine((r, ctx) => {
    const n = ['port', 'url', 'file', 'process', 'command'].filter((k) => r[k as keyof typeof r] !== undefined).length;
    if (n !== 1)
      ctx.addIssue({ code: 'custom', message: 'ready has exactly one of port, url, file, process, command' });
  });

/**
 * `warren.template.json`: what `warren template build` builds.
 * @example
 * { "name": "flask-app", "from": "python:3.11",
 *   "steps": [{ "copy": "app/", "to": "/app/" }, { "run": "pip install flask" }, { "workdir": "/app" }],
 *   "start": "python3 app.py", "ready": { "port": 8000 } }
 */
export const templateFileSchema = z
  .strictObject({
    $schema: z.string().optional(),
    name: z
      .string()
      .min(1)
      .max(128)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'may contain letters, digits, ".", "_" and "-"'),
    from: z.string().min(1),
    steps: z.array(stepSchema).max(64).default([]),
    start: z.string().min(1).optional(),
    ready: readySchema.optional(),
    cpu: z.number().int().min(1).max(64).optional(),
    memoryMiB: z.number().int().min(64).max(262_144).optional(),
    diskGB: z.number().int().min(1).max(1024).optional(),
  })
  .superRefine((t, ctx) => {
    if (t.ready && !t.start) ctx.addIssue({ code: 'custom', path: ['ready'], message: '"ready" needs "start"' });
  });

/** A validated `warren.template.json`. */
export type TemplateFile = z.infer<typeof templateFileSchema>;
/** One step of a template file. */
export type TemplateStep = TemplateFile['steps'][number];

/**
 * Validates a template file's JSON text.
 * @throws CLIError naming the file and the first bad field.
 */
export function parseTemplateFile(text: string, path: string): TemplateFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CLIError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  const r = templateFileSchema.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const where = issue?.path.length
    ? issue.path
        .map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))
        .join('')
        .replace(/^\./, '')
    : '(top level)';
  throw new CLIError(`${path}: ${where}: ${issue?.message ?? 'invalid'}`);
}

/** Reads and validates a template file. @throws CLIError */
export async function loadTemplateFile(path: string): Promise<TemplateFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CLIError(
      code === 'ENOENT'
        ? `no ${path} (see \`warren template build --help\` for its format)`
        : `cannot read ${path}: ${(err as Error).message}`,
    );
  }
  return parseTemplateFile(text, path);
}

/** The sources of a copy step, as written. */
export function copySources(step: TemplateStep): string[] {
  if (step.copy === undefined) return [];
  return Array.isArray(step.copy) ? step.copy : [step.copy];
}

/**
 * Checks a copy source names something inside the build directory and
 * returns its path relative to it (as the tarball stores it).
 * @throws CLIError for absolute paths and paths leaving the directory.
 */
export function contextRelative(contextDir: string, source: string): string {
  if (isAbsolute(source)) throw new CLIError(`copy source '${source}' must be relative to the build directory`);
  if (source.includes(',')) throw new CLIError(`copy source '${source}' must not contain a comma`);
  const rel = relative(resolve(contextDir), resolve(contextDir, source));
  if (rel === '' || rel === '..' || rel.startsWith(`..${sep}`) || isAbsolute(rel)) {
    throw new CLIError(
      `copy source '${source}' is outside the build directory (or is the directory itself; name what to copy)`,
    );
  }
  return normalize(rel).split(sep).join('/');
}

/** What a copy step uploads: its files, summed up, and a hash that names the upload. */
export interface CopyPlan {
  /** Source paths relative to the build directory. */
  sources: string[];
  /**
   * What the tarball is made of: each file source itself, and the children of
   * each directory source (not the directory's own entry, which would be
   * unpacked as `<dest>/<dir>`; COPY copies a directory's contents).
   */
  tarRoots: string[];
  files: number;
  bytes: number;
  /** sha256 hex over the step, the tarball's layout and every entry's path, type, mode, size and content (not mtimes). */
  filesHash: string;
}

async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Walks a copy step's sources (symlinks are kept as links, never followed)
 * and computes its `filesHash`, so unchanged files are not uploaded again.
 * @throws CLIError when a source does not exist.
 */
export async function planCopy(contextDir: string, step: TemplateStep): Promise<CopyPlan> {
  const sources = copySources(step).map((s) => contextRelative(contextDir, s));
  const entries: string[] = [];
  const tarRoots: string[] = [];
  let files = 0;
  let bytes = 0;
  const visit = async (rel: string): Promise<void> => {
    const abs = join(contextDir, rel);
    const st = await lstat(abs).catch((err: NodeJS.ErrnoException) => {
      throw new CLIError(
        err.code === 'ENOENT' ? `copy source '${rel}' does not exist in ${contextDir}` : `${abs}: ${err.message}`,
      );
    });
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) {
      entries.push(`d ${rel} ${mode}`);
      for (const name of (await readdir(abs)).sort()) await visit(`${rel}/${name}`);
    } else if (st.isSymbolicLink()) {
      entries.push(`l ${rel} ${await readlink(abs)}`);
    } else if (st.isFile()) {
      files++;
      bytes += st.size;
      entries.push(`f ${rel} ${mode} ${st.size} ${await fileDigest(abs)}`);
    } else {
      throw new CLIError(`copy source '${rel}' is not a file, directory or symlink`);
    }
  };
  for (const s of sources) {
    await visit(s);
    const st = await lstat(join(contextDir, s));
    if (st.isDirectory()) {
      const children = (await readdir(join(contextDir, s))).sort();
      if (children.length === 0) throw new CLIError(`copy source '${s}' is an empty directory`);
      tarRoots.push(...children.map((c) => `${s}/${c}`));
    } else tarRoots.push(s);
  }
  const h = createHash('sha256');
  h.update(`COPY ${sources.join(',')} ${step.to ?? ''}\n`);
  h.update(`tar ${tarRoots.join('\0')}\n`);
  for (const e of entries) h.update(`${e}\n`);
  return { sources, tarRoots, files, bytes, filesHash: h.digest('hex') };
}

/** A step as `POST /v1/templates/build` takes it (PROTOCOL §5.6; the Python dialect plus COPY's owner/permissions). */
export type WireStep = Record<string, unknown>;

/** The build request body for a template file (COPY steps carry their plan's hash). */
export function buildRequest(
  t: TemplateFile,
  plans: ReadonlyMap<number, CopyPlan>,
  options: { name?: string; skipCache?: boolean; update?: boolean },
): Record<string, unknown> {
  const steps: WireStep[] = [];
  t.steps.forEach((s, i) => {
    if (s.copy !== undefined) {
      const plan = plans.get(i);
      if (!plan) throw new Error(`internal: no upload plan for step ${i}`);
      steps.push({
        type: 'COPY',
        args: [plan.sources.join(','), s.to],
        filesHash: plan.filesHash,
        ...(s.owner === undefined ? {} : { owner: s.owner }),
        ...(s.mode === undefined ? {} : { permissions: s.mode }),
      });
    } else if (s.run !== undefined) steps.push({ type: 'RUN', args: [s.run] });
    else if (s.env !== undefined) for (const [k, v] of Object.entries(s.env)) steps.push({ type: 'ENV', args: [k, v] });
    else if (s.workdir !== undefined) steps.push({ type: 'WORKDIR', args: [s.workdir] });
    else if (s.user !== undefined) steps.push({ type: 'USER', args: [s.user] });
  });
  let readyCmd: Record<string, unknown> | undefined;
  const r = t.ready;
  if (r) {
    const timing = {
      ...(r.timeout === undefined ? {} : { timeout: r.timeout }),
      ...(r.interval === undefined ? {} : { interval: r.interval }),
    };
    if (r.port !== undefined) readyCmd = { type: 'port', port: r.port, ...timing };
    else if (r.url !== undefined) readyCmd = { type: 'url', url: r.url, ...timing };
    else if (r.file !== undefined) readyCmd = { type: 'file', path: r.file, ...timing };
    else if (r.process !== undefined) readyCmd = { type: 'process', name: r.process, ...timing };
    else if (r.command !== undefined) readyCmd = { type: 'command', command: r.command, ...timing };
  }
  return {
    name: options.name ?? t.name,
    from_image: t.from,
    steps,
    ...(t.cpu === undefined ? {} : { cpu: t.cpu }),
    ...(t.memoryMiB === undefined ? {} : { memory: t.memoryMiB }),
    ...(t.diskGB === undefined ? {} : { diskGB: t.diskGB }),
    skipCache: options.skipCache === true,
    update: options.update === true,
    ...(t.start === undefined ? {} : { startCmd: t.start }),
    ...(readyCmd === undefined ? {} : { readyCmd }),
  };
}
