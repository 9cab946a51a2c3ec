// The import rules of docs/ARCHITECTURE.md, enforced: every import of src/, scripts/ and bench/
// (`import`, `import type`, `export … from`, `import()` with a literal, `import('…')` types) is
// parsed with the TypeScript compiler, and the test asserts that
//   (a) no two files import each other, directly or through others (no cycle between files);
//   (b) every import goes from a room to a room it may import (no cycle between rooms either,
//       since the allowed edges below form a partial order);
//   (c) the page-worker protocol (src/worker/protocol.ts) holds types only.
// A violation prints as `from → to (room → room)`.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..', '..');
const SCANNED = ['src', 'scripts', 'bench'];
const SOURCE_EXT = /\.(ts|tsx|mts|mjs|js)$/;

/** The rooms, lowest first, and what each may import besides itself. */
const ENGINE_CORE = ['engine', 'engine/gpu', 'engine/kernels', 'engine/model'];
const ENGINE_ALL = [...ENGINE_CORE, 'engine/generate', 'engine/eval', 'engine/train'];
export const MAY_IMPORT: Record<string, readonly string[]> = {
  // Files directly in src/engine/: errors, the seeded RNG, window arithmetic. They import nothing.
  engine: [],
  'engine/gpu': ['engine'],
  'engine/kernels': ['engine', 'engine/gpu'],
  'engine/model': ['engine', 'engine/gpu', 'engine/kernels'],
  // Among the three users of the model, one way: train → eval → generate.
  'engine/generate': ENGINE_CORE,
  'engine/eval': [...ENGINE_CORE, 'engine/generate'],
  'engine/train': [...ENGINE_CORE, 'engine/generate', 'engine/eval'],
  // The float64 oracle: the engine-level files and the model's shapes, nothing that runs on a GPU
  // directly; only tests import it (checked below: no room lists it).
  'engine/reference': ['engine', 'engine/model'],
  io: ENGINE_ALL,
  worker: [...ENGINE_ALL, 'io'],
  cli: [...ENGINE_ALL, 'io'],
  ui: [...ENGINE_ALL, 'io', 'worker'],
  scripts: [...ENGINE_ALL, 'engine/reference', 'io', 'worker', 'cli', 'ui'],
  bench: [...ENGINE_ALL, 'engine/reference', 'io', 'worker', 'cli', 'ui', 'scripts'],
};

/** The room of a repository-relative path, or undefined outside the checked tree. */
export function roomOf(path: string): string | undefined {
  const parts = path.split('/');
  if (parts[0] === 'scripts' || parts[0] === 'bench') return parts[0];
  if (parts[0] !== 'src') return undefined;
  if (parts.length === 2) return 'ui'; // src/main.tsx: the page's entry point
  if (parts[1] === 'engine') return parts.length === 3 ? 'engine' : `engine/${parts[2]}`;
  return parts[1];
}

/** Every module specifier a source text imports or re-exports. */
export function importsOf(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true,
    fileName.endsWith('x') ? ts.ScriptKind.TSX : ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier
      && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      if (arg && ts.isStringLiteralLike(arg)) found.push(arg.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)
      && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)
      && ts.isStringLiteral(node.moduleReference.expression)) {
      found.push(node.moduleReference.expression.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

function walk(dir: string, out: string[]): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (SOURCE_EXT.test(name)) out.push(path);
  }
  return out;
}

interface Edge { from: string; to: string }

/** The file graph: repository-relative paths and their relative imports, resolved. */
function importGraph(): { files: string[]; edges: Edge[] } {
  const files = SCANNED.flatMap((d) => walk(join(ROOT, d), [])).map((f) => relative(ROOT, f)).sort();
  const edges: Edge[] = [];
  for (const from of files) {
    for (const spec of importsOf(from, readFileSync(join(ROOT, from), 'utf8'))) {
      if (!spec.startsWith('.')) continue; // a package
      const to = relative(ROOT, resolve(ROOT, dirname(from), spec));
      edges.push({ from, to });
    }
  }
  return { files, edges };
}

/** Tarjan's strongly connected components with more than one file, or a file importing itself. */
export function cyclesOf(files: string[], edges: Edge[]): string[][] {
  const next = new Map<string, string[]>(files.map((f) => [f, []]));
  for (const e of edges) next.get(e.from)?.push(e.to);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  let counter = 0;
  const connect = (v: string): void => {
    index.set(v, counter); low.set(v, counter); counter++;
    stack.push(v); onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) { connect(w); low.set(v, Math.min(low.get(v)!, low.get(w)!)); }
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do { w = stack.pop()!; onStack.delete(w); component.push(w); } while (w !== v);
      if (component.length > 1 || (next.get(v) ?? []).includes(v)) out.push(component.sort());
    }
  };
  for (const f of files) if (!index.has(f)) connect(f);
  return out;
}

