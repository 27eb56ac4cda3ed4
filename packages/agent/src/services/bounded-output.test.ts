import { describe, expect, it } from 'vitest';
import { BoundedOutput } from './bounded-output.ts';

describe('BoundedOutput', () => {
  it('keeps everything under the limit', () => {
    const out = new BoundedOutput(10);
    out.push(Buffer.from('hello '));
    out.push(Buffer.from('you'));
    expect(out.text()).toBe('hello you');
    expect(out.truncated).toBe(false);
  });

  it('drops bytes past the limit and flags it', () => {
    const out = new BoundedOutput(8);
    out.push(Buffer.from('abcdef'));
    out.push(Buffer.from('ghijkl'));
    out.push(Buffer.from('mnop'));
    expect(out.text()).toBe('abcdefgh');
    expect(out.truncated).toBe(true);
    expect(out.totalBytes).toBe(16);
  });

  it('does not end in half a UTF-8 character when cut', () => {
    const out = new BoundedOutput(4);
    out.push(Buffer.from('ab€x')); // € is 3 bytes: the cut falls inside it
    expect(out.text()).toBe('ab');
    const exact = new BoundedOutput(5);
    exact.push(Buffer.from('ab€x'));
    expect(exact.text()).toBe('ab€');
  });
});
