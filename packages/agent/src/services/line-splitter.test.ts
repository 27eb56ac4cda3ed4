import { describe, expect, it } from 'vitest';
import { LineSplitter } from './line-splitter.ts';

describe('LineSplitter', () => {
  it('splits chunks into lines across chunk boundaries, UTF-8 included', () => {
    const lines: string[] = [];
    const s = new LineSplitter({ maxLineBytes: 100, onLine: (l) => lines.push(l) });
    const bytes = Buffer.from('one\ntwo é\nthr');
    s.push(bytes.subarray(0, 8));
    s.push(bytes.subarray(8));
    s.push(Buffer.from('ee\n\n'));
    expect(lines).toEqual(['one', 'two é', 'three', '']);
  });

  it('skips a line longer than the limit and reports it', () => {
    const lines: string[] = [];
    let overflows = 0;
    const s = new LineSplitter({ maxLineBytes: 5, onLine: (l) => lines.push(l), onOverflow: () => overflows++ });
    s.push(Buffer.from('ok\n0123'));
    s.push(Buffer.from('456789\nfine\n'));
    expect(lines).toEqual(['ok', 'fine']);
    expect(overflows).toBe(1);
  });
});
