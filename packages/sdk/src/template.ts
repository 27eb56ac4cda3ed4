import { createHash } from 'node:crypto';
import {
  deletedResponseSchema,
  listEnvelopeSchema,
  type TemplateObject,
  templateBuildLogsSchema,
  templateBuildResponseSchema,
  templateBuildStatusSchema,
  templateObjectSchema,
  uploadLinkResponseSchema,
} from '@warren/protocol';
import { type Connection, type ConnectionOptions, connection, requestOptions } from './client.ts';
import { APIError, APIUserAbortError, TemplateBuildError } from './errors.ts';
import type { RequestOptions } from './internal/http.ts';
import { tarGz } from './internal/tar.ts';

/** What the server knows about a template. */
export interface TemplateInfo {
  templateId: string;
  name: string;
  displayName: string;
  description: string | undefined;
  /** `building`, `active`, `failed`, … */
  status: string;
  isActive: boolean;
  isPublic: boolean;
  resources: { vcpu: number | undefined; memoryMiB: number | undefined; diskGiB: number | undefined } | undefined;
  createdAt: Date | undefined;
}

/** How the server decides a template's start command is ready. */
export type ReadyCheck =
  | { type: 'port'; port: number }
  | { type: 'url'; url: string }
  | { type: 'file'; path: string }
  | { type: 'process'; name: string }
  | { type: 'command'; command: string };

/** Ready once something listens on `port`. */
export function waitForPort(port: number): ReadyCheck {
  return { type: 'port', port };
}

/** Ready once `url` answers with a 2xx status. */
export function waitForURL(url: string): ReadyCheck {
  return { type: 'url', url };
}

/** Ready once `command` exits with 0. */
export function waitForCommand(command: string): ReadyCheck {
  return { type: 'command', command };
}

/** An event of a template build. */
export type BuildEvent =
  | { type: 'log'; text: string }
  | { type: 'progress'; status: string; percent: number; step: string | undefined };

/** Options of {@link Template.build}. */
export interface BuildOptions extends ConnectionOptions {
  /** Name of the template to create (or replace, with `update`). */
  name: string;
  /** Directory COPY sources are relative to. @default process.cwd() */
  contextDir?: string | undefined;
  /** vCPUs of sandboxes made from it. @default 2 */
  cpu?: number | undefined;
  /** Memory of sandboxes made from it, in MiB. @default 2048 */
  memoryMiB?: number | undefined;
  /** Disk of sandboxes made from it, in GiB. @default 10 */
  diskGiB?: number | undefined;
  /** Replace an existing template of the same name. @default false */
  update?: boolean | undefined;
  /** Run every step again instead of reusing cached layers. @default false */
  skipCache?: boolean | undefined;
  /** Called with each piece of build log. */
  onLog?: ((text: string) => void) | undefined;
  /** Called when the status or progress changes. */
  onProgress?: ((status: string, percent: number, step: string | undefined) => void) | undefined;
  /** Time between two status polls, in milliseconds. @default 1000 */
  pollIntervalMs?: number | undefined;
  signal?: AbortSignal | undefined;
}

type Step = { type: 'COPY' | 'RUN' | 'ENV' | 'WORKDIR' | 'USER'; args: string[]; copySources?: string[] } & {
  owner?: string;
  permissions?: string;
};

function toTemplateInfo(t: TemplateObject): TemplateInfo {
  const r = t.default_resources;
  return {
    templateId: t.id,
    name: t.name,
    displayName: t.display_name,
    description: t.description ?? undefined,
    status: t.status,
    isActive: t.is_active ?? t.status === 'active',
    isPublic: t.is_public ?? false,
    resources: r ? { vcpu: r.vcpu, memoryMiB: r.memory_mb, diskGiB: r.disk_gb } : undefined,
    createdAt: t.created_at ? new Date(t.created_at) : undefined,
  };
}

const sleep = (ms: number, signal: AbortSignal | undefined) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new APIUserAbortError());
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        reject(new APIUserAbortError());
      },
      { once: true },
    );
  });

/**
 * A running template build: iterate it for {@link BuildEvent}s, or `await` it
 * (`wait()`) for the finished {@link TemplateInfo}.
 */
export class TemplateBuild implements AsyncIterable<BuildEvent>, PromiseLike<TemplateInfo> {
  readonly #events: BuildEvent[] = [];
  #wake: (() => void) | undefined;
  #ended = false;
  readonly #done: Promise<TemplateInfo>;

