// Loads WGSL kernels from the repository's shaders/ folder. One code path for every host:
// `new URL(..., import.meta.url)` resolves to a file: URL under Node (tests, CLI) and to an
// asset URL that Vite emits for the page and the worker bundle. The text is never copied
// into TypeScript.
//
// Every kernel is composed with shaders/prelude.wgsl (the dropout hash, workgroup
// reductions and GELU), since WGSL has no #include. The prelude goes after the kernel's own text —
// WGSL module-scope declarations may appear in any order — so a compiler message's line number
// is the kernel file's own line; `sourceLine` maps lines past it into the prelude. Modules of
// the `subgroups` kernel variant (SUBGROUPS on) get shaders/subgroups.wgsl after the prelude.
//
// A kernel with variants (matmul's tile sizes and load widths) is specialized before
// compilation by `specialize`: `$NAME` is replaced by the value defined for NAME, and lines
// between `#if NAME` / `#else` / `#endif` (each directive alone on its line) are kept or blanked
// by NAME's truth. Removed lines become empty lines, so line numbers stay the file's own.
import { ShaderError } from '../errors.ts';
import { DEFAULT_TILE } from './variants.ts';

/** Every kernel family, one file each in shaders/. */
export type ShaderName =
  | 'matmul'
  | 'matmul_reg'
  | 'embedding'
  | 'layernorm'
  | 'attention'
  | 'gelu'
  | 'residual'
  | 'crossentropy'
  | 'dropout'
  | 'adamw'
  | 'reduce'
  | 'decode'
  | 'gemv'
  | 'argmax'
  | 'cast';

/** Files of shaders/ that are not kernels of their own. */
type PartName = 'prelude' | 'subgroups';

const cache = new Map<ShaderName | PartName, Promise<string>>();

export function shaderUrl(name: ShaderName | PartName): URL {
  return new URL(`../../../shaders/${name}.wgsl`, import.meta.url);
}

async function read(name: ShaderName | PartName): Promise<string> {
  const url = shaderUrl(name);
  try {
    if (url.protocol === 'file:') {
      // Kept out of the browser bundle: the specifier is not a literal.
      const fsModule = 'node:fs/promises';
      const fs: { readFile(u: URL, enc: 'utf8'): Promise<string> } = await import(/* @vite-ignore */ fsModule);
      return await fs.readFile(url, 'utf8');
    }
    const res = await fetch(url);
    if (!res.ok) throw new ShaderError(`HTTP ${res.status}`);
    return await res.text();
  } catch (e) {
    throw new ShaderError(`Could not load shader '${name}' from ${url.href}: ${(e as Error).message}`);
  }
}

function cached(name: ShaderName | PartName): Promise<string> {
  let p = cache.get(name);
  if (!p) {
    p = read(name);
    p.catch(() => cache.delete(name));
    cache.set(name, p);
  }
  return p;
}

/** Lines of text, counting a last line without a newline. */
function lineCount(text: string): number {
  return text.split('\n').length;
}

/** Values a kernel's text is specialized with (see the header). */
export type ShaderDefines = Record<string, number | boolean>;

function defineText(v: number | boolean): string {
  if (typeof v === 'boolean') return String(v);
  if (!Number.isInteger(v) || v < 0) throw new ShaderError(`shader define must be a non-negative integer or a boolean, got ${v}`);
  return `${v}u`;
}

/**
 * `text` with `#if NAME` / `#else` / `#endif` blocks resolved and `$NAME` replaced from
 * `defines` (numbers become u32 literals). A name the text uses but `defines` lacks, or an
 * unbalanced directive, is a ShaderError: a variant must be fully specified.
 */
