import { chmod, mkdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApp } from './app.ts';
import { loadConfig } from './config.ts';
import { createGatewayServer } from './gateway.ts';
import { PREVIEW_DEFAULT_LIMITS, PreviewProxy } from './preview-proxy.ts';
import { ensureRuntimeBundle } from './runtime/bundle.ts';
import { ContainerDriver } from './runtime/container/driver.ts';
import { HostNetwork } from './runtime/container/network.ts';
import { bootstrapApiKey } from './services/auth.ts';
import { parsePoolSizes, WarmPool } from './services/pool.ts';
import { PreviewService } from './services/previews.ts';
import { type Logger, SandboxService } from './services/sandboxes.ts';
import { TemplateBuildService } from './services/template-builds.ts';
import { ensureBuiltinTemplates } from './services/templates.ts';
import { TokenService } from './services/tokens.ts';
import { ASYNC_DEFAULTS, AsyncExecutionService, parseAllowList } from './services/webhooks.ts';
import { prepareHost } from './setup/host.ts';
import { openDatabase } from './store/db.ts';
import { Store } from './store/store.ts';

const log: Logger = {
  info: (m) => process.stderr.write(`[warren] ${m}\n`),
  warn: (m) => process.stderr.write(`[warren] warning: ${m}\n`),
  error: (m) => process.stderr.write(`[warren] error: ${m}\n`),
};

const AGENT_BUNDLE = resolve(fileURLToPath(import.meta.url), '../../../agent/dist/agent.cjs');

// A closed terminal or log pipe must not take the server (and its shutdown clean-up) down with it.
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);