  /** @internal */
  constructor(run: (emit: (e: BuildEvent) => void) => Promise<TemplateInfo>) {
    this.#done = run((e) => {
      this.#events.push(e);
      this.#wake?.();
    }).finally(() => {
      this.#ended = true;
      this.#wake?.();
    });
    this.#done.catch(() => undefined);
  }

  /**
   * Waits for the build to finish and the template to be active.
   * @throws {TemplateBuildError} when the build failed (with its log).
   */
  wait(): Promise<TemplateInfo> {
    return this.#done;
  }

  // biome-ignore lint/suspicious/noThenProperty: awaiting the build waits for it to finish
  then<T1 = TemplateInfo, T2 = never>(
    onfulfilled?: ((value: TemplateInfo) => T1 | PromiseLike<T1>) | null,
    onrejected?: ((reason: unknown) => T2 | PromiseLike<T2>) | null,
  ): Promise<T1 | T2> {
    return this.#done.then(onfulfilled, onrejected);
  }

  /** Like `Promise.prototype.catch` on {@link TemplateBuild.wait}. */
  catch<T = never>(onrejected?: ((reason: unknown) => T | PromiseLike<T>) | null): Promise<TemplateInfo | T> {
    return this.#done.catch(onrejected);
  }

  /** Like `Promise.prototype.finally` on {@link TemplateBuild.wait}. */
  finally(onfinally?: (() => void) | null): Promise<TemplateInfo> {
    return this.#done.finally(onfinally);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<BuildEvent> {
    for (;;) {
      const e = this.#events.shift();
      if (e) {
        yield e;
        continue;
      }
      if (this.#ended) {
        await this.#done;
        return;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
      this.#wake = undefined;
    }
  }
}

/**
 * A template definition: a base image and the steps that build on it. Build
 * it with {@link Template.build}; then `Sandbox.create({ template: name })`.
 * @example
 * const tpl = Template.fromImage('base').copy('app/', '/app/').run('pip install -r /app/requirements.txt').workdir('/app');
 * const info = await Template.build(tpl, { name: 'my-app', onLog: (t) => process.stdout.write(t) });
 */
export class Template {
  readonly #image: string;
  readonly #steps: Step[] = [];
  #startCmd: string | undefined;
  #ready: ReadyCheck | undefined;

  private constructor(image: string) {
    this.#image = image;
  }

  /** Starts from an image: a template name (`base`, `code-interpreter`) or an OCI image reference the server can pull. */
  static fromImage(image: string): Template {
    return new Template(image);
  }

  /** Copies files or directories from the build context (relative paths) to `dest` in the image. */
  copy(src: string | string[], dest: string, options: { owner?: string; permissions?: string } = {}): this {
    const sources = Array.isArray(src) ? src : [src];
    this.#steps.push({ type: 'COPY', args: [sources.join(','), dest], copySources: sources, ...options });
    return this;
  }

  /** Runs a shell command in the image. */
  run(command: string): this {
    this.#steps.push({ type: 'RUN', args: [command] });
    return this;
  }

  /** Sets environment variables for later steps and for sandboxes made from the template. */
  env(vars: Record<string, string>): this {
    for (const [k, v] of Object.entries(vars)) this.#steps.push({ type: 'ENV', args: [k, v] });
    return this;
  }

  /** Sets the working directory of later steps. */
  workdir(path: string): this {
    this.#steps.push({ type: 'WORKDIR', args: [path] });
    return this;
  }

  /** Sets the user of later steps. */
  user(name: string): this {
    this.#steps.push({ type: 'USER', args: [name] });
    return this;
  }

  /** A process every sandbox of this template starts with, and when it counts as ready. */
  startCmd(command: string, ready?: ReadyCheck): this {
    this.#startCmd = command;
    this.#ready = ready;
    return this;
  }

