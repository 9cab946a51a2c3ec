// The shader loader composes each kernel with shaders/prelude.wgsl: the kernel's own text first
// (so compiler line numbers are the file's), the prelude after it, and sourceLine maps a line of
// the composed module back to its file. The dropout hash exists once, in the prelude.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadShader, sourceLine, type ShaderName } from '../../../src/engine/gpu/shaders.ts';

const SHADERS = resolve(import.meta.dirname, '..', '..', '..', 'shaders');
const text = (file: string) => readFileSync(join(SHADERS, file), 'utf8');

describe('shader loader', () => {
  it('puts the kernel first and the prelude after it', async () => {
    const code = await loadShader('dropout');
    const kernel = text('dropout.wgsl');
    expect(code.startsWith(kernel)).toBe(true);
    expect(code.endsWith(text('prelude.wgsl'))).toBe(true);
    expect(code.match(/fn lowbias32\(/g)).toHaveLength(1);
  });

  it('maps lines of the composed module to file:line', async () => {
    const kernelLines = text('gemv.wgsl').split('\n').length;
    expect(await sourceLine('gemv', 1)).toBe('shaders/gemv.wgsl:1');
    expect(await sourceLine('gemv', kernelLines)).toBe(`shaders/gemv.wgsl:${kernelLines}`);
    expect(await sourceLine('gemv', kernelLines + 1)).toBe('shaders/prelude.wgsl:1');
    // The line of `fn lowbias32` in the composed module lands on that line of the prelude.
    const code = await loadShader('gemv');
    const at = code.split('\n').findIndex((l) => l.startsWith('fn lowbias32(')) + 1;
    const inPrelude = text('prelude.wgsl').split('\n').findIndex((l) => l.startsWith('fn lowbias32(')) + 1;
    expect(await sourceLine('gemv', at)).toBe(`shaders/prelude.wgsl:${inPrelude}`);
  });

  it('has the dropout hash only in the prelude', () => {
    const files = readdirSync(SHADERS).filter((f) => f.endsWith('.wgsl'));
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      if (f === 'prelude.wgsl') continue;
      // lowbias32's multipliers: a second copy of the hash would carry them.
      expect(text(f), f).not.toMatch(/0x7feb352d|0x846ca68b/i);
    }
  });

  it('loads every kernel file as a ShaderName', async () => {
    const names = readdirSync(SHADERS).filter((f) => f.endsWith('.wgsl') && f !== 'prelude.wgsl').map((f) => f.slice(0, -5));
    for (const n of names) expect((await loadShader(n as ShaderName)).length).toBeGreaterThan(100);
  });
});
