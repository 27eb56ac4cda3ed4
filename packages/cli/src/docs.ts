import type { Command } from 'commander';

/** Help text is wrapped at this width in the reference, whatever the terminal. */
const HELP_WIDTH = 100;

function walk(cmd: Command, path: string[], acc: Array<{ path: string[]; cmd: Command }>): void {
  acc.push({ path, cmd });
  for (const sub of cmd.commands) walk(sub, [...path, sub.name()], acc);
}

/** The text `warren … --help` prints, at a fixed width. */
function helpOf(cmd: Command): string {
  cmd.configureHelp({ ...cmd.configureHelp(), helpWidth: HELP_WIDTH });
  let after = '';
  // Texts added with addHelpText('after') are events, not part of helpInformation().
  cmd.configureOutput({ ...cmd.configureOutput(), writeOut: (s) => (after += s), writeErr: (s) => (after += s) });
  cmd.outputHelp();
  return after.trimEnd();
}

/**
 * The CLI reference in Markdown, generated from the commands' own help:
 * one section per command, in tree order.
 */
export function renderCLIReference(program: Command): string {
  const all: Array<{ path: string[]; cmd: Command }> = [];
  walk(program, [program.name()], all);
  const lines: string[] = [
    '# `warren` CLI reference',
    '',
    "<!-- Generated from the CLI's own help by `node packages/cli/scripts/gen-docs.mjs`; do not edit by hand.",
    '     A unit test (packages/cli/src/docs.test.ts) fails when this file is out of date. -->',
    '',
  ];
  for (const { path } of all) {
    const depth = Math.max(0, path.length - 2);
    const anchor = path.join('-');
    lines.push(`${'  '.repeat(depth)}- [\`${path.join(' ')}\`](#${anchor})`);
  }
  lines.push('');
  for (const { path, cmd } of all) {
    lines.push(`## ${path.join(' ')}`, '', '```text', helpOf(cmd), '```', '');
  }
  return lines.join('\n');
}
