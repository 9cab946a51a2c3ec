// Precision f16 (docs/ARCHITECTURE.md, Mixed precision), kernel by kernel:
// - the f16 weight copies (kernels/cast.ts through GpuWeights.setPrecision) against the binary16
//   reference, with the master and the copy bound in different row ranges;
// - the matmul with an f16 B operand against the float64 reference on the same f16 values;
// - weights that were in f16 and are set back to f32 train bit for bit as weights never in f16.
// (The copies after 50 AdamW updates: f16-training.test.ts.)
// WGSL leaves the rounding of an f32 → f16 conversion to the implementation (either neighbour of
// a value that is not representable; the WebGPU CTS accepts both, webgpu/util/math.ts
// correctlyRoundedF16), so the copies are checked against both neighbours and the count that
// round to nearest-even is printed.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { MissingFeatureError } from '../../src/engine/errors.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { parseTile } from '../../src/engine/gpu/variants.ts';
import { matmul } from '../../src/engine/kernels/matmul.ts';
import { GpuWeights, isF16Copied } from '../../src/engine/model/weights.ts';
import { f16Bits, f16Value } from '../../src/engine/reference/f16.ts';
import { refMatmul } from '../../src/engine/reference/matmul.ts';
import { Trainer } from '../../src/engine/train/trainer.ts';
import { randomGpt2Params } from '../../scripts/make-random-model.ts';
import { loadGoldens } from '../helpers/goldens.ts';
import { download, gpuContext, poisoned, upload } from '../helpers/gpu.ts';
import { randn, relErr } from '../helpers/numeric.ts';

const G = loadGoldens();

/** Whether binary16 pattern `h` is an acceptable rounding of float32 `x`: the nearest-even one or its other neighbour. */
function acceptable(x: number, h: number): boolean {
  const rne = f16Bits(x);
  if (h === rne) return true;
  const v = f16Value(h);
  const r = f16Value(rne);
  if (!Number.isFinite(v) || !Number.isFinite(r)) {
    return Math.abs(x) >= 65504 && (Math.abs(v) === Infinity || Math.abs(v) === 65504) && Math.sign(v) === Math.sign(x);
  }
  // the other neighbour: on the other side of x from the nearest-even one, one ulp from it
  return (v - x) * (r - x) <= 0 && Math.abs(h - rne) === 1;
}

async function checkCopies(w: GpuWeights, label: string): Promise<void> {
  let n = 0;
  let rne = 0;
  for (const s of w.specs) {
    const copy = await w.readF16Copy(s.name);
    if (!isF16Copied(s.name)) {
      expect(copy, `${label}: ${s.name} has no copy`).toBeNull();
      continue;
    }
    const master = await w.read(s.name);
    expect(copy!.length).toBe(master.length);
    for (let i = 0; i < master.length; i++) {
      if (!acceptable(master[i], copy![i])) throw new Error(`${label}: ${s.name}[${i}] = ${master[i]} became f16 0x${copy![i].toString(16)} (${f16Value(copy![i])})`);
      if (copy![i] === f16Bits(master[i])) rne++;
      n++;
    }
  }
  console.log(`[f16] ${label}: ${n} copied values, ${rne} rounded to nearest-even (${((100 * rne) / n).toFixed(3)}%)`);
}

