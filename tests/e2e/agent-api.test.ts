import { Sandbox } from '@hopx-ai/sdk';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const ctx = inject('warren');
const opts = { baseURL: ctx.baseURL, apiKey: ctx.apiKey };

/** The SDK's agent HTTP client, for the few wire fields its result classes drop (e.g. `stdout_truncated`). */
type RawAgent = { post(path: string, body: unknown, options?: { timeout: number }): Promise<Record<string, unknown>> };
const rawAgent = (sb: Sandbox) => (sb as unknown as { agentClient: RawAgent }).agentClient;

interface Snapshot {
  requests_total: number;
  system: { memory: { used: number; usage_bytes: number; total: number }; cpu: { usage_seconds_total: number } };
  agent: { rss_bytes: number };
}
const snapshot = async (sb: Sandbox) => (await sb.getMetricsSnapshot()) as unknown as Snapshot;

/** Live members of a process group inside the sandbox, from `ps`. */
async function groupInSandbox(sb: Sandbox, pgid: number): Promise<string> {
  const r = await sb.commands.run(`ps -e -o pid=,pgid=,stat=,args= | awk '$2 == ${pgid} && $3 !~ /^Z/'`);
  return r.stdout.trim();
}

/** Text of a terminal's output without escape sequences, split into lines. */
function terminalLines(out: string): string[] {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences
  return out.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').split(/\r?\n|\r/);
}

const MiB = 1024 * 1024;

