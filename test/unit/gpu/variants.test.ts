// Kernel variants: shape classes, the tile name form trainer_state.json records, and the checks
// that refuse a tiling an adapter cannot run (or a malformed one) with the reason.
import { describe, expect, it } from 'vitest';
import { KernelVariantError } from '../../../src/engine/errors.ts';
import {
  DEFAULT_TILE, defaultVariants, kernelsRecord, matmulClass, MATMUL_CLASSES, parseTile, tileName, tileProblem, useSubgroups, variantsFromRecord, vec4Fits,
} from '../../../src/engine/gpu/variants.ts';

const LIMITS = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256, maxComputeWorkgroupSizeX: 256, maxComputeWorkgroupSizeY: 256 };

describe('kernel variants', () => {
  it('classes GPT-2 training shapes by transposes and reduction depth', () => {
    expect(matmulClass(128, 2304, 768)).toBe('nn');
    expect(matmulClass(128, 768, 3072)).toBe('nn-deep');
    expect(matmulClass(128, 768, 3072, false, true)).toBe('nt-deep');
    expect(matmulClass(768, 3072, 128, true, false)).toBe('tn');
    expect(matmulClass(128, 32768, 768, false, true)).toBe('nt');
  });

  it('names and parses tiles both ways', () => {
    expect(tileName(DEFAULT_TILE)).toBe('64x64x32-8x8');
    expect(parseTile('32x64x16-8x4')).toEqual({ bm: 32, bn: 64, bk: 16, tx: 8, ty: 4 });
    expect(tileName(parseTile('128x32x8-4x16'))).toBe('128x32x8-4x16');
    expect(parseTile('64x64x32-8x8-v4')).toEqual({ ...DEFAULT_TILE, vec4: true });
    expect(tileName({ ...DEFAULT_TILE, vec4: true })).toBe('64x64x32-8x8-v4');
    expect(() => parseTile('64x64')).toThrow(KernelVariantError);
    expect(parseTile('16x128x8-64x1-reg')).toEqual({ bm: 16, bn: 128, bk: 8, tx: 64, ty: 1, reg: true });
    expect(tileName(parseTile('16x128x8-64x1-reg'))).toBe('16x128x8-64x1-reg');
    expect(() => parseTile('16x128x8-64x1-v4-reg')).toThrow(KernelVariantError);
  });

  it('accepts register tiles of one thread row, K steps of 8 and at most 64 outputs per thread, and says why others cannot run', () => {
    expect(tileProblem(parseTile('16x128x8-64x1-reg'), LIMITS)).toBeNull();
    expect(tileProblem(parseTile('32x64x8-64x1-reg'), LIMITS)).toBeNull();
    expect(tileProblem(parseTile('16x128x16-64x1-reg'), LIMITS)).toMatch(/steps K by 8/);
    expect(tileProblem(parseTile('16x128x8-64x2-reg'), LIMITS)).toMatch(/ty = 1/);
    expect(tileProblem(parseTile('16x100x8-64x1-reg'), LIMITS)).toMatch(/split evenly/);
    expect(tileProblem(parseTile('32x256x8-64x1-reg'), LIMITS)).toMatch(/32×4 outputs per thread exceed/);
    expect(tileProblem(parseTile('16x512x8-512x1-reg'), LIMITS)).toMatch(/512 threads exceed/);
    expect(tileProblem({ ...parseTile('16x128x8-64x1-reg'), vec4: true }, LIMITS)).toMatch(/no vec4 form/);
    // Workgroup memory is no limit: a register tile uses none.
    expect(tileProblem(parseTile('16x128x8-64x1-reg'), { ...LIMITS, maxComputeWorkgroupStorageSize: 0 })).toBeNull();
  });

  it('accepts the default within WebGPU default limits and says why others cannot run', () => {
    expect(tileProblem(DEFAULT_TILE, LIMITS)).toBeNull();
    expect(tileProblem(parseTile('64x64x64-8x8'), LIMITS)).toMatch(/32768 bytes of workgroup memory/);
    expect(tileProblem(parseTile('64x64x32-32x32'), LIMITS)).toMatch(/1024 threads exceed/);
    expect(tileProblem(parseTile('64x60x32-8x8'), LIMITS)).toMatch(/split evenly/);
    expect(tileProblem(parseTile('8x8x1-8x8'), LIMITS)).toMatch(/whole rounds/);
    expect(tileProblem({ ...DEFAULT_TILE, bk: 0 }, LIMITS)).toMatch(/bk must be a positive integer/);
  });

  it('uses vec4 staging only where whole rounds of four-float loads fit', () => {
    expect(vec4Fits(DEFAULT_TILE, 'a')).toBe(true);
    expect(vec4Fits(parseTile('16x16x8-4x4'), 'b')).toBe(true);
    expect(vec4Fits(parseTile('16x16x8-8x8'), 'a')).toBe(false); // 32 vec4 for 64 threads
  });

  it('records every class in the checkpoint and reads it back for a resume', () => {
    const v = defaultVariants();
    v.matmul.nn = parseTile('32x64x16-8x8-v4');
    v.matmul.tn = parseTile('16x128x8-64x1-reg');
    const r = kernelsRecord(v, 'f32');
    expect(r.precision).toBe('f32');
    expect(Object.keys(r.matmul!)).toEqual([...MATMUL_CLASSES]);
    expect(r.matmul!.nn).toBe('32x64x16-8x8-v4');
    expect(r.matmul!.tn).toBe('16x128x8-64x1-reg');
    expect(r.matmul!.nt).toBe('64x64x32-8x8');
    const back = variantsFromRecord(JSON.parse(JSON.stringify(r)), LIMITS, []);
    expect(back.matmul.nn).toEqual(v.matmul.nn);
    expect(back.matmul.tn).toEqual(v.matmul.tn);
    expect(back.matmul.nt).toEqual(DEFAULT_TILE);
    // A checkpoint from before variants were recorded ran the defaults.
    expect(variantsFromRecord({ precision: 'f32' }, LIMITS, [])).toEqual(defaultVariants());
  });

  it('refuses a recorded variant this adapter cannot run, naming it', () => {
    expect(() => variantsFromRecord({ precision: 'f32', matmul: { nn: '64x64x64-8x8' } }, LIMITS, [])).toThrow(KernelVariantError);
    expect(() => variantsFromRecord({ precision: 'f32', matmul: { nn: '64x64x64-8x8' } }, LIMITS, [])).toThrow(/tile 64x64x64-8x8 for nn.*cannot run/);
    expect(() => variantsFromRecord({ precision: 'f32', subgroups: true }, LIMITS, [])).toThrow(/lacks the 'subgroups' feature/);
    expect(variantsFromRecord({ precision: 'f32', subgroups: true }, LIMITS, ['subgroups']).subgroups).toBe(true);
    expect(() => variantsFromRecord({ precision: 'f32', matmul: { diagonal: '64x64x32-8x8' } as never }, LIMITS, [])).toThrow(/unknown shape class/);
  });

  it('builds a subgroup form only when the variant is on, and refuses it on a device without the feature', () => {
    const device = (features: string[]) => ({ features: new Set(features) });
    const on = { ...defaultVariants(), subgroups: true };
    expect(useSubgroups({ kernels: defaultVariants(), device: device([]) }, 'ln')).toBe(false);
    expect(useSubgroups({ kernels: defaultVariants(), device: device(['subgroups']) }, 'ln')).toBe(false);
    expect(useSubgroups({ kernels: on, device: device(['subgroups']) }, 'ln')).toBe(true);
    expect(() => useSubgroups({ kernels: on, device: device(['shader-f16']) }, 'h0.ln_1')).toThrow(KernelVariantError);
    expect(() => useSubgroups({ kernels: on, device: device([]) }, 'h0.ln_1')).toThrow(/h0\.ln_1: .*lacks the 'subgroups' feature/);
  });
});
