import { createWriteStream, openAsBlob } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { create as createTar } from 'tar';
import type { Client } from '../../client.ts';
import type { Context } from '../../context.ts';
import { APIError, CLIError } from '../../errors.ts';
import { out, outJSON } from '../../output.ts';
import { formatBytes } from '../../parse.ts';
import { Progress } from '../../progress.ts';
import { buildRequest, type CopyPlan, loadTemplateFile, planCopy, TEMPLATE_FILE } from '../../template-file.ts';
import { type BuildLogs, type BuildStatus, POLL_MS, sleep, TERMINAL_STATUSES } from './shared.ts';

interface BuildOptions {
  file?: string;
  name?: string;
  skipCache?: boolean;
  update?: boolean;
  json?: boolean;
}

/** Packs a copy step's sources (paths relative to the build directory) into a .tar.gz and uploads it unless the server has it. */
async function upload(
  client: Client,
  contextDir: string,
  plan: CopyPlan,
  scratch: string,
  progress: Progress,
): Promise<void> {
  const archive = join(scratch, `${plan.filesHash}.tar.gz`);
  await pipeline(createTar({ gzip: true, cwd: contextDir, portable: true }, plan.tarRoots), createWriteStream(archive));
  const size = (await stat(archive)).size;
  const link = await client.request<{ present: boolean; upload_url?: string | null }>(
    'POST',
    '/v1/templates/files/upload-link',
    { body: { files_hash: plan.filesHash, content_length: size } },
  );
  const what = `${plan.sources.join(', ')} (${plan.files} file${plan.files === 1 ? '' : 's'}, ${formatBytes(plan.bytes)})`;
  if (link.present || !link.upload_url) {
    progress.log(`files ${what} already on the server\n`);
    return;
  }
  progress.status(`uploading ${what}`);
  const url = new URL(link.upload_url, client.config.url).toString();
  // A file-backed Blob: sent with its Content-Length, streamed from disk.
  const res = await fetch(url, {
    method: 'PUT',
    headers: { 'content-type': 'application/gzip' },
    body: await openAsBlob(archive),
  });
  if (!res.ok) {
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // keep text
    }
    throw APIError.from(res.status, body, res.headers);
  }
  progress.log(`uploaded ${what} as ${formatBytes(size)}\n`);
}

/** Shows the build's log and status until it ends; returns the final status. */
async function watch(
  client: Client,
  build: { build_id: string; template_id: string },
  progress: Progress,
  name: string,
  signal: AbortSignal,
): Promise<BuildStatus | undefined> {
  let offset = 0;
  let logDone = false;
  /** Shows what the log gained since the last read; true when there was nothing new. */
  const readLog = async (): Promise<boolean> => {
    const logs = await client.request<BuildLogs>(
      'GET',
      `/v1/templates/build/${encodeURIComponent(build.template_id)}/logs`,
      { query: { offset: String(offset) } },
    );
    progress.log(logs.logs);
    offset = logs.offset;
    logDone = logs.complete;
    return logs.logs === '';
  };
  for (;;) {
    if (!logDone) await readLog();
    const st = await client.request<BuildStatus>(
      'GET',
      `/v1/templates/build/${encodeURIComponent(build.build_id)}/status`,
    );
    if (TERMINAL_STATUSES.has(st.status)) {
      // Read what the log gained since, until it says it is complete (or has nothing more).
      while (!logDone && !(await readLog()));
      return st;
    }
    progress.status(`building ${name} · ${st.current_step ?? st.status} · ${Math.round(st.progress)}%`);
    await sleep(POLL_MS);
    if (signal.aborted) return undefined;
  }
}

