import { spawn, spawnSync } from 'node:child_process';
import { chmod, link, lstat, mkdir, mkdtemp, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  debianSourcesFor,
  ensureTemplateRootfs,
  hostDebianSources,
  parseDeb822Sources,
  parseOneLineSources,
  SANDBOX_ID_SHIFT,
  shiftOwnership,
  type TemplateBuildError,
  type TemplateRootfsSpec,
  templateContentHash,
  withFileLock,
} from './builder.ts';
import { baseTemplate, codeInterpreterTemplate } from './builtin.ts';

const isRoot = process.getuid?.() === 0;
const hasCommand = (name: string) => spawnSync('sh', ['-c', 'command -v "$1"', 'sh', name]).status === 0;

const SOURCES = [
  'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main',
  'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main',
];
const inputs = { aptSources: SOURCES, architecture: 'amd64' };

let tmp: string;
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'warren-builder-test-'));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('templateContentHash', () => {
  const withPackages = (packages: string[]): TemplateRootfsSpec => ({
    ...baseTemplate,
    rootfs: { ...baseTemplate.rootfs, packages },
  });

  it('is stable for the same inputs', () => {
    expect(templateContentHash(baseTemplate, inputs)).toBe(templateContentHash({ ...baseTemplate }, { ...inputs }));
    expect(templateContentHash(baseTemplate, inputs)).toMatch(/^[0-9a-f]{64}$/);
  });

  it('changes when the package list changes', () => {
    const base = templateContentHash(baseTemplate, inputs);
    expect(templateContentHash(withPackages([...baseTemplate.rootfs.packages, 'curl']), inputs)).not.toBe(base);
    expect(templateContentHash(withPackages(baseTemplate.rootfs.packages.slice(1)), inputs)).not.toBe(base);
    expect(templateContentHash(codeInterpreterTemplate, inputs)).not.toBe(base);
  });

  it('ignores package order and duplicates, and the template name', () => {
    const base = templateContentHash(baseTemplate, inputs);
    const shuffled = [...baseTemplate.rootfs.packages].reverse();
    expect(templateContentHash(withPackages([...shuffled, 'bash']), inputs)).toBe(base);
    expect(templateContentHash({ ...baseTemplate, name: 'other' }, inputs)).toBe(base);
  });

  it('changes with the sources, the architecture and the workdir', () => {
    const base = templateContentHash(baseTemplate, inputs);
    expect(templateContentHash(baseTemplate, { ...inputs, aptSources: SOURCES.slice(0, 1) })).not.toBe(base);
    expect(templateContentHash(baseTemplate, { ...inputs, architecture: 'arm64' })).not.toBe(base);
    expect(templateContentHash({ ...baseTemplate, workdir: '/work' }, inputs)).not.toBe(base);
  });
});

