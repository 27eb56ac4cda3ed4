import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { loadConfig } from '../config.ts';
import { isAlive } from '../test-helpers.ts';
import { EnvStore } from './env-store.ts';
import { KernelService } from './kernel.ts';
import { ProcessManager } from './process-manager.ts';

// A stand-in for kernel_bridge.py (the host has no ipykernel): same JSON-lines
// protocol, with a "kernel" child process in its own session that the agent
// interrupts and kills by process group, like the real one.
const FAKE_BRIDGE = String.raw`
import json, os, signal, subprocess, sys, time
out = os.fdopen(os.dup(1), 'w')
def send(o):
    out.write(json.dumps(o) + '\n'); out.flush()
KERNEL = r'''
import signal, sys, time
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(' ')
    try:
        if cmd == 'hang':
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if cmd in ('sleep', 'hang'):
            time.sleep(float(arg))
        print('done', flush=True)
    except KeyboardInterrupt:
        print('interrupted', flush=True)
'''
def start():
    k = subprocess.Popen([sys.executable, '-c', KERNEL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, start_new_session=True)
    return k
send({'event': 'hello', 'ipykernel': 'fake', 'jupyter_client': 'fake', 'python': '3'})
kernel = start()
send({'event': 'ready', 'kernel_id': 'k-1', 'pid': kernel.pid, 'restarted': False})
count = 0
for line in sys.stdin:
    req = json.loads(line)
    code = req['code']
    received = time.time()
    if code.startswith('sleep ') or code.startswith('hang '):
        kernel.stdin.write(code + '\n'); kernel.stdin.flush()
        answer = kernel.stdout.readline().strip()
        if answer == '':
            kernel.wait()
            send({'event': 'result', 'id': req['id'], 'status': 'dead', 'stdout': 'partial\n', 'reason': 'the kernel died'})
            kernel = start()
            send({'event': 'ready', 'kernel_id': 'k-2', 'pid': kernel.pid, 'restarted': True})
            continue
        if answer == 'interrupted':
            send({'event': 'result', 'id': req['id'], 'status': 'error', 'stdout': 'before\n', 'stderr': '',
                  'error': {'ename': 'KeyboardInterrupt', 'evalue': '', 'traceback': ['KeyboardInterrupt']}})
            continue
    if not req.get('warm_up'):
        count += 1
    res = {'event': 'result', 'id': req['id'], 'status': 'ok', 'stdout': '', 'stderr': '', 'result': None,
           'displays': [], 'error': None, 'execution_count': count}
    if code == 'env':
        res['stdout'] = json.dumps({'env': req['env'], 'cwd': req['cwd'], 'received': received, 'finished': time.time()})
    elif code == 'rich':
        res['result'] = "'<b>x</b>'"
        res['displays'] = [
            {'kind': 'display_data', 'data': {'text/plain': '<Figure>', 'image/png': 'iVBORw0KGgo='}, 'metadata': {}},
            {'kind': 'execute_result', 'data': {'text/plain': 'df', 'text/html': '<table></table>',
                                                 'application/json': {'a': 1}}, 'metadata': {}},
        ]
    elif code == 'boom':
        res['status'] = 'error'
        res['stdout'] = 'partial\n'
        res['error'] = {'ename': 'ValueError', 'evalue': 'boom', 'traceback': ['Traceback (most recent call last)', 'ValueError: boom']}
    elif code.startswith('exit '):
        res['status'] = 'error'
        res['error'] = {'ename': 'SystemExit', 'evalue': code[5:], 'traceback': []}
    else:
        res['stdout'] = code + '\n'
        res['result'] = repr(len(code))
    send(res)
`;

let dir: string;
let processes: ProcessManager;
let kernel: KernelService;
const logged: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-kernel-test-'));
  await writeFile(join(dir, 'fake_bridge.py'), FAKE_BRIDGE);
  const config = loadConfig({
    WARREN_SANDBOX_ID: 'sb-kernel',
    WARREN_AGENT_TOKEN_KEY: '00',
    WARREN_AGENT_WORKDIR: dir,
    WARREN_TEMPLATE_ENV: JSON.stringify({ PATH: process.env.PATH ?? '' }),
    WARREN_AGENT_KERNEL_BRIDGE: join(dir, 'fake_bridge.py'),
  });
  processes = new ProcessManager();
  kernel = new KernelService({
    config,
    envStore: new EnvStore(),
    processes,
    bridgePath: config.kernelBridgePath,
    log: (line) => logged.push(line),
  });
});
afterAll(async () => {
  kernel.close();
  processes.killAll();
  await rm(dir, { recursive: true, force: true });
});

