// shaders/adamw.wgsl against the float64 reference adamwStep, fed by the GPU gradient norm
// (reduce.wgsl) as the trainer chains them: several steps with a learning-rate schedule, weight
// decay on and off, per-tensor step counts, a clip coefficient below 1, and the skips (non-finite
// gradient, inactive record) that must leave parameters and moments untouched.
import { describe, expect, it } from 'vitest';
import { ADAMW_MAX_WORKGROUPS, ADAMW_RECORD_WORDS, adamw, adamwMulti, packAdamwRecords, writeAdamwRecords, type AdamwHyper } from '../../src/engine/kernels/adamw.ts';
import { gradNorm } from '../../src/engine/kernels/reduce.ts';
import { run, type BufferRange, type Dispatch } from '../../src/engine/gpu/dispatch.ts';
import type { GpuContext } from '../../src/engine/gpu/context.ts';
import { ShapeError } from '../../src/engine/errors.ts';
import { adamwStep, clipCoefficient, globalNorm } from '../../src/engine/reference/ops.ts';
import { download, gpuContext, poisoned, upload } from '../helpers/gpu.ts';
import { randn, relErr } from '../helpers/numeric.ts';

/** Tensors packed into one buffer at aligned offsets (an arena), each bound as its own range. */
function arena(ctx: GpuContext, label: string, tensors: Float32Array[]): BufferRange[] {
  const align = ctx.alignment / 4;
  const offsets: number[] = [];
  let at = 0;
  for (const t of tensors) {
    offsets.push(at);
    at = Math.ceil((at + t.length) / align) * align;
  }
  const all = new Float32Array(at);
  tensors.forEach((t, k) => all.set(t, offsets[k]));
  const buffer = ctx.createBuffer(all.byteLength, label, all);
  return tensors.map((t, k) => ({ buffer, offset: offsets[k] * 4, size: t.length * 4 }));
}

function write(ctx: GpuContext, r: BufferRange, data: Float32Array): void {
  ctx.device.queue.writeBuffer(r.buffer, r.offset, data.buffer, data.byteOffset, data.byteLength);
}

const f32 = (a: Float64Array) => Float32Array.from(a);
const f64 = (a: Float32Array) => Float64Array.from(a);

interface Setup {
  params: BufferRange[];
  grads: BufferRange[];
  ms: BufferRange[];
  vs: BufferRange[];
  norm: BufferRange;
  records: GPUBuffer;
  step: Dispatch[];
  clip: Awaited<ReturnType<typeof gradNorm>>;
}

/**
 * The trainer's optimizer half-step: norm over all gradient ranges, then one AdamW dispatch per
 * tensor, or (multi) one dispatch for all of them through adamwMulti's table, as the trainer runs it.
 */
async function setup(ctx: GpuContext, p0: Float32Array[], maxNorm: number, recordOf: number[], multi = false): Promise<Setup> {
  const zeros = p0.map((p) => new Float32Array(p.length));
  const params = arena(ctx, 'params', p0);
  const grads = arena(ctx, 'grads', zeros);
  // m and v share one moments arena: two writable ranges of one buffer in one dispatch are allowed.
  const moments = arena(ctx, 'moments', [...zeros, ...zeros]);
  const ms = moments.slice(0, p0.length);
  const vs = moments.slice(p0.length);
  const norm = poisoned(ctx, 3, 'norm');
  const records = ctx.createBuffer((p0.length + 1) * ADAMW_RECORD_WORDS * 4, 'records');
  const clip = await gradNorm(ctx, { label: 'clip', grads, norm, maxNorm });
  const step = [...clip.dispatches];
  if (multi) {
    const tensors = p0.map((_, k) => ({ param: params[k], grad: grads[k], m: ms[k], v: vs[k], record: recordOf[k] }));
    const opt = await adamwMulti(ctx, { label: 'adamw', tensors, norm, records });
    expect(opt.dispatches).toHaveLength(1);
    step.push(...opt.dispatches);
    return { params, grads, ms, vs, norm, records, step, clip };
  }
  for (let k = 0; k < p0.length; k++) {
    step.push(await adamw(ctx, { label: `adamw${k}`, param: params[k], grad: grads[k], m: ms[k], v: vs[k], norm, records, record: recordOf[k] }));
  }
  return { params, grads, ms, vs, norm, records, step, clip };
}

