import { describe, expect, it } from 'vitest';
import {
  formatBytes,
  formatDuration,
  parseCopyOperand,
  parseDuration,
  parseDurationSeconds,
  parseInteger,
  parseKeyValue,
  parsePort,
} from './parse.ts';

describe('parseDuration', () => {
  it('reads units', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('1h')).toBe(3_600_000);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('2')).toBe(2000);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration(' 7m ')).toBe(420_000);
  });
  it('rejects garbage', () => {
    for (const bad of ['soon', '-1s', '5 m', '1e3s', '', 'm', '5mm', '1.s']) {
      expect(() => parseDuration(bad), bad).toThrow(/invalid duration/);
    }
  });
  it('gives whole seconds, rounded up, and refuses zero', () => {
    expect(parseDurationSeconds('5m')).toBe(300);
    expect(parseDurationSeconds('1500ms')).toBe(2);
    expect(() => parseDurationSeconds('0s')).toThrow(/positive/);
  });
});

describe('parseInteger / parsePort', () => {
  it('accepts whole numbers in range only', () => {
    expect(parseInteger('42', 1, 100)).toBe(42);
    expect(() => parseInteger('0', 1, 100)).toThrow(/between 1 and 100/);
    expect(() => parseInteger('4.2')).toThrow(/whole number/);
    expect(() => parseInteger('-3')).toThrow(/whole number/);
    expect(parsePort('8080')).toBe(8080);
    expect(parsePort('0', true)).toBe(0);
    expect(() => parsePort('0')).toThrow();
    expect(() => parsePort('65536')).toThrow();
  });
});

describe('parseKeyValue', () => {
  it('accumulates pairs; the value may contain =', () => {
    const a = parseKeyValue('A=1');
    const b = parseKeyValue('B=x=y', a);
    expect(b).toEqual({ A: '1', B: 'x=y' });
    expect(parseKeyValue('EMPTY=')).toEqual({ EMPTY: '' });
  });
  it('rejects missing = and bad names', () => {
    expect(() => parseKeyValue('NOVALUE')).toThrow(/KEY=VALUE/);
    expect(() => parseKeyValue('=v')).toThrow(/KEY=VALUE/);
    expect(() => parseKeyValue('1A=v')).toThrow(/invalid variable name/);
    expect(() => parseKeyValue('A-B=v')).toThrow(/invalid variable name/);
  });
});

describe('parseCopyOperand', () => {
  it('tells sandbox paths from local ones', () => {
    expect(parseCopyOperand('sb_1a2b:/workspace/f.txt')).toEqual({
      kind: 'remote',
      sandboxId: 'sb_1a2b',
      path: '/workspace/f.txt',
    });
    expect(parseCopyOperand('./f.txt')).toEqual({ kind: 'local', path: './f.txt' });
    expect(parseCopyOperand('/tmp/a:b')).toEqual({ kind: 'local', path: '/tmp/a:b' });
    expect(parseCopyOperand('-')).toEqual({ kind: 'local', path: '-' });
  });
  it('requires an absolute path inside the sandbox', () => {
    expect(() => parseCopyOperand('sb_1:workspace/f')).toThrow(/absolute/);
    expect(() => parseCopyOperand('sb_1:')).toThrow(/absolute/);
  });
});

describe('formatting', () => {
  it('formats durations and sizes for people', () => {
    expect(formatDuration(850)).toBe('850ms');
    expect(formatDuration(12_340)).toBe('12.3s');
    expect(formatDuration(245_000)).toBe('4m05s');
    expect(formatDuration(7_800_000)).toBe('2h10m');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(3 * 1024 * 1024)).toBe('3.0 MiB');
  });
});