export function specialize(text: string, defines: ShaderDefines, what = 'shader'): string {
  const lines = text.split('\n');
  const stack: Array<{ keep: boolean; parentKeep: boolean; sawElse: boolean }> = [];
  let keep = true;
  const out = lines.map((line, i) => {
    const d = /^\s*#(if|else|endif)\b\s*(\S*)\s*$/.exec(line);
    if (d) {
      if (d[1] === 'if') {
        if (!(d[2] in defines)) throw new ShaderError(`${what}:${i + 1}: #if ${d[2]} is not defined`);
        stack.push({ keep: !!defines[d[2]], parentKeep: keep, sawElse: false });
        keep = keep && !!defines[d[2]];
      } else if (d[1] === 'else') {
        const top = stack[stack.length - 1];
        if (!top || top.sawElse) throw new ShaderError(`${what}:${i + 1}: #else without #if`);
        top.sawElse = true;
        keep = top.parentKeep && !top.keep;
      } else {
        const top = stack.pop();
        if (!top) throw new ShaderError(`${what}:${i + 1}: #endif without #if`);
        keep = top.parentKeep;
      }
      return '';
    }
    if (!keep) return '';
    return line.replace(/\$([A-Z_][A-Z0-9_]*)/g, (_, name: string) => {
      if (!(name in defines)) throw new ShaderError(`${what}:${i + 1}: $${name} is not defined`);
      return defineText(defines[name]);
    });
  });
  if (stack.length) throw new ShaderError(`${what}: #if without #endif`);
  return out.join('\n');
}

/**
 * The defines of kernels with variants, used where a caller gives none (or only some): matmul's
 * default tiling with scalar loads and a float32 B, so `ctx.pipeline('matmul', 'bias_grad')` compiles as before;
 * for the register-tiled matmul, a 16×128 tile of 64 threads without subgroups.
 */
export const SHADER_DEFAULTS: Partial<Record<ShaderName, ShaderDefines>> = {
  matmul: {
    BM: DEFAULT_TILE.bm, BN: DEFAULT_TILE.bn, BK: DEFAULT_TILE.bk, TX: DEFAULT_TILE.tx, TY: DEFAULT_TILE.ty,
    VEC_A: false, VEC_B: false, F16_B: false, GELU: false,
  },
  matmul_reg: { BM: 16, BN: 128, TX: 64, SUBGROUPS: false, F16_B: false, GELU: false },
  layernorm: { SUBGROUPS: false },
  crossentropy: { SUBGROUPS: false },
  reduce: { SUBGROUPS: false },
  residual: { SUBGROUPS: false },
  decode: { SUBGROUPS: false },
};

/**
 * The WGSL module for kernel `name`: its own file (specialized by `defines` over its defaults),
 * then the prelude, then, with SUBGROUPS on (the `subgroups` kernel variant), the subgroup
 * reductions of shaders/subgroups.wgsl. A module without SUBGROUPS is the kernel and the prelude
 * only, as before the variant existed.
 */
export async function loadShader(name: ShaderName, defines?: ShaderDefines): Promise<string> {
  const [kernel, prelude] = await Promise.all([cached(name), cached('prelude')]);
  const all = SHADER_DEFAULTS[name] || defines ? { ...SHADER_DEFAULTS[name], ...defines } : undefined;
  const code = `${all ? specialize(kernel, all, `shaders/${name}.wgsl`) : kernel}\n${prelude}`;
  if (!all?.SUBGROUPS) return code;
  if (!/^enable subgroups;$/m.test(code)) throw new ShaderError(`shaders/${name}.wgsl: SUBGROUPS is on, and the kernel does not enable subgroups`);
  return `${code}\n${await cached('subgroups')}`;
}

/**
 * Where line `line` (1-based) of loadShader(name)'s module comes from, as `file:line`: the
 * kernel's own file up to its last line, the prelude after it, then shaders/subgroups.wgsl (in
 * a module of the `subgroups` variant; no other module has lines past the prelude).
 */
export async function sourceLine(name: ShaderName, line: number): Promise<string> {
  const kernelLines = lineCount(await cached(name));
  if (line <= kernelLines) return `shaders/${name}.wgsl:${line}`;
  const preludeLines = lineCount(await cached('prelude'));
  if (line <= kernelLines + preludeLines) return `shaders/prelude.wgsl:${line - kernelLines}`;
  return `shaders/subgroups.wgsl:${line - kernelLines - preludeLines}`;
}