const ctx = () => ({ cwd: dir, env: {} });

describe('KernelService (with a stand-in bridge)', () => {
  it('starts the bridge on first use and maps results onto the /execute shape', async () => {
    expect(kernel.available).toBeUndefined();
    const r = await kernel.execute('print(1)', ctx(), {}, 10_000);
    expect(r).toMatchObject({ success: true, exit_code: 0, stdout: 'print(1)\n', result: '8', language: 'python' });
    expect(kernel.available).toBe(true);
    expect(kernel.sessions()).toEqual([
      expect.objectContaining({ kernel_id: 'k-1', execution_state: 'idle', connections: 1, execution_count: 1 }),
    ]);
  });

  it('passes the env overlay and working directory of the run', async () => {
    const r = await kernel.execute('env', { cwd: '/tmp', env: {} }, { A: '1' }, 10_000);
    expect(JSON.parse(r?.stdout ?? '{}')).toMatchObject({ env: { A: '1' }, cwd: '/tmp' });
  });

  it('lifts display data into png, html, json and rich_outputs', async () => {
    const r = await kernel.execute('rich', ctx(), {}, 10_000);
    expect(r).toMatchObject({ png: 'iVBORw0KGgo=', html: '<table></table>', json: { a: 1 }, result: "'<b>x</b>'" });
    expect(r?.rich_outputs).toEqual([
      expect.objectContaining({ type: 'image/png', source: 'display_data' }),
      expect.objectContaining({ type: 'text/html', source: 'execute_result' }),
    ]);
  });

  it('reports user errors with exit 1 and the traceback in stderr, and SystemExit codes like python does', async () => {
    const err = await kernel.execute('boom', ctx(), {}, 10_000);
    expect(err).toMatchObject({ success: false, exit_code: 1, stdout: 'partial\n', error: 'ValueError: boom' });
    expect(err?.stderr).toContain('ValueError: boom');
    expect(await kernel.execute('exit 3', ctx(), {}, 10_000)).toMatchObject({ success: false, exit_code: 3 });
    expect(await kernel.execute('exit None', ctx(), {}, 10_000)).toMatchObject({ success: true, exit_code: 0 });
  });

  it('interrupts a run that times out and keeps the kernel', async () => {
    const pid = kernel.sessions()[0]?.pid;
    const started = Date.now();
    const r = await kernel.execute('sleep 30', ctx(), {}, 500);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(r).toMatchObject({ success: false, exit_code: 124, timed_out: true, stdout: 'before\n' });
    expect(r?.stderr).toContain('timed out after 0.5s');
    expect(r?.stderr).not.toContain('KeyboardInterrupt');
    expect(kernel.sessions()[0]?.pid).toBe(pid);
    expect(await kernel.execute('next', ctx(), {}, 10_000)).toMatchObject({ success: true, stdout: 'next\n' });
  });

  it('kills and restarts a kernel that ignores the interrupt', async () => {
    const pid = kernel.sessions()[0]?.pid ?? -1;
    const r = await kernel.execute('hang 60', ctx(), {}, 500);
    expect(r).toMatchObject({ success: false, exit_code: 124, timed_out: true });
    expect(r?.stderr).toContain('was restarted');
    expect(isAlive(pid)).toBe(false);
    expect(await kernel.execute('again', ctx(), {}, 10_000)).toMatchObject({ success: true, stdout: 'again\n' });
    expect(kernel.sessions()[0]).toMatchObject({ kernel_id: 'k-2', execution_state: 'idle' });
    expect(kernel.sessions()[0]?.pid).not.toBe(pid);
  });

  it('runs one execution at a time and times out a run that waited too long for its turn', async () => {
    const first = kernel.execute('sleep 0.6', ctx(), {}, 10_000);
    const second = kernel.execute('env', ctx(), {}, 10_000);
    const starved = kernel.execute('env', ctx(), {}, 200);
    expect(await starved).toMatchObject({ exit_code: 124, timed_out: true });
    expect((await starved)?.stderr).toContain('busy');
    await first;
    const seen = JSON.parse((await second)?.stdout ?? '{}') as { received: number };
    expect(seen.received * 1000).toBeGreaterThan(Date.now() - 10_000);
    expect(kernel.state).toBe('idle');
  });

  it('keeps a warm-up run out of the execution count and last activity', async () => {
    const before = kernel.sessions()[0];
    const r = await kernel.execute('warm', ctx(), {}, 10_000, undefined, { warmUp: true });
    expect(r).toMatchObject({ success: true, stdout: 'warm\n' });
    expect(kernel.sessions()[0]).toEqual(before);
    const after = await kernel.execute('user', ctx(), {}, 10_000);
    expect(after?.execution_count).toBe((before?.execution_count ?? 0) + 1);
  });

  it('restarts the bridge when it dies', async () => {
    const bridge = processes.list().find((p) => p.running);
    bridge?.killGroup('SIGKILL');
    await expect.poll(() => kernel.state).toBe('dead');
    expect(await kernel.execute('back', ctx(), {}, 10_000)).toMatchObject({ success: true, stdout: 'back\n' });
  });
});

