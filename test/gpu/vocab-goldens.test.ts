// The engine against PyTorch at GPT-2's real vocabulary (V = 50257), from the golden folders
// test/goldens/gpt2-v50257-c32 and -c768 (scripts/goldens/make_goldens.py): sampled logits and
// per-position losses, step-0 gradients (small tensors whole, large ones at sampled indices and
// by norm, chosen wte rows whole), per-step losses and gradient norms with clipping, and the
// parameters after the steps. The C=768 case's wte is 147 MiB; the context binds at most
// 128 MiB (Mesa lavapipe's own limit; asked for explicitly so a larger adapter splits too), so
// wte, its gradient and its Adam moments are bound in row ranges. Tolerances from docs/ARCHITECTURE.md.
import { describe, expect, it } from 'vitest';
import { nodeGpu } from '../../src/cli/webgpu-node.ts';
import { GpuContext } from '../../src/engine/gpu/context.ts';
import { run } from '../../src/engine/gpu/dispatch.ts';
import { createRngUniform } from '../../src/engine/kernels/dropout.ts';
import { tokenBucketWords, writeTokenBuckets } from '../../src/engine/kernels/embedding.ts';
import { Activations } from '../../src/engine/model/activations.ts';
import { buildForward, buildHead } from '../../src/engine/model/graph.ts';
import { paramSpecs } from '../../src/engine/model/params.ts';
import { GpuWeights } from '../../src/engine/model/weights.ts';
import { WindowSampler } from '../../src/engine/train/data.ts';
import { Trainer, type StepMetrics } from '../../src/engine/train/trainer.ts';
import { upload } from '../helpers/gpu.ts';
import { relErr } from '../helpers/numeric.ts';
import { loadVocabGolden, pick, sampleIndices, vocabInit, vocabTensor, type VocabGolden } from '../helpers/vocab-goldens.ts';

const NO_DROPOUT = { embd: 0, attn: 0, resid: 0 };
const BINDING = 128 * 2 ** 20;

let ctxPromise: Promise<GpuContext> | null = null;
function context(): Promise<GpuContext> {
  ctxPromise ??= (async () => GpuContext.create(await nodeGpu(), 'high-performance', { maxStorageBufferBindingSize: BINDING }))();
  return ctxPromise;
}

function rel(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

function norm(x: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < x.length; i++) s += x[i] * x[i];
  return Math.sqrt(s);
}

/** Fraction of elements off by more than 1e-4 (docs/ARCHITECTURE.md: parameters after Adam steps). */
function offFraction(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let off = 0;
  for (let i = 0; i < want.length; i++) if (!(Math.abs(got[i] - want[i]) <= 1e-4)) off++;
  return off / want.length;
}