describe('adamw kernel', () => {
  for (const multi of [false, true]) it(`five steps with a schedule, decay on and off, per-tensor step counts and clipping match adamwStep${multi ? ' (all tensors in one dispatch)' : ''}`, async () => {
    const ctx = await gpuContext();
    // The last tensor is larger than one grid of ADAMW_MAX_WORKGROUPS × 256 threads.
    const sizes = [311, 37 * 48, ADAMW_MAX_WORKGROUPS * 256 + 1003];
    // GPT-2-like weight scale: float32 storage of p then rounds far below the ~1e-3 updates,
    // so the update p − p0 can be compared at 1e-5.
    const p0 = sizes.map((n, k) => f32(randn(n, 500 + k, 0.02)));
    const recordOf = [2, 0, 1]; // records in another order than the tensors
    const s = await setup(ctx, p0, 0, recordOf, multi);
    const ref = p0.map((p) => ({ p: f64(p), m: new Float64Array(p.length), v: new Float64Array(p.length) }));
    const wd = [0, 0.1, 0.01];
    const startsAt = [0, 0, 2]; // the third tensor is unfrozen at step 2: its own count restarts at 1

    for (let step = 0; step < 5; step++) {
      const grads = sizes.map((n, k) => f32(randn(n, 1000 * step + k, 0.02 * (k + 1))));
      grads.forEach((g, k) => write(ctx, s.grads[k], g));
      const lr = 1e-3 * (1 - step / 6); // a linear-decay schedule: a new rate every step
      const total = globalNorm(grads.map(f64));
      const maxNorm = total * 0.4; // clips: coefficient ≈ 0.4
      s.clip.setMaxNorm(maxNorm);
      const hypers: AdamwHyper[] = sizes.map((_, k) => ({
        lr: lr * (k === 1 ? 0.5 : 1), // a discriminative rate for one tensor
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: wd[k],
        step: step - startsAt[k] + 1,
        active: step >= startsAt[k],
      }));
      const ordered: AdamwHyper[] = [];
      recordOf.forEach((r, k) => (ordered[r] = hypers[k]));
      ordered.push({ ...hypers[0], lr: 1 }); // an unused record
      writeAdamwRecords(ctx, s.records, ordered);
      await run(ctx, s.step);

      const coef = clipCoefficient(total, Math.fround(maxNorm));
      expect(coef).toBeLessThan(0.5);
      const [gotNorm, gotCoef, flag] = await download(ctx, s.norm);
      expect(Math.abs(gotNorm - total) / total).toBeLessThan(1e-6);
      expect(Math.abs(gotCoef - coef) / coef).toBeLessThan(1e-6);
      expect(flag).toBe(0);
      for (let k = 0; k < sizes.length; k++) {
        const h = hypers[k];
        if (h.active) adamwStep(ref[k].p, f64(grads[k]).map((g) => g * coef), ref[k].m, ref[k].v, h);
        const p = await download(ctx, s.params[k]);
        const m = await download(ctx, s.ms[k]);
        const v = await download(ctx, s.vs[k]);
        // The update itself (p − p0) is what must agree; p alone would hide it behind p0.
        const delta = Float64Array.from(p, (x, i) => x - p0[k][i]);
        const refDelta = Float64Array.from(ref[k].p, (x, i) => x - p0[k][i]);
        if (h.active) {
          expect(relErr(delta, refDelta)).toBeLessThan(1e-5);
          expect(relErr(m, ref[k].m)).toBeLessThan(1e-6);
          expect(relErr(v, ref[k].v)).toBeLessThan(1e-6);
        } else {
          // Not yet unfrozen: nothing moves, not even by weight decay.
          expect(p).toEqual(p0[k]);
          expect(m.every((x) => x === 0) && v.every((x) => x === 0)).toBe(true);
        }
      }
    }
  });

  for (const multi of [false, true]) it(`a non-finite gradient sets the flag and leaves params and moments untouched${multi ? ' (one dispatch)' : ''}`, async () => {
    const ctx = await gpuContext();
    const p0 = [f32(randn(300, 1)), f32(randn(1000, 2))];
    const s = await setup(ctx, p0, 1, [0, 1], multi);
    const hyper = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    writeAdamwRecords(ctx, s.records, [{ ...hyper, step: 1 }, { ...hyper, step: 1 }]);
    // One good step so the moments are non-zero.
    p0.forEach((p, k) => write(ctx, s.grads[k], f32(randn(p.length, 10 + k))));
    await run(ctx, s.step);
    const before = await Promise.all([...s.params, ...s.ms, ...s.vs].map((r) => download(ctx, r)));
    expect(before[0]).not.toEqual(p0[0]);
    // Then a step whose gradient holds a NaN in the second tensor only.
    const bad = f32(randn(1000, 20));
    bad[777] = NaN;
    write(ctx, s.grads[0], f32(randn(300, 21)));
    write(ctx, s.grads[1], bad);
    writeAdamwRecords(ctx, s.records, [{ ...hyper, step: 2 }, { ...hyper, step: 2 }]);
    await run(ctx, s.step);
    expect((await download(ctx, s.norm))[2]).toBe(1);
    const after = await Promise.all([...s.params, ...s.ms, ...s.vs].map((r) => download(ctx, r)));
    after.forEach((a, i) => expect(a).toEqual(before[i]));
  });

  it('reads the clip coefficient and flag from the norm buffer as given', async () => {
    const ctx = await gpuContext();
    const n = 500;
    const p = randn(n, 31, 0.02), g = randn(n, 32);
    const h = { lr: 3e-3, beta1: 0.8, beta2: 0.99, eps: 1e-6, weightDecay: 0.05, step: 4 };
    for (const [coef, flag] of [[0.25, 0], [0.25, 1]]) {
      const param = upload(ctx, f32(p));
      const m = upload(ctx, f32(randn(n, 33, 0.1)));
      const v = upload(ctx, f32(randn(n, 34, 0.1).map((x) => x * x)));
      const m0 = await download(ctx, m), v0 = await download(ctx, v);
      const d = await adamw(ctx, {
        label: 'a', param, grad: upload(ctx, f32(g)), m, v,
        norm: upload(ctx, new Float32Array([123, coef, flag])), records: upload(ctx, packAdamwRecords([h])).buffer, record: 0,
      });
      await run(ctx, [d]);
      const rp = f64(f32(p)), rm = f64(m0), rv = f64(v0);
      adamwStep(rp, f64(f32(g)).map((x) => x * coef), rm, rv, h);
      if (flag) {
        expect(await download(ctx, param)).toEqual(f32(p));
        expect(await download(ctx, m)).toEqual(m0);
        expect(await download(ctx, v)).toEqual(v0);
      } else {
        const got = await download(ctx, param);
        expect(relErr(Float64Array.from(got, (x, i) => x - Math.fround(p[i])), rp.map((x, i) => x - Math.fround(p[i])))).toBeLessThan(1e-5);
        expect(relErr(await download(ctx, m), rm)).toBeLessThan(1e-6);
        expect(relErr(await download(ctx, v), rv)).toBeLessThan(1e-6);
      }
    }
  });

  it('adamwMulti updates every tensor bit for bit as one adamw dispatch per tensor does', async () => {
    const ctx = await gpuContext();
    // Sizes below one workgroup, several elements per invocation, and over the multi grid's cap
    // (ADAMW_MAX_WORKGROUPS workgroups of 16 elements per invocation).
    const sizes = [5, 311, ADAMW_MAX_WORKGROUPS * 256 + 77, 1, 48 * 37, ADAMW_MAX_WORKGROUPS * 256 * 16 + 5];
    const p0 = sizes.map((n, k) => f32(randn(n, 700 + k, 0.02)));
    const recordOf = [1, 0, 2, 2, 3, 0];
    const a = await setup(ctx, p0, 0.05, recordOf);
    const b = await setup(ctx, p0, 0.05, recordOf, true);
    const hypers = [0, 1, 2, 3].map((k) => ({ lr: 1e-3 * (k + 1), beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 * k, step: 3, active: k !== 3 }));
    for (let step = 0; step < 2; step++) {
      for (const s of [a, b]) {
        sizes.forEach((n, k) => write(ctx, s.grads[k], f32(randn(n, 900 + 10 * step + k, 0.1))));
        writeAdamwRecords(ctx, s.records, hypers);
        await run(ctx, s.step);
      }
    }
    for (const list of ['params', 'ms', 'vs'] as const) {
      for (let k = 0; k < sizes.length; k++) {
        const x = await download(ctx, a[list][k]);
        expect(await download(ctx, b[list][k]), `${list}[${k}]`).toEqual(x);
        if (list === 'params') expect(x.some((v, i) => v !== p0[k][i])).toBe(recordOf[k] !== 3); // record 3 is inactive
      }
    }
  });

  it('packAdamwRecords lays out [β1, β2, 1−β1, 1−β2, eps, 1−lr·wd, lr/(1−β1^t), √(1−β2^t), active] and refuses bad values', () => {
    const r = packAdamwRecords([
      { lr: 0.5, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, step: 3 },
      { lr: 0.25, beta1: 0.5, beta2: 0.75, eps: 0, weightDecay: 0, step: 0, active: false },
    ]);
    expect(r.length).toBe(2 * ADAMW_RECORD_WORDS);
    const want = [
      0.9, 0.99, 1 - 0.9, 1 - 0.99, 1e-8, 1 - 0.5 * 0.1, 0.5 / (1 - 0.9 ** 3), Math.sqrt(1 - 0.99 ** 3), 1,
      0.5, 0.75, 0.5, 0.25, 0, 1, 0.25 / 0.5, Math.sqrt(0.25), 0,
    ];
    want.forEach((w, i) => expect(r[i]).toBe(Math.fround(w)));
    const ok = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };
    expect(() => packAdamwRecords([{ ...ok, step: 0 }])).toThrow(ShapeError);
    expect(() => packAdamwRecords([{ ...ok, step: 1, beta2: 1 }])).toThrow(/beta2/);
    expect(() => packAdamwRecords([{ ...ok, step: 1, lr: NaN }])).toThrow(/lr/);
  });

  it('writeAdamwRecords refuses more records than the buffer holds', async () => {
    const ctx = await gpuContext();
    const records = ctx.createBuffer(ADAMW_RECORD_WORDS * 4, 'records');
    const h = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, step: 1 };
    expect(() => writeAdamwRecords(ctx, records, [h, h, h, h])).toThrow(/records buffer/);
  });

  it('refuses mismatched ranges and a record outside the buffer', async () => {
    const ctx = await gpuContext();
    const a = upload(ctx, new Float32Array(64));
    const small = upload(ctx, new Float32Array(16));
    const records = upload(ctx, new Float32Array(2 * ADAMW_RECORD_WORDS)).buffer;
    const base = { label: 'a', param: a, grad: a, m: a, v: a, norm: a, records, record: 0 };
    await expect(adamw(ctx, { ...base, m: small })).rejects.toThrow(/m range/);
    await expect(adamw(ctx, { ...base, record: 2 })).rejects.toThrow(/record 2/);
    await expect(adamw(ctx, { ...base, norm: { ...a, size: 8 } })).rejects.toThrow(ShapeError);
  });
});
