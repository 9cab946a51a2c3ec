// The shader loader composes each kernel with shaders/prelude.wgsl: the kernel's own text first
// (so compiler line numbers are the file's), the prelude after it, and sourceLine maps a line of
// the composed module back to its file. The dropout hash exists once, in the prelude.
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ShaderError } from '../../../src/engine/errors.ts';
import { loadShader, sourceLine, specialize, type ShaderName } from '../../../src/engine/gpu/shaders.ts';

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
    const names = readdirSync(SHADERS).filter((f) => f.endsWith('.wgsl') && f !== 'prelude.wgsl' && f !== 'subgroups.wgsl').map((f) => f.slice(0, -5));
    for (const n of names) expect((await loadShader(n as ShaderName)).length).toBeGreaterThan(100);
  });
});

describe('the subgroups variant', () => {
  const KERNELS = ['layernorm', 'crossentropy', 'reduce', 'residual', 'decode'] as const;

  it('composes shaders/subgroups.wgsl after the prelude only with SUBGROUPS on, in a module that enables them', async () => {
    for (const k of KERNELS) {
      const off = await loadShader(k);
      expect(off, k).toBe(await loadShader(k, { SUBGROUPS: false }));
      expect(off.endsWith(text('prelude.wgsl')), k).toBe(true);
      expect(off.replace(/\/\/.*$/gm, ''), k).not.toMatch(/enable subgroups;|subgroupAdd\(|subgroupMax\(|subgroup_size/);
      const on = await loadShader(k, { SUBGROUPS: true });
      expect(on, k).toMatch(/^enable subgroups;$/m);
      expect(on.endsWith(text('subgroups.wgsl')), k).toBe(true);
      expect(on, k).toMatch(/@builtin\(subgroup_size\)/);
    }
  });

  it('maps lines past the prelude to shaders/subgroups.wgsl', async () => {
    const kernelLines = text('reduce.wgsl').split('\n').length;
    const preludeLines = text('prelude.wgsl').split('\n').length;
    expect(await sourceLine('reduce', kernelLines + preludeLines)).toBe(`shaders/prelude.wgsl:${preludeLines}`);
    expect(await sourceLine('reduce', kernelLines + preludeLines + 1)).toBe('shaders/subgroups.wgsl:1');
    const code = await loadShader('reduce', { SUBGROUPS: true });
    const at = code.split('\n').findIndex((l) => l.startsWith('fn subgroupsSum(')) + 1;
    const inPart = text('subgroups.wgsl').split('\n').findIndex((l) => l.startsWith('fn subgroupsSum(')) + 1;
    expect(await sourceLine('reduce', at)).toBe(`shaders/subgroups.wgsl:${inPart}`);
  });

  it('refuses SUBGROUPS for a kernel that does not enable subgroups', async () => {
    await expect(loadShader('gelu', { SUBGROUPS: true })).rejects.toThrow(/gelu\.wgsl: SUBGROUPS is on, and the kernel does not enable subgroups/);
  });
});

describe('shader specialization', () => {
  it('keeps one branch of #if/#else, substitutes $NAME and keeps every line number', () => {
    const src = ['const BM: u32 = $BM;', '#if VEC', 'vec path', '#else', 'scalar path', '#endif', 'flag = $VEC;'].join('\n');
    const on = specialize(src, { BM: 64, VEC: true }).split('\n');
    expect(on).toEqual(['const BM: u32 = 64u;', '', 'vec path', '', '', '', 'flag = true;']);
    const off = specialize(src, { BM: 16, VEC: false }).split('\n');
    expect(off).toEqual(['const BM: u32 = 16u;', '', '', '', 'scalar path', '', 'flag = false;']);
  });

  it('nests, and a skipped block hides its inner #if', () => {
    const src = ['#if A', '#if B', 'ab', '#else', 'a', '#endif', '#else', 'none', '#endif'].join('\n');
    expect(specialize(src, { A: true, B: false }).split('\n').filter(Boolean)).toEqual(['a']);
    expect(specialize(src, { A: true, B: true }).split('\n').filter(Boolean)).toEqual(['ab']);
    expect(specialize(src, { A: false, B: true }).split('\n').filter(Boolean)).toEqual(['none']);
  });

  it('refuses undefined names and unbalanced directives, naming the line', () => {
    expect(() => specialize('x = $MISSING;', {}, 'k.wgsl')).toThrow(ShaderError);
    expect(() => specialize('x = $MISSING;', {}, 'k.wgsl')).toThrow(/k\.wgsl:1: \$MISSING is not defined/);
    expect(() => specialize('#if X\ny', {})).toThrow(/X is not defined/);
    expect(() => specialize('#if X\ny', { X: true })).toThrow(/#if without #endif/);
    expect(() => specialize('#endif', {})).toThrow(/#endif without #if/);
    expect(() => specialize('#if X\n#else\n#else\n#endif', { X: true })).toThrow(/#else without #if/);
    expect(() => specialize('$N', { N: 1.5 })).toThrow(ShaderError);
  });

  it('specializes matmul.wgsl with every tile define and no leftover $ or directive', async () => {
    const code = await loadShader('matmul', { BM: 32, BN: 64, BK: 16, TX: 8, TY: 8, VEC_A: true, VEC_B: false, F16_B: false });
    expect(code).toContain('const BM: u32 = 32u;');
    expect(code).toContain('var<storage, read> A: array<vec4f>;');
    expect(code).toContain('var<storage, read> B: array<f32>;');
    expect(code).not.toMatch(/^enable f16;|B: array<f16>/m);
    expect(code).not.toMatch(/\$[A-Z]|^\s*#(if|else|endif)/m);
    // Precision f16's variant: the enable directive before any declaration, B as f16.
    const half = await loadShader('matmul', { BM: 64, BN: 64, BK: 32, TX: 8, TY: 8, VEC_A: true, VEC_B: false, F16_B: true });
    expect(half).toContain('var<storage, read> B: array<f16>;');
    expect(half.indexOf('enable f16;')).toBeGreaterThan(0);
    expect(half.indexOf('enable f16;')).toBeLessThan(half.indexOf('override TRANS_A'));
    expect(code.split('\n').length).toBe((await loadShader('matmul')).split('\n').length);
  });

  it('specializes matmul.wgsl with its default tiling when a caller gives no or some defines', async () => {
    const plain = await loadShader('matmul');
    expect(plain).toContain('const BM: u32 = 64u;');
    expect(plain).toContain('var<storage, read> A: array<f32>;');
    expect(plain).not.toMatch(/\$[A-Z]|^\s*#(if|else|endif)/m);
    const some = await loadShader('matmul', { BK: 16 });
    expect(some).toContain('const BK: u32 = 16u;');
    expect(some).toContain('const BM: u32 = 64u;');
  });
});