/** Compares a full tensor `got` with what the golden stored of it: whole, or sampled plus its norm; wte's chosen rows. */
function compareTensor(g: VocabGolden, kind: 'grad' | 'final', name: string, k: number, got: Float32Array) {
  const large = g.samples.large.includes(name);
  const C = g.config.nEmbd;
  const check = kind === 'grad'
    ? (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => expect(relErr(a, b), what).toBeLessThan(1e-4)
    : (a: ArrayLike<number>, b: ArrayLike<number>, what: string) => expect(offFraction(a, b), what).toBeLessThan(0.01);
  if (large) {
    check(pick(got, sampleIndices(g, k, got.length)), vocabTensor(g, `${kind}_sample.${name}`), `${kind} of ${name} at ${g.samples.count} sampled elements`);
  } else if (kind === 'final' && name.endsWith('attn.c_attn.bias')) {
    // The key bias [C, 2C) has an exactly zero gradient (softmax is shift-invariant per query
    // row): Adam turns float32 vs float64 rounding noise into steps of up to ±lr either way, so
    // only the query and value biases are compared after training (the near-zero caveat of docs/ARCHITECTURE.md).
    const keep = (x: ArrayLike<number>) => Float64Array.from(x).filter((_, i) => i < C || i >= 2 * C);
    check(keep(got), keep(vocabTensor(g, `${kind}.${name}`)), `${kind} of ${name} (query and value biases)`);
  } else {
    check(got, vocabTensor(g, `${kind}.${name}`), `${kind} of ${name}`);
  }
  expect(rel(norm(got), g.stats[kind][name].norm), `norm of the ${kind} of ${name}`).toBeLessThan(1e-4);
  if (name === 'wte.weight') {
    const rows = new Float32Array(g.wte_rows.length * C);
    g.wte_rows.forEach((r, j) => rows.set(got.subarray(r * C, (r + 1) * C), j * C));
    check(rows, vocabTensor(g, `${kind}_rows.wte.weight`), `${kind} of wte rows ${g.wte_rows}`);
  }
}

for (const name of ['gpt2-v50257-c32', 'gpt2-v50257-c768']) {
  describe(`real-vocabulary golden ${name}`, () => {
    const G = loadVocabGolden(name);
    const c = G.config;
    let cached: ReturnType<typeof vocabInit> | null = null;
    const initial = () => (cached ??= vocabInit(G));

    it('regenerates the generator\'s initial weights bit for bit', () => {
      for (const s of paramSpecs(c)) {
        const t = initial().get(s.name)!;
        const want = G.init.checks[s.name];
        expect(Array.from(t.subarray(0, 4)), `first values of ${s.name}`).toEqual(want.first);
        let sum = 0;
        for (let i = 0; i < t.length; i++) sum += t[i];
        expect(Math.abs(sum - want.sum), `sum of ${s.name}`).toBeLessThan(1e-9 * Math.max(1, Math.abs(want.sum)) + 1e-9 * Math.sqrt(t.length));
      }
    });

    it('forward: sampled logits and per-position losses of the first batch (rel. error ≤ 1e-5)', async () => {
      const ctx = await context();
      const N = G.B * G.T;
      const w = new GpuWeights(ctx, c, initial());
      const acts = new Activations(ctx, c, G.B, G.T, false);
      expect(acts.chunkRows).toBeGreaterThanOrEqual(N);
      const batch = new WindowSampler({ tokens: G.tokens, T: G.T, shuffle: false, seed: 0 }).nextBatch(G.B);
      const inp = { tokens: upload(ctx, batch.inputs), targets: upload(ctx, batch.targets), buckets: upload(ctx, new Uint32Array(tokenBucketWords(N))) };
      writeTokenBuckets(ctx, inp.buckets, batch.inputs, c.vocabSize);
      const g = { ctx, config: c, weights: w, acts, micro: 0, dropout: NO_DROPOUT, rng: createRngUniform(ctx), grad: () => undefined };
      await run(ctx, [...(await buildForward(g, inp)), ...(await buildHead(g, inp.targets, false, 1 / N))]);
      const logits = await ctx.readF32(acts.logits.buffer, 0, N * c.vocabSize);
      const cols = sampleIndices(G, paramSpecs(c).length, c.vocabSize, 1024);
      const sampled = new Float64Array(N * cols.length);
      for (let r = 0; r < N; r++) for (let j = 0; j < cols.length; j++) sampled[r * cols.length + j] = logits[r * c.vocabSize + cols[j]];
      expect(relErr(sampled, vocabTensor(G, 'logits_sample'))).toBeLessThan(1e-5);
      const losses = await ctx.readF32(acts.losses.buffer, 0, N);
      expect(relErr(losses, vocabTensor(G, 'row_losses'))).toBeLessThan(1e-5);
      expect(rel(losses.reduce((a, b) => a + b, 0) / N, G.first_micro_loss)).toBeLessThan(1e-5);
      acts.destroy();
      w.destroy();
    });

    it(`training: step-0 gradients, ${G.steps} losses and clipped grad norms, final parameters`, async () => {
      const ctx = await context();
      const w = new GpuWeights(ctx, c, initial());
      // C=768: 154,389,504 bytes > 128 MiB, two ranges (rows 0-43647, 43648-50256); C=32: one.
      expect(w.ranges('wte.weight').length, 'wte binding ranges').toBe(c.nEmbd === 768 ? 2 : 1);
      const trainer = await Trainer.create(ctx, w, {
        batch: G.B, seq: G.T, gradAccum: 1, dropout: NO_DROPOUT, seed: 0,
        beta1: G.beta1, beta2: G.beta2, eps: G.eps, weightDecay: G.weight_decay, gradClip: G.max_grad_norm, frozen: new Set(),
      });
      const sampler = new WindowSampler({ tokens: G.tokens, T: G.T, shuffle: false, seed: 0 });
      const metrics: StepMetrics[] = [];
      for (let s = 0; s < G.steps; s++) {
        const b = sampler.nextBatch(G.B);
        metrics.push(await trainer.step([{ inputs: b.inputs.slice(), targets: b.targets.slice() }], () => G.lr));
        if (s === 0) {
          for (const [k, spec] of paramSpecs(c).entries()) compareTensor(G, 'grad', spec.name, k, (await trainer.readGradient(spec.name))!);
        }
      }
      metrics.forEach((m, s) => {
        expect(rel(m.loss, G.losses[s]), `loss of step ${s + 1}`).toBeLessThan(1e-4);
        expect(rel(m.gradNorm, G.grad_norms[s]), `grad norm of step ${s + 1}`).toBeLessThan(1e-4);
        expect(m.clipCoef < 1, `clipping on step ${s + 1}`).toBe(G.clipped_steps.includes(s));
      });
      trainer.destroy();
      const final = await w.download();
      for (const [k, spec] of paramSpecs(c).entries()) compareTensor(G, 'final', spec.name, k, final.get(spec.name)!);
      w.destroy();
    });
  });
}
