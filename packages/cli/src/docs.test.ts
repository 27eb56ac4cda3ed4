import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { renderCLIReference } from './docs.ts';
import { buildProgram } from './program.ts';

describe('docs/cli.md', () => {
  it('matches the help the CLI prints (regenerate: node packages/cli/scripts/gen-docs.mjs)', async () => {
    const current = await readFile(new URL('../../../docs/cli.md', import.meta.url), 'utf8');
    expect(current).toBe(renderCLIReference(buildProgram().program));
  });

  it('documents every verb', () => {
    const text = renderCLIReference(buildProgram().program);
    for (const verb of [
      'server',
      'sandbox create',
      'sandbox ls',
      'sandbox info',
      'sandbox rm',
      'sandbox pause',
      'sandbox resume',
      'sandbox exec',
      'sandbox shell',
      'sandbox cp',
      'sandbox logs',
      'sandbox ports',
      'template build',
      'template ls',
      'template rm',
      'template logs',
      'key create',
      'key ls',
      'key rm',
    ]) {
      expect(text).toContain(`## warren ${verb}\n`);
    }
  });
});
