import { describe, expect, it } from 'vitest';
import { parseDuration } from './parse.ts';

describe('parseDuration', () => {
  it('reads units', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('2')).toBe(2000);
    expect(parseDuration('1.5s')).toBe(1500);
  });
  it('rejects garbage', () => {
    expect(() => parseDuration('soon')).toThrow(/invalid duration/);
    expect(() => parseDuration('-1s')).toThrow(/invalid duration/);
  });
});
