/**
 * The agent's process entry (bundled to dist/boot.cjs): runs agent.cjs from
 * beside it, compiled with the V8 code cache agent.cjs.cache when there is a
 * valid one, so a sandbox's agent starts without parsing and compiling the
 * whole bundle. Without a cache (or with one V8 rejects) it compiles from
 * source, as `node agent.cjs` would.
 *
 * With WARREN_AGENT_CODE_CACHE_RECORD=<file> it records that cache instead:
 * runs the agent (which then starts neither the kernel nor a start command),
 * waits until it answers /health on WARREN_AGENT_SOCKET, writes every function
 * compiled so far to <file> and exits. The runtime bundle does this once with
 * the node binary the sandboxes run (V8 only accepts a cache made by its own
 * version with the same flags).
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { loadWithCodeCache, writeCodeCache } from './code-cache.ts';

const AGENT_FILE = join(__dirname, 'agent.cjs');
const CACHE_FILE = `${AGENT_FILE}.cache`;
/** How long recording waits for the agent to answer /health. */
const RECORD_TIMEOUT_MS = 30_000;

function fail(message: string): never {
  process.stderr.write(`warren-agent boot: ${message}\n`);
  process.exit(1);
}

function health(socketPath: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/health', method: 'GET' }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

async function record(out: string, socketPath: string): Promise<void> {
  const loaded = loadWithCodeCache(AGENT_FILE);
  const deadline = Date.now() + RECORD_TIMEOUT_MS;
  while ((await health(socketPath)) !== 200) {
    if (Date.now() > deadline) fail(`the agent did not answer /health within ${RECORD_TIMEOUT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const bytes = writeCodeCache(loaded, out);
  process.stderr.write(`warren-agent boot: code cache recorded (${bytes} bytes)\n`);
  process.exit(0);
}

const recordTo = process.env.WARREN_AGENT_CODE_CACHE_RECORD;
if (recordTo) {
  const socketPath = process.env.WARREN_AGENT_SOCKET;
  if (!socketPath) fail('WARREN_AGENT_CODE_CACHE_RECORD needs WARREN_AGENT_SOCKET');
  record(recordTo, socketPath).catch((err: unknown) => fail(`recording failed: ${String(err)}`));
} else {
  const { cache } = loadWithCodeCache(AGENT_FILE, CACHE_FILE);
  if (cache === 'rejected') process.stderr.write('warren-agent boot: code cache rejected; compiled from source\n');
}
