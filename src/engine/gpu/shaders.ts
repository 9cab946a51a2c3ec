// Loads WGSL kernels from the repository's shaders/ folder. One code path for every host:
// `new URL(..., import.meta.url)` resolves to a file: URL under Node (tests, CLI) and to an
// asset URL that Vite emits for the page and the worker bundle. The text is never copied
// into TypeScript.
//
// Every kernel is composed with shaders/prelude.wgsl (the dropout hash and workgroup
// reductions), since WGSL has no #include. The prelude goes after the kernel's own text —
// WGSL module-scope declarations may appear in any order — so a compiler message's line number
// is the kernel file's own line; `sourceLine` maps lines past it into the prelude.
import { ShaderError } from '../errors.ts';

/** Every kernel family, one file each in shaders/. */
export type ShaderName =
  | 'matmul'
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
  | 'argmax';

/** Files of shaders/ that are not kernels of their own. */
type PartName = 'prelude';

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

/** The WGSL module for kernel `name`: its own file, then the prelude. */
export async function loadShader(name: ShaderName): Promise<string> {
  const [kernel, prelude] = await Promise.all([cached(name), cached('prelude')]);
  return `${kernel}\n${prelude}`;
}

/**
 * Where line `line` (1-based) of loadShader(name)'s module comes from, as `file:line`: the
 * kernel's own file up to its last line, the prelude after it.
 */
export async function sourceLine(name: ShaderName, line: number): Promise<string> {
  const kernelLines = lineCount(await cached(name));
  return line <= kernelLines ? `shaders/${name}.wgsl:${line}` : `shaders/prelude.wgsl:${line - kernelLines}`;
}