async function main(): Promise<void> {
  const config = loadConfig();
  await prepareHost();
  // Traversable (not listable) by the sandboxes' mapped root, which crun runs as while it sets up the root.
  await mkdir(config.dataDir, { recursive: true });
  await chmod(config.dataDir, 0o711);
  await mkdir(config.cacheDir, { recursive: true });

  const dbPath = join(config.dataDir, 'warren.db');
  const store = new Store(openDatabase(dbPath));
  // The database holds the token secret: readable by root only (WAL files inherit this mode).
  await chmod(dbPath, 0o600);
  const { printedKey } = bootstrapApiKey(store, config.apiKey);
  const tokens = new TokenService(store, config.tokenTtlSeconds);

  log.info('preparing the runtime bundle (node + agent + init)');
  const bundle = await ensureRuntimeBundle({
    cacheDir: config.cacheDir,
    agentBundlePath: AGENT_BUNDLE,
    onProgress: (line) => log.info(`[bundle] ${line}`),
  });
  log.info(`building built-in templates: ${config.templates.join(', ')} (cached after the first build)`);
  await ensureBuiltinTemplates(store, config.templates, { cacheDir: config.cacheDir, onProgress: log.info });

  const network = new HostNetwork({ bridge: config.bridge, cidr: config.bridgeCIDR, table: config.nftTable });
  await network.setUp();
  const driver = new ContainerDriver({
    sandboxesDir: join(config.dataDir, 'sandboxes'),
    crunRoot: join(config.dataDir, 'crun'),
    bundleDir: bundle.dir,
    network,
    cgroupParent: config.cgroupParent,
    bootTimeoutMs: config.bootTimeoutMs,
  });
  await mkdir(join(config.dataDir, 'sandboxes'), { recursive: true });
  await chmod(join(config.dataDir, 'sandboxes'), 0o711);
  let publicHost = config.publicURL ?? '';
  const sandboxes = new SandboxService({ store, driver, tokens, log, maxSandboxesPerKey: config.maxSandboxesPerKey });
  const reconciled = await sandboxes.reconcile();
  log.info(`reconciled sandboxes: ${reconciled.adopted} adopted, ${reconciled.cleaned} cleaned`);
  const templateBuilds = new TemplateBuildService({
    store,
    driver,
    tokens,
    sandboxes,
    log,
    cacheDir: config.cacheDir,
    dataDir: config.dataDir,
    publicURL: () => publicHost,
    uploadMaxBytes: config.buildUploadMaxBytes,
    stepTimeoutMs: config.buildStepTimeoutMs,
    buildTimeoutMs: config.buildTimeoutMs,
    maxConcurrentBuilds: config.buildConcurrency,
    image: {
      cacheDir: join(config.cacheDir, 'images'),
      defaultRegistry: config.imageDefaultRegistry,
      insecureRegistries: config.imageInsecureRegistries,
      archiveDir: config.imageImportDir,
    },
    allowedRegistries: config.imageRegistries,
    onActivated: (id) => void pool.templateActivated(id).catch((err: Error) => log.error(`warm pool: ${err.message}`)),
    onDeleted: (id) => void pool.templateDeleted(id).catch((err: Error) => log.error(`warm pool: ${err.message}`)),
  });
  const interrupted = templateBuilds.recover();
  if (interrupted > 0) log.warn(`${interrupted} template build(s) were interrupted by a restart and marked failed`);
  const pool = new WarmPool({
    store,
    sandboxes,
    log,
    sizesByName: parsePoolSizes(config.pool, config.templates),
    refillDelayMs: config.poolRefillDelayMs,
  });

  // Expiry lives in the store, so a restarted server reaps on time too.
  let reaping = false;
  const reaper = setInterval(() => {
    if (reaping) return;
    reaping = true;
    sandboxes
      .reapExpired()
      .catch((err: unknown) => log.error(`reaper: ${(err as Error).message}`))
      .finally(() => {
        reaping = false;
      });
  }, 200);

  const previews = new PreviewService(store, { domain: config.domain, publicHost: () => publicHost });
  const app = createApp({
    store,
    sandboxes,
    publicHost: () => publicHost,
    listPageMax: config.listPageMax,
    log,
    maxBodyBytes: config.maxBodyBytes,
    previews,
    templateBuilds,
  });
  const server = createGatewayServer({
    app,
    store,
    tokens,
    driver,
    log,
    maxBodyBytes: config.maxBodyBytes,
    previews: new PreviewProxy({
      store,
      driver,
      tokens,
      previews,
      log,
      publicHost: () => publicHost,
      limits: { ...PREVIEW_DEFAULT_LIMITS, maxConnectionsPerSandbox: config.previewMaxConnections },
    }),
    executions: new AsyncExecutionService(
      { store, driver, tokens, log },
      { ...ASYNC_DEFAULTS, maxPerSandbox: config.asyncMaxPerSandbox, allow: parseAllowList(config.webhookAllow) },
    ),
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(config.port, config.host, () => ok());
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.host === '0.0.0.0' ? '127.0.0.1' : config.host;
  if (!config.publicURL) publicHost = `http://${host}:${port}`;

  process.stdout.write(`Warren is listening on http://${host}:${port}\n`);
  if (printedKey) process.stdout.write(`API key (shown once, store it now): ${printedKey}\n`);
  else if (config.apiKey) process.stdout.write('API key: the value of WARREN_API_KEY\n');
  else process.stdout.write(`API key: the key printed on first start (data dir ${config.dataDir})\n`);

  pool.start();

  let shuttingDown = false;
  const shutdown = async (signal: string) => {
    // A second signal (e.g. one sent to the whole process group and forwarded by npm) must not cut the clean-up short.
    if (shuttingDown) return log.info(`${signal}: already shutting down`);
    shuttingDown = true;
    log.info(
      `${signal}: shutting down; ${config.stopSandboxesOnExit ? 'deleting every sandbox' : 'sandboxes keep running'}`,
    );
    clearInterval(reaper);
    server.close();
    server.closeAllConnections();
    await pool.stop();
    await templateBuilds.stop();
    // A create still booting finishes (its client is gone) before its sandbox is deleted and the store closes.
    await sandboxes.creationsSettled();
    if (config.stopSandboxesOnExit) await sandboxes.deleteAll();
    // DELETE answers once a sandbox's processes are killed; finish the teardowns still running.
    await sandboxes.settled();
    store.db.close();
    process.exitCode = 0;
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  log.error((err as Error).message);
  process.exitCode = 1;
});