describe('KernelService without ipykernel', () => {
  it('answers undefined so callers run a process, and reports no sessions', async () => {
    const bridge = join(dir, 'no_kernel.py');
    await writeFile(
      bridge,
      'import json,sys\nprint(json.dumps({"event":"unavailable","reason":"No module named ipykernel"}), flush=True)\nsys.exit(3)\n',
    );
    const config = loadConfig({
      WARREN_SANDBOX_ID: 'sb-kernel',
      WARREN_AGENT_TOKEN_KEY: '00',
      WARREN_AGENT_WORKDIR: dir,
      WARREN_TEMPLATE_ENV: JSON.stringify({ PATH: process.env.PATH ?? '' }),
    });
    const none = new KernelService({
      config,
      envStore: new EnvStore(),
      processes,
      bridgePath: bridge,
      log: () => undefined,
    });
    expect(await none.execute('1', ctx(), {}, 5000)).toBeUndefined();
    expect(none.available).toBe(false);
    expect(none.sessions()).toEqual([]);
    expect(await none.execute('1', ctx(), {}, 5000)).toBeUndefined();
    // A warm-up settles whatever the outcome, so what waits for it (the execute route's schema warm-up) runs.
    none.warmUp();
    await none.whenWarm();
  });
});

/** A kernel service of its own on the stand-in bridge, closed when the test ends. */
function freshKernel(): KernelService {
  const fresh = new KernelService({
    config: loadConfig({
      WARREN_SANDBOX_ID: 'sb-kernel',
      WARREN_AGENT_TOKEN_KEY: '00',
      WARREN_AGENT_WORKDIR: dir,
      WARREN_TEMPLATE_ENV: JSON.stringify({ PATH: process.env.PATH ?? '' }),
    }),
    envStore: new EnvStore(),
    processes,
    bridgePath: join(dir, 'fake_bridge.py'),
    log: () => undefined,
  });
  onTestFinished(() => fresh.close());
  return fresh;
}

