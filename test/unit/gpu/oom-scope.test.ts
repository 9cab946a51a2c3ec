// GpuContext.allocating over a stand-in device: an allocation WebGPU reports in the
// 'out-of-memory' scope becomes OutOfMemoryError naming what was allocated and what to change,
// what was made is released, and the scope is popped whether f succeeds, fails or throws (a
// scope left pushed would swallow every later error of the device).
import { describe, expect, it } from 'vitest';
import { GpuContext } from '../../../src/engine/gpu/context.ts';
import { OutOfMemoryError } from '../../../src/engine/errors.ts';

class GPUOutOfMemoryError {
  constructor(readonly message: string) {}
}

function fakeContext(popped: unknown) {
  const scopes: string[] = [];
  const device = {
    pushErrorScope: (f: string) => scopes.push(f),
    popErrorScope: async () => {
      scopes.pop();
      return popped;
    },
  };
  const ctx = Object.create(GpuContext.prototype) as GpuContext;
  Object.defineProperty(ctx, 'device', { value: device });
  return { ctx, scopes };
}

describe('GpuContext.allocating', () => {
  it('passes a successful allocation through and pops its scope', async () => {
    const { ctx, scopes } = fakeContext(null);
    expect(await ctx.allocating('x', () => 42)).toBe(42);
    expect(scopes).toEqual([]);
  });

  it('turns an out-of-memory error into OutOfMemoryError and releases what was made', async () => {
    const { ctx, scopes } = fakeContext(new GPUOutOfMemoryError('Not enough memory left.'));
    const released: string[] = [];
    const err = await ctx.allocating('the Adam moments', () => 'buffers', (m) => released.push(m)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect((err as OutOfMemoryError).what).toBe('the Adam moments');
    expect((err as Error).message).toMatch(/ran out of memory while allocating the Adam moments \(Not enough memory left\.\)/);
    expect((err as Error).message).toMatch(/batch size or the sequence length, freeze more layers.*LoRA/);
    expect(released).toEqual(['buffers']);
    expect(scopes).toEqual([]);
  });

  it('pops the scope when the allocation itself throws', async () => {
    const { ctx, scopes } = fakeContext(null);
    await expect(ctx.allocating('x', () => { throw new RangeError('bad size'); })).rejects.toThrow('bad size');
    expect(scopes).toEqual([]);
  });
});
