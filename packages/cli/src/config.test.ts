import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFilePath, DEFAULT_URL, readConfigFile, resolveConfig } from './config.ts';
import { createContext } from './context.ts';
import { buildProgram } from './program.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-cli-config-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('resolveConfig precedence', () => {
  const file = { url: 'http://file.example:1', apiKey: 'file-key' };
  const env = { WARREN_URL: 'http://env.example:2', WARREN_API_KEY: 'env-key' };
  const flags = { url: 'http://flag.example:3', apiKey: 'flag-key' };

  it('flags win over env, env over the file, the file over the default', () => {
    expect(resolveConfig({ flags, env, file })).toMatchObject({
      url: flags.url,
      apiKey: 'flag-key',
      sources: { url: 'flag', apiKey: 'flag' },
    });
    expect(resolveConfig({ flags: {}, env, file })).toMatchObject({
      url: env.WARREN_URL,
      apiKey: 'env-key',
      sources: { url: 'env', apiKey: 'env' },
    });
    expect(resolveConfig({ flags: {}, env: {}, file })).toMatchObject({
      url: file.url,
      apiKey: 'file-key',
      sources: { url: 'file', apiKey: 'file' },
    });
    expect(resolveConfig({ flags: {}, env: {}, file: {} })).toMatchObject({
      url: DEFAULT_URL,
      apiKey: undefined,
      sources: { url: 'default', apiKey: 'none' },
    });
  });

  it('resolves each setting on its own and treats empty values as unset', () => {
    const r = resolveConfig({ flags: { apiKey: 'flag-key' }, env: { WARREN_URL: '', WARREN_API_KEY: 'env' }, file });
    expect(r).toMatchObject({ url: file.url, apiKey: 'flag-key', sources: { url: 'file', apiKey: 'flag' } });
  });

  it('strips trailing slashes and rejects non-http URLs, naming the source', () => {
    expect(resolveConfig({ flags: { url: 'http://h:1//' }, env: {}, file: {} }).url).toBe('http://h:1');
    expect(() => resolveConfig({ flags: {}, env: { WARREN_URL: 'ftp://h' }, file: {} })).toThrow(/from env/);
    expect(() => resolveConfig({ flags: { url: 'not a url' }, env: {}, file: {} })).toThrow(/from flag/);
  });
});

describe('config file', () => {
  it('finds the file from WARREN_CONFIG, XDG_CONFIG_HOME or the home directory', () => {
    expect(configFilePath({ WARREN_CONFIG: '/x/c.json' })).toBe('/x/c.json');
    expect(configFilePath({ XDG_CONFIG_HOME: '/xdg' })).toBe('/xdg/warren/config.json');
    expect(configFilePath({})).toMatch(/\/\.config\/warren\/config\.json$/);
  });

  it('reads a valid file; a missing one is empty unless required', async () => {
    const p = join(dir, 'ok.json');
    await writeFile(p, JSON.stringify({ url: 'http://127.0.0.1:9999', apiKey: 'k' }), { mode: 0o600 });
    expect(readConfigFile(p, { required: false })).toEqual({ config: { url: 'http://127.0.0.1:9999', apiKey: 'k' } });
    expect(readConfigFile(join(dir, 'missing.json'), { required: false })).toEqual({ config: {} });
    expect(() => readConfigFile(join(dir, 'missing.json'), { required: true })).toThrow(/cannot read/);
  });

  it('names the file and field of a bad file, and warns about a key readable by others', async () => {
    const bad = join(dir, 'bad.json');
    await writeFile(bad, JSON.stringify({ url: 'http://h', apikey: 'typo' }));
    expect(() => readConfigFile(bad, { required: false })).toThrow(/bad\.json.*apikey|apikey.*bad\.json/);
    const notJSON = join(dir, 'notjson.json');
    await writeFile(notJSON, '{');
    expect(() => readConfigFile(notJSON, { required: false })).toThrow(/not valid JSON/);
    const open = join(dir, 'open.json');
    await writeFile(open, JSON.stringify({ apiKey: 'k' }));
    await chmod(open, 0o644);
    expect(readConfigFile(open, { required: false }).warning).toMatch(/readable by others/);
  });

  it('the CLI context applies flags > env > file end to end', async () => {
    const p = join(dir, 'ctx.json');
    await writeFile(p, JSON.stringify({ url: 'http://file.example:1', apiKey: 'file-key' }), { mode: 0o600 });
    const run = async (argv: string[], env: NodeJS.ProcessEnv) => {
      const { program } = buildProgram({ env });
      const ctx = createContext(program, env);
      // Parse only the global options: `help` would print; a no-op subcommand is enough.
      program.command('noop').action(() => undefined);
      await program.parseAsync(['node', 'warren', ...argv, 'noop']);
      return ctx.config();
    };
    expect(await run(['--config', p], {})).toMatchObject({ url: 'http://file.example:1', apiKey: 'file-key' });
    expect(await run([], { WARREN_CONFIG: p, WARREN_API_KEY: 'env-key' })).toMatchObject({
      url: 'http://file.example:1',
      apiKey: 'env-key',
    });
    expect(
      await run(['--config', p, '--url', 'http://flag.example:3'], { WARREN_URL: 'http://env.example:2' }),
    ).toMatchObject({ url: 'http://flag.example:3', apiKey: 'file-key' });
  });
});
