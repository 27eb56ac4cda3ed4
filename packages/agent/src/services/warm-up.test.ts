import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentConfig, loadConfig } from '../config.ts';
import { CodeExecutor } from './code-executor.ts';
import { EnvStore } from './env-store.ts';
import { KernelService } from './kernel.ts';
import { ProcessManager } from './process-manager.ts';
import { AgentStats } from './stats.ts';
import { KERNEL_WARM_UP_CODE, warmUpRunPaths } from './warm-up.ts';

// A stand-in bridge that records each request it gets in requests.jsonl.
const RECORDING_BRIDGE = String.raw`
import json, os, sys
out = os.fdopen(os.dup(1), 'w')
def send(o):
    out.write(json.dumps(o) + '\n'); out.flush()
send({'event': 'hello', 'ipykernel': 'fake', 'jupyter_client': 'fake', 'python': '3'})
send({'event': 'ready', 'kernel_id': 'k-1', 'pid': None, 'restarted': False})
for line in sys.stdin:
    req = json.loads(line)
    with open(os.path.join(os.path.dirname(__file__), 'requests.jsonl'), 'a') as f:
        f.write(json.dumps({'code': req['code'], 'warm_up': req.get('warm_up', False)}) + '\n')
    send({'event': 'result', 'id': req['id'], 'status': 'ok', 'stdout': ' ', 'stderr': ' ', 'displays': [],
          'execution_count': 0 if req.get('warm_up') else 1})
`;

let dir: string;
let config: AgentConfig;
let processes: ProcessManager;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-warm-up-test-'));
  await writeFile(join(dir, 'bridge.py'), RECORDING_BRIDGE);
  config = loadConfig({
    WARREN_SANDBOX_ID: 'sb-warm-up',
    WARREN_AGENT_TOKEN_KEY: '00',
    WARREN_AGENT_WORKDIR: dir,
    WARREN_TEMPLATE_ENV: JSON.stringify({ PATH: process.env.PATH ?? '' }),
    WARREN_AGENT_KERNEL_BRIDGE: join(dir, 'bridge.py'),
  });
  processes = new ProcessManager();
});
afterAll(async () => {
  processes.killAll();
  await rm(dir, { recursive: true, force: true });
});

function agentParts() {
  const envStore = new EnvStore();
  const stats = new AgentStats();
  const logged: string[] = [];
  const log = (line: string) => logged.push(line);
  const kernel = new KernelService({ config, envStore, processes, bridgePath: config.kernelBridgePath, log });
  const executor = new CodeExecutor({ config, envStore, processes, stats, kernel });
  return { envStore, stats, kernel, executor, logged, log };
}

describe('warmUpRunPaths', () => {
  it('runs python in the kernel as a warm-up, a command and a code process, none of them counted', async () => {
    const parts = agentParts();
    const { kernel, stats } = parts;
    const before = stats.snapshot();
    kernel.warmUp((outcome) => warmUpRunPaths({ ...parts, config, processes }, { kernel: outcome }));
    expect(kernel.state).toBe('starting');
    await kernel.whenWarm();
    expect(kernel.sessions()[0]).toMatchObject({ execution_state: 'idle', execution_count: 0 });
    kernel.close();
    const requests = (await readFile(join(dir, 'requests.jsonl'), 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(requests).toEqual([{ code: KERNEL_WARM_UP_CODE, warm_up: true }]);
    expect(stats.snapshot()).toEqual(before);
    expect(parts.logged.filter((l) => l.includes('warm-up'))).toEqual([]);
  });

  it('skips the python run when the kernel did not start, and never throws', async () => {
    const parts = agentParts();
    await rm(join(dir, 'requests.jsonl'), { force: true });
    const before = parts.stats.snapshot();
    const broken = { ...parts, config: { ...config, workdir: join(dir, 'missing', '\0') }, processes };
    await expect(warmUpRunPaths(broken, { kernel: 'unavailable' })).resolves.toBeUndefined();
    expect(parts.stats.snapshot()).toEqual(before);
    await expect(readFile(join(dir, 'requests.jsonl'), 'utf8')).rejects.toThrow();
    expect(parts.logged.some((l) => l.includes('warm-up of the command path failed'))).toBe(true);
  });
});
