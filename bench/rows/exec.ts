import { spawn } from 'node:child_process';
import type { Sandbox } from '@hopx-ai/sdk';
import { agentJSON, type Created } from '../api.ts';
import type { BenchContext } from '../context.ts';
import type { Row } from '../report.ts';
import { sdkAloneSamples } from '../sdk-floor.ts';
import { summarize, timed } from '../stats.ts';

/** Host `fork/exec` of /bin/true from Node (what the agent does for a command), `n` times. */
async function forkExecFloor(n: number): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    samples.push(
      await timed(
        () =>
          new Promise<void>((ok, fail) => {
            const child = spawn('/bin/true', [], { stdio: 'ignore' });
            child.on('error', fail);
            child.on('exit', () => ok());
          }),
      ),
    );
  }
  return samples;
}

async function repeat(n: number, fn: () => Promise<void>): Promise<{ samples: number[]; errors: number }> {
  const samples: number[] = [];
  let errors = 0;
  for (let i = 0; i < n; i++) {
    try {
      samples.push(await timed(fn));
    } catch {
      errors++;
    }
  }
  return { samples, errors };
}

/**
 * Row 3: round trips on a warm code-interpreter sandbox — `commands.run("true")`
 * and `runCode("1")` through the SDK, and `/commands/run` over raw keep-alive HTTP.
 */
export async function execRoundTrip(ctx: BenchContext, sb: Sandbox, raw: Created): Promise<Row[]> {
  const n = ctx.scale.execN;
  ctx.progress(`row 3: ${n} × commands.run("true"), runCode("1"), raw /commands/run`);
  const cmd = await repeat(n, async () => {
    const r = await sb.commands.run('true');
    if (r.exit_code !== 0) throw new Error(`exit ${r.exit_code}`);
  });
  const rawCmd = await repeat(n, async () => {
    const r = (await agentJSON(ctx.api, raw, 'POST', '/commands/run', { command: 'true', timeout: 30 })) as {
      exit_code: number;
    };
    if (r.exit_code !== 0) throw new Error(`exit ${r.exit_code}`);
  });
  // The same hop with no work behind it: what the gateway and the agent's HTTP layer cost alone.
  const health = await repeat(n, async () => {
    await agentJSON(ctx.api, raw, 'GET', '/health');
  });
  const code = await repeat(n, async () => {
    const r = await sb.runCode('1');
    if (r.exit_code !== 0) throw new Error(`exit ${r.exit_code}`);
  });
  ctx.progress('floors: fork/exec, crun exec, the SDK against a trivial local server');
  const alone = await sdkAloneSamples(Math.min(n, 1000));
  const fork = summarize(await forkExecFloor(Math.min(n, 1000)));
  const { id } = await ctx.bare.startIdle(ctx.server.rootfs('base'));
  const execSamples: number[] = [];
  for (let i = 0; i < Math.min(n, 200); i++) execSamples.push(await ctx.bare.execTrue(id));
  await ctx.bare.delete(id);
  const crunExec = summarize(execSamples);
  const target = (p50: number) => ({ text: 'p50 ≤ 5 ms', met: p50 <= 5 });
  const cmdStats = summarize(cmd.samples);
  const rawStats = summarize(rawCmd.samples);
  return [
    {
      section: 3,
      name: 'commands.run("true") (bash -c true)',
      via: '@hopx-ai/sdk',
      unit: 'ms',
      stats: cmdStats,
      errors: cmd.errors,
      floor: { name: 'host fork/exec of `true`', stats: fork },
      target: target(cmdStats.p50),
      note: 'SDK opens a new TCP connection per call',
    },
    {
      section: 3,
      name: 'POST /commands/run {command:"true"}',
      via: 'HTTP keep-alive',
      unit: 'ms',
      stats: rawStats,
      errors: rawCmd.errors,
      floor: { name: 'bare `crun exec true`', stats: crunExec },
      target: target(rawStats.p50),
    },
    {
      section: 3,
      name: 'GET /health of the agent (no work: gateway + agent HTTP alone)',
      via: 'HTTP keep-alive',
      unit: 'ms',
      stats: summarize(health.samples),
      errors: health.errors,
      floor: { name: 'host fork/exec of `true`', stats: fork },
    },
    {
      section: 3,
      name: 'commands.run("true") against a trivial local server (the SDK\'s own cost, no sandbox)',
      via: '@hopx-ai/sdk',
      unit: 'ms',
      stats: summarize(alone.command),
      errors: 0,
      note: 'canned answers from a Node HTTP server in the bench process',
    },
    {
      section: 3,
      name: 'runCode("1") (python kernel)',
      via: '@hopx-ai/sdk',
      unit: 'ms',
      stats: summarize(code.samples),
      errors: code.errors,
      floor: { name: 'bare `crun exec true`', stats: crunExec },
    },
    {
      section: 3,
      name: 'runCode("1") against a trivial local server (the SDK\'s own cost, no sandbox)',
      via: '@hopx-ai/sdk',
      unit: 'ms',
      stats: summarize(alone.code),
      errors: 0,
      note: 'canned answers from a Node HTTP server in the bench process',
    },
  ];
}