/** Imports that go the wrong way between rooms, as `from → to (room → room)`. */
export function roomViolations(edges: Edge[]): string[] {
  const out: string[] = [];
  for (const { from, to } of edges) {
    const a = roomOf(from);
    const b = roomOf(to);
    if (a === undefined) continue;
    if (b === undefined) { out.push(`${from} → ${to} (${a} → outside the checked tree)`); continue; }
    if (a !== b && !MAY_IMPORT[a]?.includes(b)) out.push(`${from} → ${to} (${a} → ${b})`);
  }
  return out;
}

/**
 * The statements of a module that are not types only (an import or export of values, a
 * declaration that emits code), by their first line. `import type`, `export type` and type or
 * interface declarations are types only.
 */
export function valueStatements(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const typeOnly = (st: ts.Statement): boolean => {
    if (ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st)) return true;
    if (ts.isImportDeclaration(st)) {
      const c = st.importClause;
      if (!c) return false; // a side-effect import runs the module
      if (c.isTypeOnly) return true;
      const b = c.namedBindings;
      return !c.name && !!b && ts.isNamedImports(b) && b.elements.every((e) => e.isTypeOnly);
    }
    if (ts.isExportDeclaration(st)) {
      const c = st.exportClause;
      return st.isTypeOnly || (!!c && ts.isNamedExports(c) && c.elements.every((e) => e.isTypeOnly));
    }
    return false;
  };
  return source.statements.filter((st) => !typeOnly(st)).map((st) => st.getText(source).split('\n')[0]!);
}

describe('the import rules', () => {
  const { files, edges } = importGraph();

  it('sees the whole tree', () => {
    // Guards the parser: if it found nothing, both checks below would pass vacuously.
    expect(files.length).toBeGreaterThan(100);
    expect(edges.length).toBeGreaterThan(300);
    for (const f of files) expect(roomOf(f), f).toBeDefined();
    for (const f of files) expect(MAY_IMPORT[roomOf(f)!], f).toBeDefined();
  });

  it('parses every kind of import', () => {
    const text = [
      "import a from './a.ts';", "import type { B } from './b.ts';", "export * from './c.ts';",
      "export { d } from './d.ts';", "const e = await import('./e.ts');", "let f: import('./f.ts').F;",
      "import './g.ts';", "const h = await import(name);",
    ].join('\n');
    expect(importsOf('x.ts', text)).toEqual(['./a.ts', './b.ts', './c.ts', './d.ts', './e.ts', './f.ts', './g.ts']);
  });

  it('finds cycles and wrong-way imports when there are some', () => {
    const bad = [
      { from: 'src/io/a.ts', to: 'src/io/b.ts' }, { from: 'src/io/b.ts', to: 'src/io/a.ts' },
      { from: 'src/engine/model/m.ts', to: 'src/engine/train/t.ts' },
      { from: 'src/io/a.ts', to: 'scripts/s.ts' },
    ];
    expect(cyclesOf(['src/io/a.ts', 'src/io/b.ts'], bad)).toEqual([['src/io/a.ts', 'src/io/b.ts']]);
    expect(roomViolations(bad)).toEqual([
      'src/engine/model/m.ts → src/engine/train/t.ts (engine/model → engine/train)',
      'src/io/a.ts → scripts/s.ts (io → scripts)',
    ]);
  });

  it('has no import cycle between files', () => {
    const cycles = cyclesOf(files, edges).map((c) => c.join(' ↔ '));
    expect(cycles, `import cycles:\n${cycles.join('\n')}`).toEqual([]);
  });

  it('imports only downward between rooms', () => {
    const wrong = roomViolations(edges);
    expect(wrong, `wrong-way imports:\n${wrong.join('\n')}`).toEqual([]);
  });

  it('has an order among the rooms (no room cycle is allowed by the table)', () => {
    const rooms = Object.keys(MAY_IMPORT);
    const order: string[] = [];
    const left = new Set(rooms);
    while (left.size > 0) {
      const ready = [...left].filter((r) => MAY_IMPORT[r]!.every((d) => !left.has(d) || d === r));
      expect(ready.length, `rooms in a cycle: ${[...left].join(', ')}`).toBeGreaterThan(0);
      for (const r of ready) { left.delete(r); order.push(r); }
    }
    // Nothing in the library imports the float64 oracle: it is for tests (and scripts) only.
    for (const r of rooms) if (r !== 'scripts' && r !== 'bench') expect(MAY_IMPORT[r]).not.toContain('engine/reference');
  });

  it('keeps the page-worker protocol to types only', () => {
    // The checker sees values where there are some.
    const sample = [
      "import type { A } from './a.ts';", "import { type B } from './b.ts';", "import { c } from './c.ts';",
      "export type { A };", "export interface D { x: number }", "export type E = 'e';", "export const f = 1;",
      "export function g(): void {}", "export class H {}", "export { c };",
    ].join('\n');
    expect(valueStatements('x.ts', sample)).toEqual([
      "import { c } from './c.ts';", 'export const f = 1;', 'export function g(): void {}', 'export class H {}', 'export { c };',
    ]);
    const path = 'src/worker/protocol.ts';
    expect(valueStatements(path, readFileSync(join(ROOT, path), 'utf8'))).toEqual([]);
  });
});