describe('f16 weight copies', () => {
  it('equal f16(master) for every matmul weight, with wte bound in ranges that split differently', async () => {
    // A 40 KiB binding limit: 192 rows of the float32 wte per range, 384 of its f16 copy, so
    // eleven master ranges overlap six copy ranges at shifting offsets.
    const config = { ...G.config, vocabSize: 2000 };
    const ctx = await GpuContext.create(await nodeGpu(), 'high-performance', { maxStorageBufferBindingSize: 40960 });
    expect(ctx.hasF16, 'the gpu tier runs on an adapter with shader-f16 (lavapipe has it)').toBe(true);
    const w = new GpuWeights(ctx, config, randomGpt2Params(config, 5));
    expect(w.precision).toBe('f32');
    await w.setPrecision('f16');
    expect(w.precision).toBe('f16');
    expect(w.matmulRanges('wte.weight').ranges.length).toBe(6);
    expect(w.ranges('wte.weight').length).toBe(11);
    await checkCopies(w, 'loaded');
    // Awkward values: subnormal halves, ties, beyond the f16 range.
    const spec = w.specs.find((s) => s.name === 'h.0.mlp.c_fc.weight')!;
    const awkward = [1e-6, -3e-8, 1 + 2 ** -11, 65519, 7e4, -1e5, 1 / 3, 2 ** -25];
    const odd = Float32Array.from({ length: spec.numel }, (_, i) => awkward[i % 8] * (1 + (i % 5) * 2 ** -12));
    w.upload(spec.name, odd);
    const wte = randn(config.vocabSize * config.nEmbd, 77, 0.3);
    w.upload('wte.weight', Float32Array.from(wte));
    await checkCopies(w, 'uploaded');
    // f32 again: the matmuls read the masters, no copy remains.
    await w.setPrecision('f32');
    expect(w.matmulWeight('h.0.mlp.c_fc.weight').f16).toBe(false);
    expect(await w.readF16Copy('wte.weight')).toBeNull();
    w.destroy();
    ctx.destroy();
  });

  it('the step\'s refresh of every copy (one cast dispatch per span) writes the same copies as one tensor at a time', async () => {
    // The trainer's refresh after AdamW (GpuWeights.copyAllDispatches), under the 40 KiB binding
    // limit of the test above: wte's eleven master ranges and six copy ranges, and every block.
    const config = { ...G.config, vocabSize: 2000 };
    const ctx = await GpuContext.create(await nodeGpu(), 'high-performance', { maxStorageBufferBindingSize: 40960 });
    const w = new GpuWeights(ctx, config, randomGpt2Params(config, 5));
    await w.setPrecision('f16');
    const copied = w.specs.filter((s) => isF16Copied(s.name));
    // New masters written past the copies (Arena.write does not refresh them) …
    const fresh = new Map(copied.map((s, k) => [s.name, Float32Array.from(randn(s.numel, 100 + k, 0.7))]));
    for (const [name, data] of fresh) w.arena.write(name, data);
    const before = await w.readF16Copy('wte.weight');
    // … then the casts over every copied weight at once (and some without a copy, skipped).
    const multi = await w.copyAllDispatches(w.specs.map((s) => s.name));
    await run(ctx, multi.dispatches);
    const got = new Map<string, Uint16Array>();
    for (const s of copied) got.set(s.name, (await w.readF16Copy(s.name))!);
    expect(Buffer.from(got.get('wte.weight')!.buffer).equals(Buffer.from(before!.buffer)), 'the copy changed').toBe(false);
    // One tensor at a time (GpuWeights.upload refreshes its own copy) writes the same bits.
    for (const [name, data] of fresh) w.upload(name, data);
    for (const s of copied) {
      const ref = (await w.readF16Copy(s.name))!;
      expect(Buffer.from(got.get(s.name)!.buffer).equals(Buffer.from(ref.buffer)), s.name).toBe(true);
    }
    await checkCopies(w, 'every copy at once');
    for (const t of multi.tables) t.destroy();
    expect((await w.copyAllDispatches(['ln_f.weight'])).dispatches).toHaveLength(0);
    w.destroy();
    ctx.destroy();
    // Under the adapter's own limit every copy of the test model is one dispatch, not 1 + 4·L.
    const ctx2 = await gpuContext();
    const w2 = new GpuWeights(ctx2, G.config, G.params);
    await w2.setPrecision('f16');
    const one = await w2.copyAllDispatches(w2.specs.map((s) => s.name));
    expect(w2.specs.filter((s) => isF16Copied(s.name))).toHaveLength(1 + 4 * G.config.nLayer);
    expect(one.dispatches).toHaveLength(1);
    for (const t of one.tables) t.destroy();
    w2.destroy();
  });

  it('weights set back to f32 train bit for bit as weights never in f16', async () => {
    const ctx = await gpuContext();
    const opts = {
      batch: 2, seq: 16, gradAccum: 1, dropout: { embd: 0.1, attn: 0.1, resid: 0.1 }, seed: 3, frozen: new Set<number>(),
      beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1,
    };
    const batch = [{ inputs: Uint32Array.from(G.tokens.subarray(0, 32)), targets: Uint32Array.from(G.tokens.subarray(1, 33)) }];
    const losses = [];
    for (const detour of [false, true]) {
      const w = new GpuWeights(ctx, G.config, G.params);
      if (detour) await w.setPrecision('f16');
      const t = await Trainer.create(ctx, w, { ...opts, precision: 'f32' });
      expect(w.precision).toBe('f32');
      const l = [];
      for (let s = 0; s < 3; s++) l.push((await t.step(batch, () => 1e-3)).loss);
      const final = await w.read('h.0.mlp.c_fc.weight');
      losses.push({ l, final });
      t.destroy();
      w.destroy();
    }
    expect(losses[1].l).toEqual(losses[0].l);
    expect(Buffer.from(losses[1].final.buffer).equals(Buffer.from(losses[0].final.buffer))).toBe(true);
  });

  it('an adapter without shader-f16 is refused by name', async () => {
    const ctx = await gpuContext();
    const w = new GpuWeights(ctx, G.config, G.params);
    // Hide the feature: the same check every f16 path goes through.
    const features = new Set([...ctx.device.features].filter((f) => f !== 'shader-f16'));
    const own = Object.getOwnPropertyDescriptor(ctx.device, 'features');
    Object.defineProperty(ctx.device, 'features', { value: features, configurable: true });
    try {
      await expect(w.setPrecision('f16')).rejects.toThrow(MissingFeatureError);
      await expect(w.setPrecision('f16')).rejects.toThrow(/needs the WebGPU feature 'shader-f16', which this adapter .* does not offer\. Train with precision f32/);
      expect(w.precision).toBe('f32');
    } finally {
      if (own) Object.defineProperty(ctx.device, 'features', own);
      else delete (ctx.device as unknown as Record<string, unknown>).features;
      expect(ctx.hasF16).toBe(true);
      w.destroy();
    }
  });
});

