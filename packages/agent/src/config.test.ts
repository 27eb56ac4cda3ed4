import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './config.ts';

const required = { WARREN_SANDBOX_ID: 'sb1', WARREN_AGENT_TOKEN_KEY: 'ab01' };

describe('loadConfig', () => {
  it('applies defaults and listens on TCP without a socket', () => {
    const config = loadConfig(required);
    expect(config.sandboxId).toBe('sb1');
    expect(config.tokenKey.equals(Buffer.from([0xab, 0x01]))).toBe(true);
    expect(config.listen).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 7777 });
    expect(config.fileRoots).toEqual(['/workspace', '/tmp']);
    expect(config.workdir).toBe('/workspace');
    expect(config.maxOutputBytes).toBe(4 * 1024 * 1024);
    expect(config.maxBodyBytes).toBe(64 * 1024 * 1024);
    expect(config.templateEnv).toEqual({});
    expect(config.execHelperPath).toBe('/.warren/bin/warren-exec');
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('prefers the unix socket when WARREN_AGENT_SOCKET is set', () => {
    const config = loadConfig({ ...required, WARREN_AGENT_SOCKET: '/run/agent.sock', WARREN_AGENT_PORT: '9' });
    expect(config.listen).toEqual({ kind: 'socket', path: '/run/agent.sock' });
  });

  it('parses roots, sizes and the template env, dropping reserved names', () => {
    const config = loadConfig({
      ...required,
      WARREN_AGENT_FILE_ROOTS: '/data/:/tmp//x:',
      WARREN_AGENT_PORT: '8080',
      WARREN_AGENT_MAX_OUTPUT_BYTES: '1024',
      WARREN_TEMPLATE_ENV: '{"A":"1","N":2,"WARREN_LEAK":"x"}',
    });
    expect(config.fileRoots).toEqual(['/data', '/tmp/x']);
    expect(config.listen).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 8080 });
    expect(config.maxOutputBytes).toBe(1024);
    expect(config.templateEnv).toEqual({ A: '1', N: '2' });
  });

  it('takes the exec helper path, or none with WARREN_AGENT_SPAWNER=direct', () => {
    expect(loadConfig({ ...required, WARREN_AGENT_EXEC_HELPER: '/opt/x/' }).execHelperPath).toBe('/opt/x');
    const direct = loadConfig({ ...required, WARREN_AGENT_EXEC_HELPER: '/opt/x', WARREN_AGENT_SPAWNER: 'direct' });
    expect(direct.execHelperPath).toBeNull();
  });

  it.each([
    [{ WARREN_AGENT_TOKEN_KEY: 'ab' }, 'WARREN_SANDBOX_ID'],
    [{ ...required, WARREN_AGENT_EXEC_HELPER: 'bin/warren-exec' }, 'WARREN_AGENT_EXEC_HELPER'],
    [{ ...required, WARREN_AGENT_SPAWNER: 'fork' }, 'WARREN_AGENT_SPAWNER'],
    [{ WARREN_SANDBOX_ID: 'x', WARREN_AGENT_TOKEN_KEY: '' }, 'WARREN_AGENT_TOKEN_KEY'],
    [{ ...required, WARREN_AGENT_TOKEN_KEY: 'xyz' }, 'WARREN_AGENT_TOKEN_KEY'],
    [{ ...required, WARREN_AGENT_PORT: 'http' }, 'WARREN_AGENT_PORT'],
    [{ ...required, WARREN_AGENT_FILE_ROOTS: 'workspace' }, 'WARREN_AGENT_FILE_ROOTS'],
    [{ ...required, WARREN_AGENT_WORKDIR: 'rel/dir' }, 'WARREN_AGENT_WORKDIR'],
    [{ ...required, WARREN_AGENT_MAX_BODY_BYTES: '-1' }, 'WARREN_AGENT_MAX_BODY_BYTES'],
    [{ ...required, WARREN_TEMPLATE_ENV: '{not json' }, 'WARREN_TEMPLATE_ENV'],
    [{ ...required, WARREN_TEMPLATE_ENV: '[1]' }, 'WARREN_TEMPLATE_ENV'],
  ])('fails naming the bad variable (%o)', (env, name) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(name);
  });
});
