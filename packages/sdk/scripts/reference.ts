/**
 * Generates docs/sdk/reference.md from the TSDoc of everything
 * packages/sdk/src/index.ts exports. `npm run docs:sdk` writes the file;
 * `--check` exits 1 when the committed file is out of date (the unit test
 * reference.test.ts does the same check in CI).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const here = dirname(fileURLToPath(import.meta.url));
export const ENTRY = join(here, '..', 'src', 'index.ts');
export const OUTPUT = join(here, '..', '..', '..', 'docs', 'sdk', 'reference.md');

function docOf(symbol: ts.Symbol, checker: ts.TypeChecker): { text: string; tags: ts.JSDocTagInfo[] } {
  return {
    text: ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim(),
    tags: symbol.getJsDocTags(checker),
  };
}

function tagLines(tags: ts.JSDocTagInfo[]): string[] {
  const out: string[] = [];
  for (const tag of tags) {
    const text = ts.displayPartsToString(tag.text ?? []).trim();
    if (tag.name === 'example') out.push('', '```ts', text.replace(/^\n+/, ''), '```');
    else if (tag.name === 'default') out.push('', `Default: \`${text}\``);
    else if (tag.name === 'throws') out.push('', `Throws: ${text}`);
    else if (tag.name === 'returns') out.push('', `Returns: ${text}`);
  }
  return out;
}

function isInternal(symbol: ts.Symbol, checker: ts.TypeChecker): boolean {
  return symbol.getJsDocTags(checker).some((t) => t.name === 'internal');
}

/** The declaration's source text without its body (a signature). */
function signature(node: ts.Node, source: ts.SourceFile): string {
  const withBody = node as ts.Node & { body?: ts.Node };
  const end = withBody.body ? withBody.body.getStart(source) : node.getEnd();
  return source.text
    .slice(node.getStart(source), end)
    .replace(/\s*;?\s*$/, '')
    .replace(/\s+/g, ' ')
    .replace(/\(\s/g, '(')
    .replace(/,\s\)/g, ')')
    .trim();
}

function memberDocs(symbol: ts.Symbol, checker: ts.TypeChecker, source: ts.SourceFile, statics: boolean): string[] {
  const out: string[] = [];
  const table = statics ? symbol.exports : symbol.members;
  const members = [...(table?.values() ?? [])].filter(
    (m) =>
      !String(m.escapedName).startsWith('__') &&
      !String(m.escapedName).startsWith('#') &&
      m.escapedName !== 'prototype' &&
      !isInternal(m, checker),
  );
  for (const m of members) {
    const decls = (m.declarations ?? []).filter((d) => {
      const mods = ts.canHaveModifiers(d) ? (ts.getModifiers(d) ?? []) : [];
      return !mods.some((x) => x.kind === ts.SyntaxKind.PrivateKeyword) && !ts.isPrivateIdentifier(d as never);
    });
    if (decls.length === 0) continue;
    const name = m.getName();
    if (name === 'constructor') continue;
    out.push('', `#### ${statics ? `static ${name}` : name}`, '', '```ts');
    const sigs = decls.filter((d) => !(ts.isMethodDeclaration(d) && d.body && decls.length > 1));
    for (const d of sigs.length > 0 ? sigs : decls) out.push(signature(d, source));
    out.push('```');
    const { text, tags } = docOf(m, checker);
    if (text) out.push('', text);
    out.push(...tagLines(tags));
  }
  return out;
}