  /**
   * Builds a template: uploads COPY sources, starts the build, and reports log
   * and progress until the template is active.
   * @example
   * for await (const e of Template.build(tpl, { name: 'my-app' })) if (e.type === 'log') process.stdout.write(e.text);
   */
  static build(template: Template, options: BuildOptions): TemplateBuild {
    const conn = connection(options);
    return new TemplateBuild((emit) => template.#build(conn, options, emit));
  }

  /** Every template this server offers. */
  static async list(options: ConnectionOptions & RequestOptions = {}): Promise<TemplateInfo[]> {
    const conn = connection(options);
    const page = await conn.control.json(
      { method: 'GET', path: '/v1/templates', ...requestOptions(options) },
      listEnvelopeSchema(templateObjectSchema),
    );
    return page.data.map(toTemplateInfo);
  }

  /**
   * One template by name or id.
   * @throws {TemplateNotFoundError} when it does not exist.
   */
  static async get(nameOrId: string, options: ConnectionOptions & RequestOptions = {}): Promise<TemplateInfo> {
    const conn = connection(options);
    const t = await conn.control.json(
      { method: 'GET', path: `/v1/templates/${encodeURIComponent(nameOrId)}`, ...requestOptions(options) },
      templateObjectSchema,
    );
    return toTemplateInfo(t);
  }

  /** Deletes a template you built. */
  static async delete(templateId: string, options: ConnectionOptions & RequestOptions = {}): Promise<void> {
    const conn = connection(options);
    await conn.control.json(
      { method: 'DELETE', path: `/v1/templates/${encodeURIComponent(templateId)}`, ...requestOptions(options) },
      deletedResponseSchema,
    );
  }

  async #build(conn: Connection, options: BuildOptions, emit: (e: BuildEvent) => void): Promise<TemplateInfo> {
    const { signal } = options;
    const log = (text: string) => {
      if (text === '') return;
      options.onLog?.(text);
      emit({ type: 'log', text });
    };
    const steps: Record<string, unknown>[] = [];
    for (const step of this.#steps) {
      const wire: Record<string, unknown> = { type: step.type, args: step.args };
      if (step.owner) wire.owner = step.owner;
      if (step.permissions) wire.permissions = step.permissions;
      if (step.copySources) wire.filesHash = await this.#uploadCopy(conn, options, step, log);
      steps.push(wire);
    }
    const started = await conn.control.json(
      {
        method: 'POST',
        path: '/v1/templates/build',
        json: {
          name: options.name,
          from_image: this.#image,
          steps,
          cpu: options.cpu ?? 2,
          memory: options.memoryMiB ?? 2048,
          diskGB: options.diskGiB ?? 10,
          skipCache: options.skipCache ?? false,
          update: options.update ?? false,
          ...(this.#startCmd === undefined ? {} : { startCmd: this.#startCmd }),
          ...(this.#ready === undefined ? {} : { readyCmd: this.#ready }),
        },
        signal,
      },
      templateBuildResponseSchema,
    );
    const interval = options.pollIntervalMs ?? 1000;
    let offset = 0;
    let last = '';
    let logs = '';
    const readLogs = async () => {
      const l = await conn.control.json(
        {
          method: 'GET',
          path: `/v1/templates/build/${encodeURIComponent(started.template_id)}/logs`,
          query: { offset },
          signal,
        },
        templateBuildLogsSchema,
      );
      offset = l.offset;
      logs += l.logs;
      log(l.logs);
    };
    for (;;) {
      await readLogs();
      const s = await conn.control.json(
        { method: 'GET', path: `/v1/templates/build/${encodeURIComponent(started.build_id)}/status`, signal },
        templateBuildStatusSchema,
      );
      const key = `${s.status}|${s.progress}|${s.current_step ?? ''}`;
      if (key !== last) {
        last = key;
        options.onProgress?.(s.status, s.progress, s.current_step ?? undefined);
        emit({ type: 'progress', status: s.status, percent: s.progress, step: s.current_step ?? undefined });
      }
      if (s.status === 'failed' || s.status === 'error') {
        await readLogs().catch(() => undefined);
        throw new TemplateBuildError(
          `Template build ${started.build_id} failed: ${s.error_message ?? 'see logs'}`,
          logs,
        );
      }
      if (s.status === 'active' || s.status === 'success') break;
      await sleep(interval, signal);
    }
    await readLogs().catch(() => undefined);
    for (;;) {
      const t = await conn.control.json(
        { method: 'GET', path: `/v1/templates/${encodeURIComponent(started.template_id)}`, signal },
        templateObjectSchema,
      );
      if (t.status === 'failed') throw new TemplateBuildError(`Template ${t.name} failed to activate`, logs);
      if (t.status === 'active' && t.is_active !== false) return toTemplateInfo(t);
      await sleep(interval, signal);
    }
  }

  async #uploadCopy(conn: Connection, options: BuildOptions, step: Step, log: (t: string) => void): Promise<string> {
    const archive = await tarGz(options.contextDir ?? process.cwd(), step.copySources ?? []);
    const hash = createHash('sha256')
      .update(`COPY ${step.args.join(' ')}\n`)
      .update(archive)
      .digest('hex');
    const link = await conn.control.json(
      {
        method: 'POST',
        path: '/v1/templates/files/upload-link',
        json: { files_hash: hash, content_length: archive.length },
        idempotent: true,
        signal: options.signal,
      },
      uploadLinkResponseSchema,
    );
    if (!link.present && link.upload_url) {
      log(`Uploading ${step.args[0]} (${archive.length} bytes)\n`);
      // The upload URL carries its own authorization (PROTOCOL §5.6): no API key is sent.
      const res = await (options.fetch ?? fetch)(new URL(link.upload_url, conn.options.baseURL), {
        method: 'PUT',
        headers: { 'content-type': 'application/gzip', 'content-length': String(archive.length) },
        body: archive,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      if (!res.ok) throw APIError.from(res.status, await res.text(), res.headers);
    }
    return hash;
  }
}