describe('apt sources', () => {
  const deb822 = [
    'Types: deb',
    '# http://snapshot.debian.org/archive/debian/20250520T000000Z',
    'URIs: http://deb.debian.org/debian',
    'Suites: bookworm bookworm-updates',
    'Components: main',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
    '',
    'Types: deb',
    'URIs: http://deb.debian.org/debian-security',
    'Suites: bookworm-security',
    'Components: main',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
    '',
    'Types: deb',
    'URIs: https://deb.nodesource.com/node_20.x',
    'Suites: nodistro',
    'Components: main',
    '',
    'Enabled: no',
    'Types: deb',
    'URIs: http://deb.debian.org/debian',
    'Suites: bookworm-backports',
    'Components: main',
  ].join('\n');

  it('keeps the deb.debian.org entries of a deb822 file', () => {
    const lines = debianSourcesFor(parseDeb822Sources(deb822), { suite: 'bookworm', hostCodename: 'bookworm' });
    expect(lines).toEqual([
      'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main',
      'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main',
      'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main',
    ]);
  });

  it("renames the host's suites to the template's suite", () => {
    const lines = debianSourcesFor(parseDeb822Sources(deb822), { suite: 'trixie', hostCodename: 'bookworm' });
    expect(lines.map((l) => l.split(' ').at(-2))).toEqual(['trixie', 'trixie-updates', 'trixie-security']);
  });

  it('parses one-line entries and skips deb-src and other hosts', () => {
    const text = [
      '# comment',
      'deb http://deb.debian.org/debian/ bookworm main contrib',
      'deb-src http://deb.debian.org/debian bookworm main',
      'deb [arch=amd64 signed-by=/k.gpg] http://deb.debian.org/debian-security bookworm-security main',
      'deb http://mirror.example.org/debian bookworm main',
    ].join('\n');
    const lines = debianSourcesFor(parseOneLineSources(text), { suite: 'bookworm', hostCodename: 'bookworm' });
    expect(lines).toEqual([
      'deb http://deb.debian.org/debian bookworm main',
      'deb [signed-by=/k.gpg] http://deb.debian.org/debian-security bookworm-security main',
    ]);
  });

  it('reads the files of an /etc directory and ignores other file names', async () => {
    await mkdir(join(tmp, 'apt/sources.list.d'), { recursive: true });
    await writeFile(join(tmp, 'apt/sources.list.d/debian.sources'), deb822);
    await writeFile(join(tmp, 'apt/sources.list.d/extra.list.disabled'), 'deb http://deb.debian.org/debian sid main\n');
    await writeFile(join(tmp, 'os-release'), 'ID=debian\nVERSION_CODENAME=bookworm\n');
    const lines = await hostDebianSources('bookworm', { etcDir: tmp });
    expect(lines).toHaveLength(3);
    expect(lines.join('\n')).not.toContain('sid');
  });

  it('fails with a clear message when the host has no deb.debian.org entry', async () => {
    await mkdir(join(tmp, 'apt'), { recursive: true });
    await writeFile(join(tmp, 'apt/sources.list'), 'deb http://mirror.example.org/debian bookworm main\n');
    await expect(hostDebianSources('bookworm', { etcDir: tmp })).rejects.toThrow(/deb\.debian\.org/);
  });
});

describe.skipIf(!isRoot)('shiftOwnership', () => {
  it('shifts every entry once, never follows symlinks and keeps setuid/setgid bits', async () => {
    const root = join(tmp, 'root');
    const outside = join(tmp, 'outside');
    await mkdir(join(root, 'dir/sub'), { recursive: true });
    await writeFile(outside, 'not part of the tree');
    await writeFile(join(root, 'file'), 'x');
    await writeFile(join(root, 'dir/sub/user-file'), 'x');
    await chown(join(root, 'dir/sub/user-file'), 1000, 50);
    await writeFile(join(root, 'suid'), 'x');
    await chmod(join(root, 'suid'), 0o4755);
    await writeFile(join(root, 'sgid'), 'x');
    await chmod(join(root, 'sgid'), 0o2755);
    await mkdir(join(root, 'sgid-dir'));
    await chmod(join(root, 'sgid-dir'), 0o2775);
    await link(join(root, 'suid'), join(root, 'dir/suid-hardlink'));
    await symlink(outside, join(root, 'link-out'));
    await symlink('does-not-exist', join(root, 'dangling'));

    const { entries } = await shiftOwnership(root);
    // root, dir, dir/sub, user-file, file, suid (+ its hard link), sgid, sgid-dir, 2 symlinks
    expect(entries).toBe(10);

    const owner = async (path: string) => {
      const st = await lstat(path);
      return [st.uid, st.gid];
    };
    const s = SANDBOX_ID_SHIFT;
    for (const path of ['', 'dir', 'dir/sub', 'file', 'suid', 'sgid', 'sgid-dir', 'link-out', 'dangling']) {
      expect(await owner(join(root, path)), path).toEqual([s, s]);
    }
    expect(await owner(join(root, 'dir/sub/user-file'))).toEqual([s + 1000, s + 50]);
    expect(await owner(outside)).toEqual([0, 0]);
    expect((await stat(join(root, 'suid'))).mode & 0o7777).toBe(0o4755);
    expect((await stat(join(root, 'sgid'))).mode & 0o7777).toBe(0o2755);
    expect((await stat(join(root, 'sgid-dir'))).mode & 0o7777).toBe(0o2775);

    await expect(shiftOwnership(root)).rejects.toThrow(/already shifted/);
  });

  it('handles a wide and deep tree', async () => {
    const root = join(tmp, 'wide');
    for (let d = 0; d < 40; d++) {
      const dir = join(root, `d${d}`, 'x', 'y');
      await mkdir(dir, { recursive: true });
      for (let f = 0; f < 25; f++) await writeFile(join(dir, `f${f}`), '');
    }
    const { entries } = await shiftOwnership(root, { concurrency: 4 });
    expect(entries).toBe(1 + 40 * 3 + 40 * 25);
    expect((await lstat(join(root, 'd39/x/y/f24'))).uid).toBe(SANDBOX_ID_SHIFT);
  });
});

