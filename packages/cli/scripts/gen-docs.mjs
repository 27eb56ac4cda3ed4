#!/usr/bin/env node
// Writes docs/cli.md from the CLI's own help. With --check, exits 1 (and writes nothing) when it is out of date.
import { readFile, writeFile } from 'node:fs/promises';
import { register } from 'tsx/esm/api';

register();
const { buildProgram } = await import('../src/program.ts');
const { renderCLIReference } = await import('../src/docs.ts');

const target = new URL('../../../docs/cli.md', import.meta.url);
const text = renderCLIReference(buildProgram().program);
if (process.argv.includes('--check')) {
  const current = await readFile(target, 'utf8').catch(() => '');
  if (current !== text) {
    process.stderr.write('docs/cli.md is out of date: run node packages/cli/scripts/gen-docs.mjs\n');
    process.exitCode = 1;
  }
} else {
  await writeFile(target, text);
  process.stderr.write(`wrote ${target.pathname}\n`);
}
