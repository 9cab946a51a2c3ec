// Loads WGSL kernels from the repository's shaders/ folder. One code path for every host:
// `new URL(..., import.meta.url)` resolves to a file: URL under Node (tests, CLI) and to an
// asset URL that Vite emits for the page and the worker bundle. The text is never copied
// into TypeScript.
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
  | 'sampling'
  | 'decode'
  | 'argmax';

const cache = new Map<ShaderName, Promise<string>>();

export function shaderUrl(name: ShaderName): URL {
  return new URL(`../../../shaders/${name}.wgsl`, import.meta.url);
}

async function read(name: ShaderName): Promise<string> {
  const url = shaderUrl(name);
  try {
    if (url.protocol === 'file:') {
      // Kept out of the browser bundle: the specifier is not a literal.
      const fsModule = 'node:fs/promises';
      const fs: { readFile(u: URL, enc: 'utf8'): Promise<string> } = await import(/* @vite-ignore */ fsModule);
      return await fs.readFile(url, 'utf8');
    }
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return await res.text();
  } catch (e) {
    throw new ShaderError(`Could not load shader '${name}' from ${url.href}: ${(e as Error).message}`);
  }
}

export function loadShader(name: ShaderName): Promise<string> {
  let p = cache.get(name);
  if (!p) {
    p = read(name);
    p.catch(() => cache.delete(name));
    cache.set(name, p);
  }
  return p;
}
