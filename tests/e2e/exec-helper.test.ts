import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agent, type CommandReply, type CreatedSandbox, createSandbox, deleteSandbox, sh } from './client.ts';

/** `/commands/run` with an argument array, as the agent receives it. */
async function run(sb: CreatedSandbox, command: string, args: string[], timeout = 30) {
  const r = await agent<CommandReply & { error?: string; timed_out: boolean; execution_time: number }>(
    sb,
    'POST',
    '/commands/run',
    { command, args, timeout },
  );
  expect(r.status).toBe(200);
  return r.body;
}

describe('the exec helper (warren-exec) in a real sandbox', () => {
  let sb: CreatedSandbox;

  beforeAll(async () => {
    sb = await createSandbox({ template_name: 'base' });
  });
  afterAll(async () => {
    if (sb) await deleteSandbox(sb);
  });

  it('starts commands: their parent is warren-exec, and it stays small', async () => {
    const r = await sh(sb, 'cat /proc/$PPID/comm; grep -E "^(VmRSS|RssAnon):" /proc/$PPID/status');
    const [comm, vmRss, rssAnon] = r.stdout.trim().split('\n');
    expect(comm).toBe('warren-exec');
    const kiB = (line: string | undefined) => Number(/(\d+) kB/.exec(line ?? '')?.[1]);
    expect(kiB(vmRss)).toBeLessThan(4096);
    expect(kiB(rssAnon)).toBeLessThan(1024);
  });

  it('keeps the agent semantics: exit codes, not found, cwd, timeout, a background child holding the pipes', async () => {
    expect(await run(sb, 'bash', ['-c', 'echo out; echo err >&2; exit 7'])).toMatchObject({
      exit_code: 7,
      stdout: 'out\n',
      stderr: 'err\n',
    });
    const missing = await run(sb, 'warren-no-such-program', []);
    expect(missing.exit_code).toBe(127);
    expect(missing.error).toContain('command not found');
    const cwd = await agent<CommandReply>(sb, 'POST', '/commands/run', { command: 'pwd', workdir: '/tmp' });
    expect(cwd.body.stdout).toBe('/tmp\n');
    const started = Date.now();
    expect(await run(sb, 'bash', ['-c', 'sleep 30 & echo done'])).toMatchObject({ exit_code: 0, stdout: 'done\n' });
    expect(Date.now() - started).toBeLessThan(5000);
    const slow = await run(sb, 'sleep', ['30'], 1);
    expect(slow).toMatchObject({ exit_code: 124, timed_out: true });
  });
});
