/**
 * Template builds (PROTOCOL §5.6): upload links and uploads of build-context
 * tarballs, and the builds themselves. A build resolves `from_image`, then
 * makes one cached layer per COPY/RUN step (RUN steps run in a build sandbox
 * with network), records ENV/WORKDIR/USER in the template's metadata, adds
 * the runtime layer, and activates the template. Logs go to a file per
 * template, polled by offset.
 */

import { execFile } from 'node:child_process';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { appendFile, mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { type BuildRequest, type BuildStep, ErrorCode, rfc3339, ServiceError } from '@warren/protocol';
import { streamAgentCommand } from '../internal/agent-stream.ts';
import type { Driver } from '../runtime/driver.ts';
import { type ApiKeyRow, BUILD_KEY_ID, type Store, type TemplateRow } from '../store/store.ts';
import { BaseImageError, resolveBaseImage } from '../templates/base-images.ts';
import { SANDBOX_ID_SHIFT } from '../templates/builder.ts';
import { CopyStepError, copyIntoLayer } from '../templates/copy-layer.ts';
import { resolveOwner } from '../templates/layer-stack.ts';
import { fillRuntimeLayer, LayerCache, layerKey, MAX_LOWERDIR_CHARS } from '../templates/layers.ts';
import type { ImageOptions } from '../templates/oci.ts';
import type { Logger, SandboxService } from './sandboxes.ts';
import type { TokenService } from './tokens.ts';

const execFileAsync = promisify(execFile);

/** Largest log chunk one `logs?offset=` answer returns. */
const MAX_LOG_CHUNK = 1024 * 1024;
/** Largest build log kept; later lines are dropped with a note. */
const MAX_LOG_BYTES = 8 * 1024 * 1024;
/** How long an upload link stays valid. */
const UPLOAD_LINK_TTL_MS = 60 * 60 * 1000;

export interface TemplateBuildServiceOptions {
  store: Store;
  driver: Driver;
  tokens: TokenService;
  sandboxes: SandboxService;
  log: Logger;
  cacheDir: string;
  dataDir: string;
  /** Base URL clients reach this server at (upload links and logs URLs point there). */
  publicURL: () => string;
  /** Largest build-context upload. */
  uploadMaxBytes: number;
  /** Limit of one RUN step. */
  stepTimeoutMs: number;
  /** Limit of a whole build. */
  buildTimeoutMs: number;
  /** Builds running at once; more wait in line. */
  maxConcurrentBuilds: number;
  /** Registry and archive settings for `from_image`. */
  image: Omit<ImageOptions, 'signal' | 'onLog' | 'credentials'>;
  /** Registries builds may pull from; undefined = any. */
  allowedRegistries?: readonly string[] | undefined;
  /** Told when a build made a template active (the warm pool replaces its sandboxes). */
  onActivated?: (templateId: string) => void;
  /** Told when a template was deleted. */
  onDeleted?: (templateId: string) => void;
}

/** A build's state as the status endpoint reports it. */
export interface BuildStatusView {
  build_id: string;
  template_id: string;
  status: 'building' | 'active' | 'failed';
  progress: number;
  started_at: string;
  current_step?: string;
  completed_at?: string;
  error_message?: string;
  build_duration_ms?: number;
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function describeStep(step: BuildStep): string {
  switch (step.kind) {
    case 'COPY':
      return `COPY ${step.sources.join(',')} ${step.dest}`;
    case 'RUN':
      return `RUN ${step.command}`;
    case 'ENV':
      return `ENV ${step.key}=${step.value}`;
    case 'WORKDIR':
      return `WORKDIR ${step.path}`;
    case 'USER':
      return `USER ${step.user}`;
    case 'CMD':
      return `CMD ${step.command}`;
  }
}

export class TemplateBuildService {
  private readonly o: TemplateBuildServiceOptions;
  private readonly layers: LayerCache;
  private readonly uploadKey = randomBytes(32);
  /** Bytes written to each running build's log. */
  private readonly logBytes = new Map<string, number>();
  private readonly running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private readonly queue: Array<() => void> = [];
  private active = 0;

  constructor(options: TemplateBuildServiceOptions) {
    this.o = options;
    this.layers = new LayerCache(options.cacheDir);
  }

  private uploadsDir(): string {
    return join(this.o.cacheDir, 'uploads');
  }

  private uploadPath(hash: string): string {
    return join(this.uploadsDir(), `${hash}.tar.gz`);
  }

  private logPath(templateId: string): string {
    return join(this.o.dataDir, 'builds', `${templateId}.log`);
  }

  private sign(hash: string, length: number, expires: number): string {
    return createHmac('sha256', this.uploadKey).update(`${hash}:${length}:${expires}`).digest('base64url');
  }

  /** `POST /v1/templates/files/upload-link`. */
  async uploadLink(hash: string, contentLength: number): Promise<Record<string, unknown>> {
    if (contentLength > this.o.uploadMaxBytes) {
      throw new ServiceError(
        ErrorCode.PAYLOAD_TOO_LARGE,
        `Upload of ${contentLength} bytes exceeds the limit of ${this.o.uploadMaxBytes} bytes`,
      );
    }
    const present = await stat(this.uploadPath(hash)).then(
      (s) => s.isFile(),
      () => false,
    );
    if (present) return { present: true, files_hash: hash };
    const expires = Date.now() + UPLOAD_LINK_TTL_MS;
    const q = new URLSearchParams({
      length: String(contentLength),
      expires: String(expires),
      signature: this.sign(hash, contentLength, expires),
    });
    return {
      present: false,
      upload_url: `${this.o.publicURL()}/v1/templates/files/upload/${hash}?${q}`,
      expires_at: rfc3339(expires),
      files_hash: hash,
    };
  }

  /**
   * The `PUT <upload_url>` (no API key: the signed link is the credential).
   * Streams the body to disk, never past the signed length.
   */
  async acceptUpload(
    hash: string,
    query: { length: string | undefined; expires: string | undefined; signature: string | undefined },
    contentLength: number | undefined,
    body: Readable,
  ): Promise<void> {
    const length = Number(query.length);
    const expires = Number(query.expires);
    const expected = Buffer.from(this.sign(hash, length, expires));
    const given = Buffer.from(query.signature ?? '');
    if (
      !Number.isSafeInteger(length) ||
      !Number.isSafeInteger(expires) ||
      given.length !== expected.length ||
      !timingSafeEqual(given, expected)
    ) {
      throw new ServiceError(ErrorCode.FORBIDDEN, 'Invalid upload link');
    }
    if (Date.now() > expires) throw new ServiceError(ErrorCode.FORBIDDEN, 'Upload link expired');
    if (contentLength !== undefined && contentLength > length) {
      throw new ServiceError(ErrorCode.PAYLOAD_TOO_LARGE, `Upload exceeds the ${length} bytes the link was made for`);
    }
    await mkdir(this.uploadsDir(), { recursive: true });
    const tmp = `${this.uploadPath(hash)}.tmp-${randomBytes(6).toString('hex')}`;
    let received = 0;
    try {
      await pipeline(
        body,
        async function* (source: AsyncIterable<Buffer>) {
          for await (const chunk of source) {
            received += chunk.length;
            if (received > length) {
              throw new ServiceError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                `Upload exceeds the ${length} bytes the link was made for`,
              );
            }
            yield chunk;
          }
        },
        createWriteStream(tmp, { mode: 0o600 }),
      );
      await rename(tmp, this.uploadPath(hash));
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /**
   * `POST /v1/templates/build`: records the template as building and starts
   * the build in the background.
   * @throws ServiceError CONFLICT when the name exists and `update` is false.
   */
  start(key: ApiKeyRow, req: BuildRequest): TemplateRow {
    const resources = { vcpu: req.vcpu, memoryMiB: req.memoryMiB, diskMiB: req.diskMiB, pidsLimit: 1024 };
    const row = this.o.store.beginUserTemplateBuild({
      name: req.name,
      apiKeyId: key.id,
      resources,
      startCmd: req.startCmd,
      readyCheck: req.readyCheck,
      replace: req.update,
    });
    if (!row) {
      const existing = this.o.store.findTemplate(req.name);
      throw new ServiceError(
        ErrorCode.CONFLICT,
        existing?.kind === 'builtin'
          ? `Template ${req.name} is a built-in template`
          : `Template ${req.name} already exists (set update: true to rebuild it)`,
      );
    }
    if (this.running.has(row.id)) {
      throw new ServiceError(ErrorCode.CONFLICT, `Template ${req.name} is already being built`);
    }
    const controller = new AbortController();
    const done = this.runQueued(row, req, controller)
      .catch((err: unknown) => this.o.log.error(`template ${req.name}: ${(err as Error).message}`))
      .finally(() => this.running.delete(row.id));
    this.running.set(row.id, { controller, done });
    return row;
  }

  private async runQueued(row: TemplateRow, req: BuildRequest, controller: AbortController): Promise<void> {
    await mkdir(join(this.o.dataDir, 'builds'), { recursive: true });
    await writeFile(this.logPath(row.id), '');
    this.logBytes.set(row.id, 0);
    if (this.active >= this.o.maxConcurrentBuilds) {
      await this.appendLog(row.id, 'waiting for another build to finish');
      await new Promise<void>((resolve) => this.queue.push(resolve));
    }
    this.active++;
    try {
      await this.build(row, req, controller);
    } finally {
      this.logBytes.delete(row.id);
      this.active--;
      this.queue.shift()?.();
    }
  }

  /** Appends to a build's log; its size is counted here (the log is written only by this process). */
  private async appendLog(templateId: string, text: string): Promise<void> {
    const size = this.logBytes.get(templateId) ?? 0;
    if (size >= MAX_LOG_BYTES) return;
    const lines = text.endsWith('\n') ? text : `${text}\n`;
    const room = MAX_LOG_BYTES - size;
    const chunk = lines.length <= room ? lines : `${lines.slice(0, room)}\n[log truncated]\n`;
    this.logBytes.set(templateId, size + Buffer.byteLength(chunk));
    await appendFile(this.logPath(templateId), chunk);
  }

  private async build(row: TemplateRow, req: BuildRequest, controller: AbortController): Promise<void> {
    const { store } = this.o;
    const started = Date.now();
    const timer = setTimeout(
      () => controller.abort(new Error(`build exceeded its ${Math.round(this.o.buildTimeoutMs / 1000)} s limit`)),
      this.o.buildTimeoutMs,
    );
    // Appends are chained so lines land in the order they were logged.
    let logged = Promise.resolve();
    const log = (line: string) => {
      logged = logged.then(() => this.appendLog(row.id, line));
      return logged;
    };
    const total = req.steps.length + 2;
    let done = 0;
    const progress = (step: string | null) => store.setBuildProgress(row.id, Math.floor((done / total) * 100), step);
    try {
      await log(`building template ${req.name} (id ${row.id}) from ${req.fromImage}`);
      progress(`base image ${req.fromImage}`);
      const base = await resolveBaseImage(req.fromImage, {
        findTemplate: (name) => {
          const t = store.findTemplate(name);
          return t && t.id !== row.id ? t : undefined;
        },
        cacheDir: this.o.cacheDir,
        allowedRegistries: this.o.allowedRegistries,
        image: { ...this.o.image, ...(req.registryCredentials ? { credentials: req.registryCredentials } : {}) },
        onLog: (line) => void log(line),
        signal: controller.signal,
      });
      await log(`base: ${base.description}`);
      done++;

      const state = {
        layers: [...base.layers],
        key: layerKey('', base.key),
        env: { ...base.env },
        workdir: base.workdir ?? '/workspace',
        user: base.user,
        cmd: null as string | null,
      };
      const nonce = randomBytes(8).toString('hex');
      let cachedSteps = 0;
      let builtSteps = 0;
      for (const [i, step] of req.steps.entries()) {
        controller.signal.throwIfAborted();
        const label = `${i + 1}/${req.steps.length} ${describeStep(step)}`;
        progress(label);
        if (step.kind === 'ENV') state.env[step.key] = step.value;
        else if (step.kind === 'WORKDIR') state.workdir = step.path;
        else if (step.kind === 'USER') state.user = step.user;
        else if (step.kind === 'CMD') state.cmd = step.command;
        else {
          const skip = req.skipCache || step.skipCache;
          const inputs =
            step.kind === 'COPY'
              ? { ...step, skipCache: undefined }
              : { kind: 'RUN', command: step.command, env: state.env, workdir: state.workdir, user: state.user };
          const key = layerKey(state.key, skip ? { ...inputs, nonce } : inputs);
          if (!skip && (await this.layers.has(key))) {
            await log(`step ${label}: CACHED (layer ${key})`);
            cachedSteps++;
          } else {
            await log(`step ${label}: building${skip ? ' (cache skipped)' : ''}`);
            const t0 = Date.now();
            await this.layers.create(key, { step: describeStep(step) }, (dir) =>
              step.kind === 'COPY'
                ? this.copyStep(step, dir, state.layers).then(() => undefined)
                : this.runStep(row, req, step.command, state, dir, controller.signal, log),
            );
            await log(`step ${label}: done in ${Date.now() - t0} ms (layer ${key})`);
            builtSteps++;
          }
          state.layers.unshift(this.layers.path(key));
          state.key = key;
        }
        done++;
      }

      progress('finalizing');
      const runtimeKey = layerKey(state.key, { kind: 'runtime', workdir: state.workdir });
      if (!(await this.layers.has(runtimeKey))) {
        await this.layers.create(runtimeKey, { step: 'runtime files' }, (dir) =>
          fillRuntimeLayer(dir, state.layers, state.workdir).then(() => undefined),
        );
      }
      state.layers.unshift(this.layers.path(runtimeKey));
      const lowerdir = state.layers.join(':');
      if (lowerdir.length > MAX_LOWERDIR_CHARS) {
        throw new Error(`the template has too many layers (${state.layers.length}); combine RUN steps`);
      }
      const startCmd = req.startCmd ?? state.cmd;
      await log(
        `build finished in ${Date.now() - started} ms: ${builtSteps} layer(s) built, ${cachedSteps} cached; template ${req.name} is active`,
      );
      store.finishUserTemplateBuild(row.id, {
        rootfsDir: lowerdir,
        contentHash: runtimeKey,
        resources: { vcpu: req.vcpu, memoryMiB: req.memoryMiB, diskMiB: req.diskMiB, pidsLimit: 1024 },
        env: state.env,
        workdir: state.workdir,
        userName: state.user,
        startCmd,
        readyCheck: startCmd === null ? null : req.readyCheck,
        language: base.language,
        features: base.features,
      });
      this.o.onActivated?.(row.id);
    } catch (err) {
      const reason = controller.signal.aborted ? controller.signal.reason : err;
      const message = reason instanceof Error ? reason.message : String(reason);
      await log(`ERROR: ${message}`);
      await log('build failed');
      store.failUserTemplateBuild(row.id, message);
      if (
        !(err instanceof BaseImageError || err instanceof CopyStepError || err instanceof BuildStepError) &&
        !controller.signal.aborted
      ) {
        this.o.log.error(`template ${req.name}: build failed: ${(err as Error).stack ?? message}`);
      }
    } finally {
      clearTimeout(timer);
    }
  }

  private async copyStep(step: Extract<BuildStep, { kind: 'COPY' }>, dir: string, lower: string[]): Promise<void> {
    const tarball = this.uploadPath(step.filesHash);
    if (!(await stat(tarball).catch(() => undefined))) {
      throw new CopyStepError(`COPY: the files for hash ${step.filesHash} were never uploaded`);
    }
    const owner = step.owner === null ? { uid: 0, gid: 0 } : await resolveOwner(lower, step.owner);
    if (!owner) throw new CopyStepError(`COPY: unknown owner ${step.owner}`);
    await copyIntoLayer({
      tarball,
      sources: step.sources,
      dest: step.dest,
      layerDir: dir,
      lower,
      owner,
      permissions: step.permissions,
      idShift: SANDBOX_ID_SHIFT,
      maxBytes: 8 * 1024 ** 3,
    });
  }

  /**
   * Runs one RUN step in a build sandbox on the current layers and returns
   * its writable layer (the step's changes).
   * @throws BuildStepError with the command's output when it fails.
   */
  private async runStep(
    row: TemplateRow,
    req: BuildRequest,
    command: string,
    state: { layers: string[]; env: Record<string, string>; workdir: string; user: string | null },
    layerDir: string,
    signal: AbortSignal,
    log: (line: string) => Promise<void>,
  ): Promise<undefined> {
    const { store, driver, tokens } = this.o;
    const inserted = this.o.sandboxes.insertInternal(row.id, BUILD_KEY_ID, true);
    if (!inserted.ok) throw new BuildStepError('no network address left for a build sandbox');
    // It stays `creating`: a restart cleans up such a sandbox instead of adopting it.
    const sb = inserted.sandbox;
    try {
      await driver.boot({
        sandboxId: sb.id,
        templateRootfs: state.layers.join(':'),
        resources: {
          vcpu: Math.min(req.vcpu, 2),
          memoryMiB: Math.max(req.memoryMiB, 1024),
          diskMiB: req.diskMiB,
          pidsLimit: 4096,
        },
        templateEnv: state.env,
        workdir: '/',
        internetAccess: true,
        addressIndex: sb.addressIndex,
        agentTokenKeyHex: tokens.sandboxKey(sb.id).toString('hex'),
      });
      signal.throwIfAborted();
      const token = tokens.issue(sb.id, 3600).token;
      const stepSeconds = Math.ceil(this.o.stepTimeoutMs / 1000);
      const script = await runScript(command, state);
      // Output goes to the build log line by line as it is printed.
      const partial = { stdout: '', stderr: '' };
      const result = await streamAgentCommand(
        driver.agentSocket(sb.id),
        token,
        { command: '/bin/sh', args: ['-c', script], timeoutSeconds: stepSeconds, workdir: '/' },
        (stream, text) => {
          const lines = (partial[stream] + text).split('\n');
          partial[stream] = lines.pop() ?? '';
          for (const line of lines) void log(`  ${line}`);
        },
        signal,
      );
      for (const rest of [partial.stdout, partial.stderr]) if (rest !== '') void log(`  ${rest}`);
      if (result.timedOut) throw new BuildStepError(`RUN timed out after ${stepSeconds} s: ${command}`);
      if (result.exitCode !== 0) {
        throw new BuildStepError(
          `RUN failed with exit status ${result.exitCode}${result.error ? ` (${result.error})` : ''}: ${command}`,
        );
      }
      await driver.stop(sb.id, sb.addressIndex);
      await moveTree(driver.writableLayer(sb.id), layerDir);
      return undefined;
    } finally {
      // The layer directory was moved out by now (or the step failed): remove the rest.
      store.transition(sb.id, ['creating'], 'deleted');
      await driver.destroy(sb.id, sb.addressIndex);
    }
  }

  /** `GET /v1/templates/build/{id}/status`. */
  status(id: string): BuildStatusView {
    const t = this.o.store.getTemplateById(id);
    if (t?.kind !== 'user' || t.build.startedAt === null) {
      throw new ServiceError(ErrorCode.NOT_FOUND, `Build not found: ${id}`);
    }
    const status = t.build.completedAt === null ? 'building' : t.build.error !== null ? 'failed' : 'active';
    return {
      build_id: t.id,
      template_id: t.id,
      status,
      progress: status === 'active' ? 100 : t.build.progress,
      started_at: rfc3339(t.build.startedAt),
      ...(t.build.step !== null ? { current_step: t.build.step } : {}),
      ...(t.build.completedAt !== null
        ? { completed_at: rfc3339(t.build.completedAt), build_duration_ms: t.build.completedAt - t.build.startedAt }
        : {}),
      ...(t.build.error !== null ? { error_message: t.build.error } : {}),
    };
  }

  /** `GET /v1/templates/build/{id}/logs?offset=N`: whole lines from byte `offset` on. */
  async logs(id: string, offset: number): Promise<{ logs: string; offset: number; status: string; complete: boolean }> {
    const status = this.status(id);
    const complete = status.status !== 'building';
    let text = '';
    let next = offset;
    const fh = await open(this.logPath(id), 'r').catch(() => undefined);
    if (fh) {
      try {
        const { size } = await fh.stat();
        if (offset < size) {
          const want = Math.min(size - offset, MAX_LOG_CHUNK);
          const buf = Buffer.alloc(want);
          const { bytesRead } = await fh.read(buf, 0, want, offset);
          // Only whole lines, so a multi-byte character is never cut.
          const end = buf.subarray(0, bytesRead).lastIndexOf(0x0a) + 1;
          text = buf.subarray(0, end).toString('utf8');
          next = offset + end;
        }
      } finally {
        await fh.close();
      }
    }
    // Complete only once the reader has everything: the SDK stops polling at `complete: true`.
    const drained =
      fh === undefined ||
      next >=
        (await stat(this.logPath(id)).then(
          (s) => s.size,
          () => 0,
        ));
    return { logs: text, offset: next, status: status.status, complete: complete && drained };
  }

  /**
   * `DELETE /v1/templates/{id}`: stops its build, frees the name. Sandboxes
   * of it keep running (their layers stay in the cache).
   * @throws ServiceError TEMPLATE_NOT_FOUND, or FORBIDDEN for a built-in template.
   */
  delete(id: string): void {
    const t = this.o.store.findTemplate(id);
    if (!t) throw new ServiceError(ErrorCode.TEMPLATE_NOT_FOUND, `Template not found: ${id}`);
    if (t.kind !== 'user')
      throw new ServiceError(ErrorCode.FORBIDDEN, `Template ${t.name} is public and cannot be deleted`);
    this.running.get(t.id)?.controller.abort(new Error('template deleted'));
    this.o.store.deleteUserTemplate(t.id);
    this.o.onDeleted?.(t.id);
  }

  /** At startup: a build that was running when the server stopped has failed. */
  recover(): number {
    const stale = this.o.store.buildingUserTemplates();
    for (const t of stale) this.o.store.failUserTemplateBuild(t.id, 'the server restarted during the build');
    return stale.length;
  }

  /** Aborts every running build and waits until their build sandboxes are gone (server shutdown). */
  async stop(): Promise<void> {
    const builds = [...this.running.values()];
    for (const b of builds) b.controller.abort(new Error('the server is shutting down'));
    await Promise.all(builds.map((b) => b.done));
  }
}

/**
 * The shell script of a RUN step: create and enter WORKDIR (as root, like
 * Docker), then run the command, as the USER set so far through `setpriv`
 * (util-linux) when it is not root.
 * @throws BuildStepError for a USER the image's /etc/passwd does not know.
 */
async function runScript(command: string, state: { layers: string[]; workdir: string; user: string | null }) {
  const enter = `mkdir -p ${shellQuote(state.workdir)} && cd ${shellQuote(state.workdir)}`;
  if (state.user === null || state.user === 'root' || state.user === '0' || state.user === '0:0') {
    return `${enter} && ${command}`;
  }
  const owner = await resolveOwner(state.layers, state.user);
  if (!owner) throw new BuildStepError(`USER ${state.user}: no such user in the image's /etc/passwd`);
  const groups = /^\d+(:\d+)?$/.test(state.user) ? '--clear-groups' : '--init-groups';
  return (
    `${enter} && if ! command -v setpriv >/dev/null 2>&1; then ` +
    `echo "USER ${state.user} needs setpriv (util-linux) in the image" >&2; exit 127; fi && ` +
    `exec setpriv --reuid=${owner.uid} --regid=${owner.gid} ${groups} -- /bin/sh -c ${shellQuote(command)}`
  );
}

/** Moves a directory tree (within a filesystem by rename, across filesystems by `cp -a`, keeping xattrs). */
async function moveTree(from: string, to: string): Promise<void> {
  await rm(to, { recursive: true, force: true });
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await execFileAsync('cp', ['-a', '--', from, to]);
  }
}

/** A RUN step that failed; its message goes to the build log. */
export class BuildStepError extends Error {}