describe('agent API (kernel, background, streams, terminal, watch, metrics) on a code-interpreter sandbox', () => {
  let sb: Sandbox;

  beforeAll(async () => {
    sb = await Sandbox.create({ template: 'code-interpreter', ...opts });
    // The agent starts the kernel when it starts; wait until it reports it.
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      const health = (await sb.getHealth()) as { features?: { ipython_kernel?: boolean } };
      if (health.features?.ipython_kernel === true) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  });

  afterAll(async () => {
    await sb?.kill().catch(() => undefined);
  });

  it('reports health and agent info with the kernel in use (PROTOCOL §15 33–34)', async () => {
    expect(await sb.isHealthy()).toBe(true);
    const info = (await sb.getAgentInfo()) as unknown as {
      features: Record<string, unknown>;
      endpoints: Record<string, string>;
    };
    expect(info.features).toMatchObject({
      ipython_kernel: true,
      python_executor: 'jupyter-kernel',
      terminal_access: true,
      websocket_streaming: true,
      background_jobs: true,
    });
    expect(info.endpoints.terminal).toBe('WS /terminal');
  });

  it('keeps state across runIpython calls and returns the last expression as result', async () => {
    const set = await sb.runIpython('x = 41');
    expect(set.success).toBe(true);
    const r = await sb.runIpython('x + 1');
    expect(r.result).toBe('42');
    expect(r.success).toBe(true);
  });

  it('keeps state across runCode python calls, which share the kernel with runIpython', async () => {
    await sb.runCode('counter = 10');
    await sb.runCode('counter += 5');
    const r = await sb.runCode('print(counter, x)');
    expect(r.stdout).toBe('15 41\n');
    expect(r.exit_code).toBe(0);
  });

  it('applies per-call env and workdir inside the kernel, and restores them afterwards', async () => {
    const probe = 'import os; print(os.getcwd(), os.environ.get("Z"))';
    expect((await sb.runCode(probe, { workingDir: '/tmp', env: { Z: '9' } })).stdout).toBe('/tmp 9\n');
    expect((await sb.runCode(probe)).stdout).toBe('/workspace None\n');
    await sb.env.set('GLOBAL_K', 'g1');
    expect((await sb.runCode('import os; print(os.environ["GLOBAL_K"])')).stdout).toBe('g1\n');
  });

  it('returns a matplotlib figure as a PNG rich output that decodes to a valid PNG', async () => {
    const r = await sb.runCode(
      'import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 3))\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.title("warren")\nplt.show()',
    );
    expect(r.success).toBe(true);
    expect(typeof r.png).toBe('string');
    const rich = r.richOutputs?.find((o) => o.type === 'image/png');
    expect(rich).toBeDefined();
    const png = Buffer.from(((rich?.data ?? {}) as Record<string, string>)['image/png'] ?? '', 'base64');
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.readUInt32BE(8)).toBe(13); // IHDR is the first chunk, 13 bytes long
    expect(png.subarray(12, 16).toString('ascii')).toBe('IHDR');
    expect(png.readUInt32BE(16)).toBeGreaterThan(100); // width
    expect(png.readUInt32BE(20)).toBeGreaterThan(100); // height
  });

  it('returns a pandas DataFrame as HTML with a table', async () => {
    const r = await sb.runCode('import pandas as pd\npd.DataFrame({"a": [1, 2], "b": [3, 4]})');
    expect(r.success).toBe(true);
    expect(r.html).toContain('<table');
    expect(r.richOutputs?.some((o) => o.type === 'text/html')).toBe(true);
    expect(r.result).toContain('a  b');
  });

  it('reports user errors with exit 1 and the traceback in stderr', async () => {
    const r = await sb.runCode('def f():\n    return 1 / 0\nf()');
    expect(r.success).toBe(false);
    expect(r.exit_code).toBe(1);
    expect(r.stderr).toContain('ZeroDivisionError');
  });

  it('interrupts a kernel run that times out; the kernel and its state survive', async () => {
    const started = Date.now();
    const r = await sb.runCode('import time\nprint("before", flush=True)\ntime.sleep(60)', { timeout: 2 });
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(r.success).toBe(false);
    expect(r.exit_code).toBe(124);
    expect(r.stderr).toContain('timed out');
    expect(r.stdout).toBe('before\n');
    const next = await sb.runCode('print("still", counter)');
    expect(next.stdout).toBe('still 15\n');
  });

  it('restarts a kernel that dies during a run; the next run works in a fresh kernel', async () => {
    await sb.runCode('doomed = 1');
    const r = await sb.runCode('import os\nos._exit(3)');
    expect(r.success).toBe(false);
    expect(r.stderr).toContain('restarted');
    const next = await sb.runCode('print("doomed" in globals())');
    expect(next.stdout).toBe('False\n');
    // Again: the first kernel was launched by the bridge itself, the second by jupyter_client, which restarts it.
    await sb.runCode('doomed = 2');
    const again = await sb.runCode('import os\nos._exit(3)');
    expect(again.success).toBe(false);
    expect(again.stderr).toContain('restarted');
    expect((await sb.runCode('print("doomed" in globals())')).stdout).toBe('False\n');
    // Keep the state later tests use.
    await sb.runCode('x = 41\ncounter = 15');
  });

  it('starts the kernel as `python -m ipykernel_launcher` would, without loading debugpy or jedi', async () => {
    // The restarted kernel above went through the same launcher as the first one.
    const r = await sb.runCode(
      [
        'import os, sys',
        'print(any(m.startswith(("debugpy", "_pydevd", "jedi")) for m in sys.modules))',
        'print(sys.argv[0].endswith("/ipykernel_launcher.py"), sys.argv[1])',
        'print(sys.path[0] == os.getcwd())',
        'import debugpy, jedi',
        'print(bool(debugpy.__version__), bool(jedi.__version__))',
      ].join('\n'),
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('False\nTrue -f\nTrue\nTrue True\n');
  });

  it("finds the kernel's spec as jupyter_client does, without importing IPython or ipykernel's kernel", async () => {
    const script = [
      'import json, sys',
      'sys.path.insert(0, "/.warren/agent")',
      'import kernel_bridge',
      'spec = kernel_bridge.kernel_spec_manager().get_kernel_spec("python3")',
      'heavy = [m for m in ("IPython", "ipykernel.kernelspec", "debugpy") if m in sys.modules]',
      'from jupyter_client.kernelspec import KernelSpecManager',
      'theirs = KernelSpecManager().get_kernel_spec("python3")',
      'print(json.dumps([heavy, spec.resource_dir == theirs.resource_dir, spec.argv == theirs.argv, spec.argv]))',
    ].join('\n');
    // jupyter_client's own lookup (the comparison) does import debugpy, which warns on stderr without this.
    const r = await sb.commands.run(`PYDEVD_DISABLE_FILE_VALIDATION=1 python3 -c '${script}'`);
    expect(r.stderr).toBe('');
    const [heavy, sameDir, sameArgv, argv] = JSON.parse(r.stdout) as [string[], boolean, boolean, string[]];
    expect(heavy).toEqual([]);
    expect(sameDir).toBe(true);
    expect(sameArgv).toBe(true);
    expect(argv.slice(1)).toEqual(['-m', 'ipykernel_launcher', '-f', '{connection_file}']);
  });

  it('bounds a print flood: truncated, timed out, and the agent RSS stays bounded', async () => {
    const rss: number[] = [(await snapshot(sb)).agent.rss_bytes];
    for (let round = 0; round < 6; round++) {
      const raw = await rawAgent(sb).post(
        '/execute',
        { code: "while True: print('x' * 1000)", language: 'python', timeout: 3, workdir: '/workspace' },
        { timeout: 60_000 },
      );
      expect(raw).toMatchObject({ success: false, exit_code: 124, timed_out: true, stdout_truncated: true });
      expect(String(raw.stderr)).toContain('timed out');
      const kept = String(raw.stdout).length;
      expect(kept).toBeGreaterThan(1 * MiB);
      expect(kept).toBeLessThanOrEqual(4 * MiB);
      // The same flood from a plain process (a command) is capped by the agent itself.
      const cmd = await sb.commands.run("yes 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'", { timeout: 3 });
      expect(cmd.exit_code).toBe(124);
      expect(cmd.stdout.length).toBeLessThanOrEqual(4 * MiB);
      rss.push((await snapshot(sb)).agent.rss_bytes);
    }
    const mib = rss.map((b) => (b / MiB).toFixed(1));
    console.log(
      `agent RSS (MiB): ${mib[0]} before; ${mib.slice(1).join(', ')} after each of 6 rounds of ` +
        'a 3 s kernel print flood (4 MiB kept) plus a 3 s `yes` command flood (4 MiB kept)',
    );
    const first = rss[0] ?? 0;
    // Bounded after every round, not just the last.
    for (const sample of rss) expect(sample - first).toBeLessThan(96 * MiB);
    // Not leaking: later rounds do not keep adding what the first ones took. A single sample
    // swings by ±30 MiB with when V8 frees the flood's read buffers, so compare the lowest
    // sample of the last three rounds with the lowest of the first three (garbage only adds).
    const early = Math.min(...rss.slice(1, 4));
    const late = Math.min(...rss.slice(4, 7));
    expect(late - early).toBeLessThan(32 * MiB);
    expect((await sb.runCode('print("alive")')).stdout).toBe('alive\n');
  });

  it('runs a background command, lists it running, kills it and its whole group (PROTOCOL §15 20, 27–28)', async () => {
    const bg = (await sb.commands.run('sleep 300', { background: true })) as unknown as {
      process_id: string;
      status: string;
    };
    expect(bg.status).toBe('running');
    const listed = (await sb.listProcesses()).find((p) => p.process_id === bg.process_id);
    expect(listed?.status).toBe('running');
    const pid = Number((listed as { pid?: number } | undefined)?.pid);
    expect(await groupInSandbox(sb, pid)).toContain('sleep 300');

    await sb.killProcess(bg.process_id);
    const after = (await sb.listProcesses()).find((p) => p.process_id === bg.process_id);
    expect(after?.status).toBe('killed');
    expect(await groupInSandbox(sb, pid)).toBe('');
  });

  it('runs background code, lists it running, kills it and its whole group (PROTOCOL §15 26–28)', async () => {
    const bg = (await sb.runCodeBackground(
      'import subprocess, time\nsubprocess.Popen(["sleep", "300"])\ntime.sleep(300)',
      { name: 'sleeper' },
    )) as unknown as { process_id: string; status: string };
    expect(bg.status).toBe('running');
    const listed = (await sb.listProcesses()).find((p) => p.process_id === bg.process_id);
    expect(listed).toMatchObject({ status: 'running', name: 'sleeper', language: 'python' });
    const pid = Number((listed as { pid?: number } | undefined)?.pid);
    await expect.poll(() => groupInSandbox(sb, pid)).toContain('sleep 300');

    await sb.killProcess(bg.process_id);
    expect((await sb.listProcesses()).find((p) => p.process_id === bg.process_id)?.status).toBe('killed');
    expect(await groupInSandbox(sb, pid)).toBe('');
  });

  it('streams code over the WebSocket, ending with complete (PROTOCOL §15 29)', async () => {
    const messages: Array<{ type: string; data?: string; exit_code?: number }> = [];
    for await (const m of sb.runCodeStream(
      'import time\nfor i in range(3):\n    print("tick", i)\n    time.sleep(0.1)',
    )) {
      messages.push(m as (typeof messages)[number]);
    }
    const stdout = messages
      .filter((m) => m.type === 'stdout')
      .map((m) => m.data)
      .join('');
    expect(stdout).toBe('tick 0\ntick 1\ntick 2\n');
    expect(messages.find((m) => m.type === 'result')?.exit_code).toBe(0);
    expect(messages.at(-1)?.type).toBe('complete');
  });

  it('runs an interactive terminal: echo, resize, exit (PROTOCOL §15 30)', async () => {
    const ws = await sb.terminal.connect();
    const guard = setTimeout(() => ws.close(), 30_000);
    let out = '';
    let stage = 0;
    let exit: { type: string; code?: number } | undefined;
    sb.terminal.sendInput(ws, 'echo hi\n');
    for await (const m of sb.terminal.output(ws)) {
      const msg = m as { type: string; data?: string; code?: number };
      if (msg.type === 'output') out += msg.data ?? '';
      if (msg.type === 'exit') {
        exit = msg;
        break;
      }
      const lines = terminalLines(out).map((l) => l.trim());
      if (stage === 0 && lines.includes('hi')) {
        stage = 1;
        sb.terminal.resize(ws, 120, 40);
        sb.terminal.sendInput(ws, 'stty size\n');
      } else if (stage === 1 && lines.includes('40 120')) {
        stage = 2;
        sb.terminal.sendInput(ws, 'exit\n');
      }
    }
    clearTimeout(guard);
    expect(stage).toBe(2);
    expect(terminalLines(out).map((l) => l.trim())).toContain('hi');
    expect(exit).toMatchObject({ type: 'exit', code: 0 });
  });

  it('watches files: a file written after the watch started is reported (PROTOCOL §15 31)', async () => {
    await sb.files.mkdir('/workspace/watched');
    const events = sb.watchFiles('/workspace/watched')[Symbol.asyncIterator]();
    const first = events.next();
    await new Promise((r) => setTimeout(r, 1500)); // the watch frame is sent once the socket opens; no ack
    await sb.files.write('/workspace/watched/new.txt', 'hello');
    const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no file event')), 15_000));
    const event = (await Promise.race([first, timeout])).value as { type: string; path: string; event: string };
    expect(event).toMatchObject({ type: 'change', path: '/workspace/watched/new.txt', event: 'created' });
    void events.return?.(undefined);
  });

  it('reports real, changing metrics: memory grows after allocating (PROTOCOL §15 32)', async () => {
    const before = await snapshot(sb);
    await sb.runCode('blob = b"\\x01" * (300 * 1024 * 1024)');
    const during = await snapshot(sb);
    await sb.runCode('del blob');
    expect(during.system.memory.used - before.system.memory.used).toBeGreaterThan(200 * MiB);
    expect(during.system.memory.total).toBe(2048 * MiB);
    expect(during.requests_total).toBeGreaterThan(before.requests_total);
    expect(during.system.cpu.usage_seconds_total).toBeGreaterThan(before.system.cpu.usage_seconds_total);
  });

  it('lists the sandbox processes, the agent and the kernel among them (PROTOCOL §15 36)', async () => {
    const processes = (await sb.listSystemProcesses()) as unknown as Array<{
      pid: number;
      name: string;
      command: string;
      memory_mb: number;
      user: string;
    }>;
    const agent = processes.find((p) => p.command.includes('/.warren/agent/') && !p.command.includes('warren-init'));
    expect(agent).toMatchObject({ user: 'root' });
    expect(agent?.memory_mb).toBeGreaterThan(10);
    expect(processes.some((p) => p.command.includes('ipykernel'))).toBe(true);
    expect(processes.find((p) => p.pid === 1)?.name).toBe('warren-init');
  });

  it('lists the Jupyter kernel session (PROTOCOL §15 36)', async () => {
    const sessions = (await sb.getJupyterSessions()) as Array<{ kernel_id: string; execution_state: string }>;
    expect(sessions).toHaveLength(1);
    expect(sessions[0]?.kernel_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(sessions[0]?.execution_state).toBe('idle');
  });

  it('answers cache stats and clear (PROTOCOL §15 35)', async () => {
    const stats = (await sb.cache.stats()) as unknown as { cache: { size: number }; hits: number };
    expect(stats.cache.size).toBe(0);
    expect(stats.hits).toBe(0);
    const cleared = (await sb.cache.clear()) as unknown as { message: string };
    expect(cleared.message).toBe('Cache cleared');
  });
});

describe('python without a Jupyter kernel (base template)', () => {
  let base: Sandbox;

  beforeAll(async () => {
    base = await Sandbox.create({ template: 'base', ...opts });
  });
  afterAll(async () => {
    await base?.kill().catch(() => undefined);
  });

  it('runs python as plain processes and says so in /health and /info', async () => {
    const r = await base.runCode('print(6 * 7)');
    expect(r.stdout).toBe('42\n');
    const ipy = await base.runIpython('print("no kernel")');
    expect(ipy.stdout).toBe('no kernel\n');
    const health = (await base.getHealth()) as { features: Record<string, unknown> };
    expect(health.features).toMatchObject({ ipython_kernel: false, python_executor: 'process' });
    expect(await base.getJupyterSessions()).toEqual([]);
  });

  it('starts processes in C.UTF-8, which the template build put in the locale archive', async () => {
    // `locale` complains on stderr about a locale it cannot load; `wc -m` counts 'é' as one character only in UTF-8.
    const r = await base.commands.run(
      `localedef --list-archive; locale >/dev/null; printf '\\303\\251' | wc -m; ` +
        `python3 -c 'import locale; print(locale.setlocale(locale.LC_ALL, ""))'`,
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('C.utf8\n1\nC.UTF-8\n');
  });
});
