import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { generateReference, OUTPUT } from '../scripts/reference.ts';

describe('docs/sdk/reference.md', () => {
  it('matches the TSDoc of the exported API (run `npm run docs:sdk` after changing it)', () => {
    const generated = generateReference();
    expect(generated).toContain('### Sandbox');
    expect(generated).toContain('#### runCode');
    expect(readFileSync(OUTPUT, 'utf8')).toBe(generated);
  });
});