async function chown(path: string, uid: number, gid: number): Promise<void> {
  const { lchown } = await import('node:fs/promises');
  await lchown(path, uid, gid);
}

describe.skipIf(!hasCommand('flock'))('withFileLock', () => {
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  it('never runs two holders at once, in one process', async () => {
    const lockPath = join(tmp, 'a.lock');
    const events: string[] = [];
    let waited = 0;
    const holder = (name: string) =>
      withFileLock(
        lockPath,
        async () => {
          events.push(`${name} in`);
          await sleep(150);
          events.push(`${name} out`);
        },
        { onWait: () => waited++ },
      );
    await Promise.all([holder('a'), holder('b'), holder('c')]);
    expect(waited).toBe(2);
    for (let i = 0; i < events.length; i += 2) {
      expect(events[i]?.endsWith(' in')).toBe(true);
      expect(events[i + 1]).toBe(events[i]?.replace(' in', ' out'));
    }
  });

  it('excludes other processes while held and releases when fn settles', async () => {
    const lockPath = join(tmp, 'b.lock');
    const tryOther = () => spawnSync('flock', ['--nonblock', lockPath, 'true']).status;
    await withFileLock(lockPath, async () => {
      expect(tryOther()).not.toBe(0);
    });
    expect(tryOther()).toBe(0);
    await expect(
      withFileLock(lockPath, async () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(tryOther()).toBe(0);
  });

  it('is released by the kernel when the holding process dies', async () => {
    const lockPath = join(tmp, 'c.lock');
    const holder = spawn('flock', ['--no-fork', lockPath, 'sleep', '60'], { stdio: 'ignore' });
    await sleep(200);
    let waited = false;
    const acquired = withFileLock(lockPath, async () => 'mine', { onWait: () => (waited = true) });
    await sleep(200);
    expect(waited).toBe(true);
    holder.kill('SIGKILL');
    await expect(acquired).resolves.toBe('mine');
  });

  it('stops waiting when aborted', async () => {
    const lockPath = join(tmp, 'd.lock');
    const controller = new AbortController();
    await withFileLock(lockPath, async () => {
      const waiting = withFileLock(lockPath, async () => 'never', { signal: controller.signal });
      await sleep(100);
      controller.abort(new Error('gave up'));
      await expect(waiting).rejects.toThrow('gave up');
    });
  });
});

describe('ensureTemplateRootfs', () => {
  it('returns a cached entry without building', async () => {
    const contentHash = templateContentHash(baseTemplate, {
      aptSources: SOURCES,
      architecture: process.arch === 'arm64' ? 'arm64' : 'amd64',
    });
    const entry = join(tmp, 'templates', `base-${contentHash.slice(0, 16)}`);
    await mkdir(join(entry, 'rootfs'), { recursive: true });
    await writeFile(join(entry, 'template.json'), JSON.stringify({ contentHash }));
    const lines: string[] = [];
    const result = await ensureTemplateRootfs(baseTemplate, {
      cacheDir: tmp,
      aptSources: SOURCES,
      onProgress: (line) => lines.push(line),
    });
    expect(result).toEqual({ rootfsDir: join(entry, 'rootfs'), contentHash, cached: true });
    expect(lines.join('\n')).toContain('cached');
  });

  it.skipIf(!isRoot || !hasCommand('mmdebstrap'))('leaves nothing behind when the build fails', async () => {
    const lines: string[] = [];
    const failing = ensureTemplateRootfs(baseTemplate, {
      cacheDir: tmp,
      // An unreachable mirror makes mmdebstrap fail during `apt-get update`.
      aptSources: [`deb file://${join(tmp, 'no-mirror')} bookworm main`],
      onProgress: (line) => lines.push(line),
    });
    const err = (await failing.catch((e: unknown) => e)) as TemplateBuildError;
    expect(err.name).toBe('TemplateBuildError');
    expect(err.exitCode).not.toBe(0);
    expect(err.logTail.length).toBeGreaterThan(0);
    expect(lines.some((l) => l.startsWith('mmdebstrap '))).toBe(true);
    const left = await readdir(join(tmp, 'templates'));
    expect(left.filter((name) => !name.endsWith('.lock'))).toEqual([]);
  });
});