/** The reference as markdown. */
export function generateReference(): string {
  const program = ts.createProgram([ENTRY], {
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    target: ts.ScriptTarget.ES2023,
    allowImportingTsExtensions: true,
    noEmit: true,
    strict: true,
  });
  const checker = program.getTypeChecker();
  const entry = program.getSourceFile(ENTRY);
  if (!entry) throw new Error(`cannot read ${ENTRY}`);
  const moduleSymbol = checker.getSymbolAtLocation(entry);
  if (!moduleSymbol) throw new Error('index.ts has no exports');
  const sections: Record<string, string[]> = { Classes: [], Errors: [], Functions: [], Types: [], Constants: [] };
  const exports = checker.getExportsOfModule(moduleSymbol).sort((a, b) => {
    const order = (s: string) => (s === 'Sandbox' ? 0 : s === 'Template' ? 1 : 2);
    return order(a.getName()) - order(b.getName()) || a.getName().localeCompare(b.getName());
  });
  for (const exported of exports) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const decl = symbol.declarations?.[0];
    if (!decl) continue;
    const source = decl.getSourceFile();
    const name = exported.getName();
    const { text, tags } = docOf(symbol, checker);
    const lines = [`### ${name}`, ''];
    if (text) lines.push(text);
    lines.push(...tagLines(tags));
    let section: string;
    if (ts.isClassDeclaration(decl)) {
      const isError = /Error$/.test(name);
      section = isError ? 'Errors' : 'Classes';
      const heritage = decl.heritageClauses?.map((h) => h.getText(source)).join(' ');
      if (heritage) lines.push('', `\`class ${name} ${heritage}\``);
      if (!isError || name === 'APIError' || name === 'CommandExitError') {
        lines.push(...memberDocs(symbol, checker, source, true), ...memberDocs(symbol, checker, source, false));
      }
    } else if (ts.isFunctionDeclaration(decl)) {
      section = 'Functions';
      lines.push('', '```ts', signature(decl, source), '```');
    } else if (ts.isInterfaceDeclaration(decl)) {
      section = 'Types';
      const ext = decl.heritageClauses?.map((h) => h.getText(source)).join(' ');
      if (ext) lines.push('', `\`interface ${name} ${ext}\``);
      const rows: string[] = [];
      for (const member of decl.members) {
        const msym = member.name ? checker.getSymbolAtLocation(member.name) : undefined;
        if (!msym) continue;
        const md = docOf(msym, checker);
        const def = md.tags.find((t) => t.name === 'default');
        const type = (member as ts.PropertySignature).type?.getText(source).replace(/\s+/g, ' ') ?? '';
        const optional = (member as ts.PropertySignature).questionToken ? '?' : '';
        const note = [
          md.text.replace(/\n+/g, ' '),
          def ? `Default: \`${ts.displayPartsToString(def.text ?? [])}\`` : '',
        ]
          .filter(Boolean)
          .join(' ');
        rows.push(
          `| \`${msym.getName()}${optional}\` | \`${type.replace(/\|/g, '\\|')}\` | ${note.replace(/\|/g, '\\|')} |`,
        );
      }
      if (rows.length > 0) lines.push('', '| Field | Type | Description |', '| --- | --- | --- |', ...rows);
    } else if (ts.isTypeAliasDeclaration(decl)) {
      section = 'Types';
      lines.push('', '```ts', decl.getText(source).replace(/^export /, ''), '```');
    } else {
      section = 'Constants';
      lines.push('', '```ts', decl.getText(source).replace(/\s+/g, ' '), '```');
    }
    sections[section]?.push(...lines, '');
  }
  const out = [
    '# @warren/sdk reference',
    '',
    '<!-- Generated by packages/sdk/scripts/reference.ts from the TSDoc in packages/sdk/src. Do not edit: run `npm run docs:sdk`. -->',
    '',
    'Every call that talks to the server also accepts `signal` (abort), `timeoutMs` and `maxRetries` (see `RequestOptions`). Connection settings (`apiKey`, `baseURL`, `fetch`) come from `ConnectionOptions` or the `WARREN_API_KEY` / `WARREN_URL` environment variables. See [getting started](../getting-started.md) for a tour.',
    '',
  ];
  for (const [title, lines] of Object.entries(sections)) {
    if (lines.length === 0) continue;
    out.push(`## ${title}`, '', ...lines);
  }
  return `${out
    .join('\n')
    .replace(/\{@link\s+([^}\s]+)\s*\}/g, '`$1`')
    .replace(/^Throws: \{(\w+)\}/gm, 'Throws: `$1`')
    .replace(/\n{3,}/g, '\n\n')
    .trim()}\n`;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = generateReference();
  if (process.argv.includes('--check')) {
    let current = '';
    try {
      current = readFileSync(OUTPUT, 'utf8');
    } catch {
      // missing counts as out of date
    }
    if (current !== text) {
      console.error(`${OUTPUT} is out of date: run npm run docs:sdk`);
      process.exitCode = 1;
    }
  } else {
    writeFileSync(OUTPUT, text);
    console.error(`wrote ${OUTPUT}`);
  }
}
