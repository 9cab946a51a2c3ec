// A small typed command-line parser: options are data (name, kind, default, help), so --help
// is generated from the same table that parses, and bad input gets a one-line error.
import { StudioError } from '../engine/errors.ts';

export class UsageError extends StudioError {}

export type OptionKind = 'string' | 'int' | 'float' | 'flag' | 'list';

export interface OptionSpec {
  name: string;
  kind: OptionKind;
  help: string;
  /** shown in --help; undefined = required unless `optional` */
  default?: string | number | boolean;
  optional?: boolean;
  choices?: readonly string[];
  /** placeholder in --help */
  meta?: string;
}

export type ParsedValue = string | number | boolean | string[] | undefined;

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  options: OptionSpec[];
  notes?: string;
}

export function helpText(cmd: CommandSpec): string {
  const lines = [`${cmd.summary}`, '', `Usage: ${cmd.usage}`, '', 'Options:'];
  const left = (o: OptionSpec) => `  --${o.name}${o.kind === 'flag' ? '' : ` <${o.meta ?? (o.choices ? o.choices.join('|') : o.kind)}>`}`;
  const width = Math.max(...cmd.options.map((o) => left(o).length)) + 2;
  for (const o of cmd.options) {
    const def = o.default !== undefined ? ` (default: ${o.default})` : o.optional || o.kind === 'flag' ? '' : ' (required)';
    lines.push(`${left(o).padEnd(width)}${o.help}${def}`);
  }
  lines.push(`${'  --help'.padEnd(width)}show this help`);
  if (cmd.notes) lines.push('', cmd.notes);
  return lines.join('\n');
}

/** Parses `argv` against the command's options. Values of repeated `list` options accumulate. */
export function parseArgs(cmd: CommandSpec, argv: readonly string[]): Map<string, ParsedValue> {
  const byName = new Map(cmd.options.map((o) => [o.name, o]));
  const out = new Map<string, ParsedValue>();
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i];
    if (!raw.startsWith('--')) throw new UsageError(`${cmd.name}: unexpected argument '${raw}'. Options start with --; see --help.`);
    let name = raw.slice(2);
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const o = byName.get(name);
    if (!o) throw new UsageError(`${cmd.name}: unknown option --${name}. See --help for the options.`);
    if (o.kind === 'flag') {
      out.set(name, value === undefined ? true : value !== 'false');
      continue;
    }
    if (value === undefined) {
      if (o.kind === 'list') {
        const vals: string[] = [];
        while (i + 1 < argv.length && !argv[i + 1].startsWith('--')) vals.push(argv[++i]);
        if (!vals.length) throw new UsageError(`${cmd.name}: --${name} needs a value.`);
        const prev = (out.get(name) as string[] | undefined) ?? [];
        out.set(name, [...prev, ...vals]);
        continue;
      }
      if (i + 1 >= argv.length) throw new UsageError(`${cmd.name}: --${name} needs a value.`);
      value = argv[++i];
    }
    out.set(name, convert(cmd, o, value));
  }
  for (const o of cmd.options) {
    if (!out.has(o.name)) {
      if (o.default !== undefined) out.set(o.name, o.default);
      else if (!o.optional && o.kind !== 'flag') throw new UsageError(`${cmd.name}: --${o.name} is required. See --help.`);
    }
  }
  return out;
}

function convert(cmd: CommandSpec, o: OptionSpec, value: string): ParsedValue {
  switch (o.kind) {
    case 'int': {
      const n = Number(value);
      if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new UsageError(`${cmd.name}: --${o.name} must be a whole number, got '${value}'.`);
      return n;
    }
    case 'float': {
      const n = Number(value);
      if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${cmd.name}: --${o.name} must be a number, got '${value}'.`);
      return n;
    }
    case 'list':
      return value.split(',').map((s) => s.trim()).filter(Boolean);
    default:
      if (o.choices && !o.choices.includes(value)) throw new UsageError(`${cmd.name}: --${o.name} must be one of ${o.choices.join(', ')}; got '${value}'.`);
      return value;
  }
}

/** The option names written on a command line (`--name` or `--name=value`), defaults aside. */
export function givenOptions(argv: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const raw of argv) if (raw.startsWith('--')) out.add(raw.slice(2).split('=')[0]);
  return out;
}

/** Typed getters over a parsed map (the spec table guarantees the kinds). */
export class Args {
  /** `given`: the options written on the command line (givenOptions), so a default can be told from a choice */
  constructor(private readonly m: Map<string, ParsedValue>, private readonly written: ReadonlySet<string> = new Set(m.keys())) {}
  /** whether the option was written on the command line (not merely defaulted) */
  given(name: string): boolean {
    return this.written.has(name);
  }
  has(name: string): boolean {
    return this.m.get(name) !== undefined;
  }
  str(name: string): string {
    return String(this.m.get(name));
  }
  optStr(name: string): string | undefined {
    const v = this.m.get(name);
    return v === undefined ? undefined : String(v);
  }
  num(name: string): number {
    return Number(this.m.get(name));
  }
  optNum(name: string): number | undefined {
    const v = this.m.get(name);
    return v === undefined ? undefined : Number(v);
  }
  flag(name: string): boolean {
    return this.m.get(name) === true;
  }
  list(name: string): string[] {
    const v = this.m.get(name);
    return Array.isArray(v) ? v : v === undefined ? [] : [String(v)];
  }
}
