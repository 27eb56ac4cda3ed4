import { afterAll, describe, expect, inject, it } from 'vitest';
import { cliEnv, run, WARREN_BIN, warren } from './cli.ts';
import { cp } from './client.ts';
import { tracesAfterTeardown } from './leaks.ts';

const ctx = inject('warren');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A tmux server of this test only (its own socket), driving a real terminal. */
class Tmux {
  readonly socket = `warren-cli-test-${process.pid}`;
  readonly env = { ...cliEnv(), TERM: 'xterm-256color' };

  tmux(...args: string[]): Promise<string> {
    return run('tmux', ['-L', this.socket, '-f', '/dev/null', ...args], this.env);
  }

  /** The whole pane, history included, trailing blank lines dropped. */
  async pane(): Promise<string> {
    return (await this.tmux('capture-pane', '-p', '-J', '-S', '-', '-t', 's')).replace(/\n+$/, '');
  }

  /** Waits until the pane matches; the limit only ends a hung test, it measures nothing. */
  async waitFor(pattern: RegExp, limitMs = 60_000): Promise<string> {
    const end = Date.now() + limitMs;
    for (;;) {
      const text = await this.pane();
      if (pattern.test(text)) return text;
      if (Date.now() > end) throw new Error(`pane never matched ${pattern}:\n${text}`);
      await sleep(100);
    }
  }

  type(text: string): Promise<string> {
    return this.tmux('send-keys', '-t', 's', '-l', text);
  }

  enter(): Promise<string> {
    return this.tmux('send-keys', '-t', 's', 'Enter');
  }
}

describe('warren sandbox shell in a real terminal (tmux)', () => {
  const tmux = new Tmux();
  let id: string | undefined;

  afterAll(async () => {
    await tmux.tmux('kill-server').catch(() => undefined);
    if (id) {
      await cp('DELETE', `/v1/sandboxes/${id}`);
      expect(await tracesAfterTeardown(id, ctx)).toEqual([]);
    }
  });

  it('runs typed commands, follows resizes, and exit N returns to the host shell with status N', async () => {
    const created = await warren(['sandbox', 'create', '-t', 'base']);
    expect(created.code).toBe(0);
    id = created.stdout.trim();

    await tmux.tmux(
      'new-session',
      '-d',
      '-s',
      's',
      '-x',
      '120',
      '-y',
      '30',
      "env PS1='host$ ' bash --norc --noprofile -i",
    );
    await tmux.waitFor(/host\$ $/);
    await tmux.type(`node ${WARREN_BIN} sandbox shell ${id}`);
    await tmux.enter();
    // The sandbox's login shell prompt: root@<sandbox id>.
    await tmux.waitFor(new RegExp(`root@${id}:[^\\n]*# $`));

    await tmux.type('echo "typed-$((6*7))"; hostname; stty size');
    await tmux.enter();
    const out = await tmux.waitFor(/^30 120$/m);
    expect(out).toMatch(/^typed-42$/m);
    expect(out).toMatch(new RegExp(`^${id}$`, 'm'));

    // A resize of the host terminal reaches the remote PTY (SIGWINCH → resize frame).
    await tmux.tmux('resize-window', '-t', 's', '-x', '100', '-y', '25');
    // The resize travels as a signal, the next keys as input: ask until the new size shows.
    let resized = false;
    for (let i = 0; i < 50 && !resized; i++) {
      await tmux.type(`stty size; echo "size-asked-${i}"`);
      await tmux.enter();
      resized = /^25 100$/m.test(await tmux.waitFor(new RegExp(`^size-asked-${i}$`, 'm')));
    }
    expect(resized).toBe(true);

    // Raw mode: Ctrl-C reaches the remote shell (interrupting sleep), not the CLI.
    await tmux.type('sleep 600');
    await tmux.enter();
    await tmux.waitFor(/sleep 600\n?$/);
    await tmux.tmux('send-keys', '-t', 's', 'C-c');
    await tmux.type('echo "after-ctrl-c-$?"');
    await tmux.enter();
    await tmux.waitFor(/^after-ctrl-c-130$/m);

    await tmux.type('exit 3');
    await tmux.enter();
    await tmux.waitFor(/host\$ $/);
    await tmux.type('echo "host-saw-$?"');
    await tmux.enter();
    const final = await tmux.waitFor(/^host-saw-\d+$/m);
    expect(final).toMatch(/^host-saw-3$/m);
  });
});