/** `warren template build [dir]`: uploads, starts the build and shows its progress until it ends. */
export function registerTemplateBuild(parent: Command, ctx: Context): void {
  parent
    .command('build')
    .description(`build a template from a directory holding a ${TEMPLATE_FILE}, showing its steps and log live`)
    .argument('[dir]', 'build directory: copy sources are relative to it', '.')
    .option('-f, --file <path>', `template file (default: <dir>/${TEMPLATE_FILE})`)
    .option('--name <name>', 'template name (overrides the file\'s "name")')
    .option('--skip-cache', 'rebuild every step, reusing no cached layer')
    .option('--update', 'replace an existing template of the same name (otherwise that is an error)')
    .option('--json', 'print the final build status as JSON on stdout')
    .addHelpText(
      'after',
      `
${TEMPLATE_FILE}:
  {
    "name": "flask-app",                 template name (letters, digits, . _ -)
    "from": "python:3.11",               base: a Warren template name or an image
    "steps": [                           run in order; each is one of:
      { "copy": "app/", "to": "/app/",   files from the build directory ("copy" may be a list;
        "owner": "root:root", "mode": "0755" },  owner and mode optional)
      { "run": "pip install flask" },    a shell command
      { "env": { "PORT": "8000" } },     environment variables
      { "workdir": "/app" },             working directory of later steps and of sandboxes
      { "user": "app" }                  default user
    ],
    "start": "python3 -m flask run --port 8000",   started in every sandbox at boot (optional)
    "ready": { "port": 8000, "timeout": "30s" },   sandbox handed out once ready: one of port, url,
                                                   file, process, command (optional, needs start)
    "cpu": 2, "memoryMiB": 2048, "diskGB": 10       resources (optional)
  }

On success the template id is printed on stdout. Ctrl-C stops watching; the build goes on
(watch it again with \`warren template logs <name> -f\`).`,
    )
    .action(async (dir: string, o: BuildOptions) => {
      const contextDir = resolve(dir);
      const file = o.file ?? join(contextDir, TEMPLATE_FILE);
      const template = await loadTemplateFile(file);
      const name = o.name ?? template.name;
      const client = ctx.client();
      const progress = new Progress();
      const scratch = await mkdtemp(join(tmpdir(), 'warren-build-'));
      try {
        progress.status(`preparing ${name}`);
        const plans = new Map<number, CopyPlan>();
        const uploaded = new Set<string>();
        for (const [i, step] of template.steps.entries()) {
          if (step.copy === undefined) continue;
          const plan = await planCopy(contextDir, step);
          plans.set(i, plan);
          if (uploaded.has(plan.filesHash)) continue;
          await upload(client, contextDir, plan, scratch, progress);
          uploaded.add(plan.filesHash);
        }
        const body = buildRequest(template, plans, {
          name,
          ...(o.skipCache ? { skipCache: true } : {}),
          ...(o.update ? { update: true } : {}),
        });
        let build: { build_id: string; template_id: string; status: string };
        try {
          build = await client.request('POST', '/v1/templates/build', { body });
        } catch (err) {
          if (err instanceof APIError && err.status === 409) {
            throw new CLIError(`template ${name} exists; pass --update to rebuild it (${err.message})`);
          }
          throw err;
        }
        progress.log(`build ${build.build_id} of ${name} (template ${build.template_id}) started\n`);
        const stop = new AbortController();
        const onSigint = () => stop.abort();
        process.once('SIGINT', onSigint);
        let final: BuildStatus | undefined;
        try {
          final = await watch(client, build, progress, name, stop.signal);
        } finally {
          process.off('SIGINT', onSigint);
        }
        if (final === undefined) {
          progress.done(`stopped watching; the build goes on: warren template logs ${name} -f`);
          process.exitCode = 130;
          return;
        }
        if (final.status === 'failed' || final.status === 'error') {
          progress.done(
            `build of ${name} failed after ${progress.elapsed()}: ${final.error_message ?? 'see the log above'}`,
          );
          process.exitCode = 1;
        } else {
          progress.done(`built ${name} (template ${final.template_id}) in ${progress.elapsed()}`);
        }
        if (o.json) outJSON(final);
        else if (process.exitCode !== 1) out(final.template_id);
      } catch (err) {
        progress.done();
        throw err;
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    });
}
