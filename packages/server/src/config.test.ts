import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.ts';

describe('loadConfig', () => {
  it('has embedded defaults', () => {
    const c = loadConfig({});
    expect(c.host).toBe('127.0.0.1');
    expect(c.port).toBe(8080);
    expect(c.dataDir).toBe('/var/lib/warren');
    expect(c.apiKey).toBeUndefined();
    expect(c.templates).toEqual(['base', 'code-interpreter']);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('treats an empty variable as unset', () => {
    expect(loadConfig({ WARREN_API_KEY: '', WARREN_PORT: '' }).apiKey).toBeUndefined();
    expect(loadConfig({ WARREN_PORT: '' }).port).toBe(8080);
  });

  it('fails naming the variable', () => {
    expect(() => loadConfig({ WARREN_PORT: 'eighty' })).toThrow(/WARREN_PORT/);
    expect(() => loadConfig({ WARREN_API_KEY: 'short' })).toThrow(/WARREN_API_KEY/);
    expect(() => loadConfig({ WARREN_NFT_TABLE: 'bad-name' })).toThrow(/WARREN_NFT_TABLE/);
  });
});