describe('KernelService.whenWarm', () => {
  it('resolves once the start warmUp began is ready, and only after a warm-up', async () => {
    const warm = freshKernel();
    let settled = false;
    void warm.whenWarm().then(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(settled).toBe(false);
    warm.warmUp();
    await warm.whenWarm();
    expect(warm.state).toBe('idle');
  });

  it('reports the kernel as starting, availability unknown, until the work after the start settles', async () => {
    const warm = freshKernel();
    const seen: unknown[] = [];
    warm.warmUp(async (outcome) => {
      const r = await warm.execute('warm', ctx(), {}, 10_000, undefined, { warmUp: true });
      seen.push(outcome, warm.state, warm.available, r?.stdout, warm.sessions()[0]?.execution_state);
      throw new Error('a failing warm-up is only logged');
    });
    expect(warm.state).toBe('starting');
    await warm.whenWarm();
    expect(seen).toEqual(['ready', 'starting', undefined, 'warm\n', 'starting']);
    expect(warm.state).toBe('idle');
    expect(warm.available).toBe(true);
    expect(warm.sessions()[0]).toMatchObject({ execution_state: 'idle', execution_count: 0 });
  });
});

describe('kernel_bridge.py itself', () => {
  const bridge = loadConfig({ WARREN_SANDBOX_ID: 'sb-kernel', WARREN_AGENT_TOKEN_KEY: '00' }).kernelBridgePath;
  const FAKE_VERSION = "__version__ = '0-fake'\n";

  /** Runs the real bridge with python3 `-S` (no site-packages, so no Jupyter on any host) and stdin closed. */
  function runBridge(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return runPython(['-X', 'importtime', bridge], env);
  }

  /** Runs python3 `-S` with `args` and stdin closed, collecting its exit code and output. */
  function runPython(
    args: string[],
    env: Record<string, string> = {},
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const child = spawn('python3', ['-S', ...args], {
        env: { PATH: process.env.PATH ?? '', ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (c: Buffer) => {
        stdout += c.toString();
      });
      child.stderr.on('data', (c: Buffer) => {
        stderr += c.toString();
      });
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  /** Writes `files` (paths relative to `root`, stand-in packages for the most part) under `root`. */
  async function writeTree(root: string, files: Record<string, string>): Promise<void> {
    for (const [name, content] of Object.entries(files)) {
      await mkdir(join(root, name, '..'), { recursive: true });
      await writeFile(join(root, name), content);
    }
  }

  /** The bridge's protocol lines (its stdout), parsed. */
  function jsonLines(stdout: string): unknown[] {
    return stdout
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as unknown);
  }

  it('answers "unavailable" without Jupyter before importing anything of its own', async () => {
    const { code, stdout, stderr } = await runBridge({});
    expect(code).toBe(3);
    expect(jsonLines(stdout)).toEqual([
      { event: 'unavailable', reason: "ModuleNotFoundError: No module named 'ipykernel'" },
    ]);
    // -X importtime lists every module imported after start-up: none of the bridge's own imports ran.
    expect(stderr).toMatch(/import time:/);
    expect(stderr).not.toMatch(/\| +(subprocess|ast|hmac|json)$/m);
  });

  it('leaves the answer to the import when a finder fails on a Jupyter package', async () => {
    const wrapper = [
      'import runpy, sys',
      'class Failing:',
      '    def find_spec(self, name, path, target=None):',
      '        if name in ("ipykernel", "jupyter_client"):',
      '            raise RuntimeError("a broken finder")',
      'sys.meta_path.insert(0, Failing())',
      `runpy.run_path(${JSON.stringify(bridge)}, run_name="__main__")`,
    ].join('\n');
    const { code, stdout } = await runPython(['-c', wrapper]);
    expect(code).toBe(3);
    expect(jsonLines(stdout)).toEqual([{ event: 'unavailable', reason: 'RuntimeError: a broken finder' }]);
  });

  it('goes on to start the kernel when both Jupyter packages can be found', async () => {
    const fake = join(dir, 'fake-jupyter');
    await writeTree(fake, { 'ipykernel/__init__.py': FAKE_VERSION, 'jupyter_client/__init__.py': FAKE_VERSION });
    const { code, stdout } = await runBridge({ PYTHONPATH: fake });
    const events = jsonLines(stdout);
    expect(events[0]).toMatchObject({ event: 'hello', ipykernel: '0-fake', jupyter_client: '0-fake' });
    // The stand-in jupyter_client has no KernelManager: the start fails as any broken install would.
    expect(events[1]).toMatchObject({ event: 'failed' });
    expect(code).toBe(4);
  });

  it('launches the usual kernel spec itself before importing jupyter_client, as jupyter_client would', async () => {
    const fake = join(dir, 'fake-early');
    const report = join(fake, 'kernel-report.json');
    const files: Record<string, string> = {
      'jupyter_core/__init__.py': '',
      'jupyter_core/paths.py': `def jupyter_path(*parts):\n    return [${JSON.stringify(join(fake, 'share'))} + "/" + "/".join(parts)]\n`,
      'share/kernels/python3/kernel.json': JSON.stringify({
        argv: ['python3', '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        display_name: 'Python 3',
        language: 'python',
      }),
      'ipykernel_launcher.py': '',
      'ipykernel/__init__.py': FAKE_VERSION,
      'ipykernel/ipkernel.py': '',
      // The stand-in kernel reports how it was started, then waits to be killed.
      'ipykernel/kernelapp.py': [
        'import json, os, sys, time',
        'def launch_new_instance():',
        '    with open(sys.argv[2]) as f:',
        '        connection = json.load(f)',
        '    state = {"argv": sys.argv, "parent": os.environ.get("JPY_PARENT_PID"), "pid": os.getpid(),',
        '             "leader": os.getsid(0) == os.getpid(), "connection": connection}',
        `    with open(${JSON.stringify(`${report}.tmp`)}, "w") as f:`,
        '        json.dump(state, f)',
        `    os.rename(${JSON.stringify(`${report}.tmp`)}, ${JSON.stringify(report)})`,
        '    time.sleep(60)',
      ].join('\n'),
      // Without a KernelManager the bridge fails after its imports; it waits for the kernel's report first.
      'jupyter_client/__init__.py': [
        'import os, time',
        "__version__ = '0-fake'",
        'for _ in range(1000):',
        `    if os.path.exists(${JSON.stringify(report)}):`,
        '        break',
        '    time.sleep(0.01)',
      ].join('\n'),
    };
    await writeTree(fake, files);
    const { code, stdout } = await runBridge({ PYTHONPATH: fake, TMPDIR: fake });
    expect(jsonLines(stdout)).toMatchObject([{ event: 'hello' }, { event: 'failed' }]);
    expect(code).toBe(4);
    const state = JSON.parse(await readFile(report, 'utf8')) as {
      argv: string[];
      parent: string;
      pid: number;
      leader: boolean;
      connection: Record<string, unknown>;
    };
    expect(state.argv).toEqual([
      join(fake, 'ipykernel_launcher.py'),
      '-f',
      expect.stringMatching(new RegExp(`^${fake}/\\.warren-kernel/kernel-\\d+\\.json$`)),
    ]);
    expect(state.parent).toMatch(/^\d+$/);
    expect(state.leader).toBe(true);
    expect(state.connection).toMatchObject({ ip: '127.0.0.1', transport: 'tcp', signature_scheme: 'hmac-sha256' });
    for (const port of ['shell_port', 'iopub_port', 'stdin_port', 'control_port', 'hb_port']) {
      expect(state.connection[port]).toBeGreaterThan(0);
    }
    // The bridge that failed killed the kernel it had launched (and reaped it) before exiting.
    expect(isAlive(state.pid)).toBe(false);
  });

  it('reports a kernel directory it cannot make after "hello", as a failed start', async () => {
    const fake = join(dir, 'fake-no-runtime-dir');
    // TMPDIR is a file: the bridge's private directory under it cannot be made.
    await writeTree(fake, {
      'ipykernel/__init__.py': FAKE_VERSION,
      'jupyter_client/__init__.py': FAKE_VERSION,
      'not-a-directory': '',
    });
    const { code, stdout } = await runBridge({ PYTHONPATH: fake, TMPDIR: join(fake, 'not-a-directory') });
    expect(jsonLines(stdout)).toMatchObject([
      { event: 'hello' },
      { event: 'failed', reason: expect.stringContaining('NotADirectoryError') },
    ]);
    expect(code).toBe(4);
  });

  it('names jupyter_client when only ipykernel can be found', async () => {
    const fake = join(dir, 'fake-ipykernel-only');
    await writeTree(fake, { 'ipykernel/__init__.py': FAKE_VERSION });
    const { code, stdout } = await runBridge({ PYTHONPATH: fake });
    expect(code).toBe(3);
    expect(jsonLines(stdout)).toEqual([
      { event: 'unavailable', reason: "ModuleNotFoundError: No module named 'jupyter_client'" },
    ]);
  });
});