describe('matmul with an f16 B operand', () => {
  const shapes = [
    { M: 37, N: 48, K: 311 },
    { M: 130, N: 67, K: 5 },
    { M: 1, N: 1, K: 1 },
    { M: 64, N: 192, K: 48 },
  ];
  let seed = 500;
  for (const sh of shapes) {
    for (const transB of [false, true]) {
      it(`M=${sh.M} N=${sh.N} K=${sh.K} transB=${transB}: float32 sums of the f16 values, as the float64 reference`, async () => {
        const ctx = await gpuContext();
        const a = randn(sh.M * sh.K, seed++);
        const b = randn(sh.K * sh.N, seed++, 0.05);
        const bias = randn(sh.N, seed++);
        // B as binary16 (made on the CPU here: the matmul is checked, not the conversion), padded to 4 bytes.
        const half = new Uint16Array(Math.ceil((sh.K * sh.N) / 2) * 2);
        for (let i = 0; i < b.length; i++) half[i] = f16Bits(b[i]);
        const bRange = { buffer: ctx.createBuffer(half.byteLength, 'b16', half), offset: 0, size: half.byteLength };
        const out = poisoned(ctx, sh.M * sh.N);
        await run(ctx, [await matmul(ctx, {
          label: 'mm16', ...sh, a: upload(ctx, Float32Array.from(a)), b: bRange, bF16: true, bias: upload(ctx, Float32Array.from(bias)), out, transB,
        })]);
        const got = await download(ctx, out);
        // A register tile (shaders/matmul_reg.wgsl) reads the f16 B the same way: the same sums, bit for bit.
        const outReg = poisoned(ctx, sh.M * sh.N);
        await run(ctx, [await matmul(ctx, {
          label: 'mm16', ...sh, a: upload(ctx, Float32Array.from(a)), b: bRange, bF16: true, bias: upload(ctx, Float32Array.from(bias)), out: outReg, transB,
          tile: parseTile('16x64x8-64x1-reg'),
        })]);
        expect(Array.from(await download(ctx, outReg))).toEqual(Array.from(got));
        const bh = Float64Array.from(half.subarray(0, b.length), f16Value);
        const ref = refMatmul({ ...sh, a: Float64Array.from(Float32Array.from(a)), b: bh, bias: Float64Array.from(Float32Array.from(bias)), transB });
        expect(relErr(got, ref)).toBeLessThan(1e-6);
        // The same product with float32 B differs by B's rounding: the f16 path is not the f32 one.
        const f64 = (x: Float64Array) => Float64Array.from(Float32Array.from(x));
        const ref32 = refMatmul({ ...sh, a: f64(a), b: f64(b), bias: f64(bias), transB });
        if (sh.K > 1) expect(relErr(got, ref32)).toBeGreaterThan(1e-5);
      });
    }
  }

  it('an f16 B binding too small for its f16 elements is a ShapeError', async () => {
    const ctx = await gpuContext();
    const a = upload(ctx, new Float32Array(4 * 8));
    const b = { buffer: ctx.createBuffer(16, 'b16'), offset: 0, size: 16 }; // 8 halves, the product needs 8 × 3
    await expect(matmul(ctx, { label: 'mm16', M: 4, N: 3, K: 8, a, b, bF16: true, out: poisoned(ctx, 12) })).rejects.toThrow(/B is bound as 16 bytes; a \(8, 3\) block with leading dimension 3 needs 48/);
  });
});
