// The float64 TS reference against PyTorch golden files (test/goldens/gpt2-tiny, written by
// scripts/goldens/make_goldens.py): first-batch logits, loss and every gradient, then 10 AdamW
// steps with clipping (losses, gradient norms, final parameters) for each case: all parameters
// training, embeddings + block 0 frozen, and gradient accumulation over two micro-batches.
// Both sides compute in float64 from the same float32-exact weights; golden tensors are
// stored as float32, so tensor comparisons allow float32 rounding.
import { describe, expect, it } from 'vitest';
import { paramSpecs } from '../../../src/engine/model/params.ts';
import {
  refBackward, refForward, refTrain, sequentialBatch, toF64Params,
} from '../../../src/engine/reference/gpt2.ts';
import { goldenTensor, loadGoldens } from '../../helpers/goldens.ts';
import { relErr } from '../../helpers/numeric.ts';

const G = loadGoldens('gpt2-tiny');
const init = toF64Params(G.params);
const specs = paramSpecs(G.config);

/** every element equal to the float32 rounding of the float64 value, up to one f32 ulp and a tiny absolute slack */
function offF32(got: Float64Array, golden: Float32Array): number {
  let bad = 0;
  for (let i = 0; i < golden.length; i++) {
    if (!(Math.abs(got[i] - golden[i]) <= 2 ** -23 * Math.abs(golden[i]) + 1e-12)) bad++;
  }
  return bad;
}

describe('golden files', () => {
  it('hold the tiny model the tests expect', () => {
    expect(G.config).toMatchObject({ vocabSize: 311, nPositions: 64, nEmbd: 48, nHead: 4, nLayer: 2, nInner: 192, activation: 'gelu_new', embdPdrop: 0 });
    for (const s of specs) expect(G.params.get(s.name)?.length, s.name).toBe(s.numel);
    expect(G.cases.map((c) => c.name)).toEqual(['full', 'frozen', 'accum']);
    for (const c of G.cases) {
      // clipping is exercised: active on some steps and not on others
      expect(c.clipped_steps.length, c.name).toBeGreaterThan(0);
      expect(c.clipped_steps.length, c.name).toBeLessThan(c.steps);
    }
  });
});

for (const gc of G.cases) {
  describe(`PyTorch golden case '${gc.name}' (B=${gc.B}, accumulation ${gc.grad_accum}, frozen groups [${gc.frozen_groups}])`, () => {
    const frozen = new Set(gc.frozen_groups);
    const M = gc.grad_accum;

    it('first micro-batch: logits and loss', () => {
      const { inputs, targets } = sequentialBatch(G.tokens, gc.B, gc.T, 0);
      const f = refForward(G.config, init, inputs, targets, gc.B, gc.T);
      const e = relErr(f.logits, goldenTensor(gc, 'logits'));
      expect(e).toBeLessThan(1e-6);
      expect(Math.abs(f.loss! - gc.first_micro_loss) / gc.first_micro_loss).toBeLessThan(1e-12);
    });

    it('step 0: every trainable parameter gradient (frozen ones absent)', () => {
      const acc = new Map(specs.map((s) => [s.name, new Float64Array(s.numel)]));
      let loss = 0;
      for (let m = 0; m < M; m++) {
        const { inputs, targets } = sequentialBatch(G.tokens, gc.B, gc.T, m * gc.B);
        const f = refForward(G.config, init, inputs, targets, gc.B, gc.T);
        loss += f.loss! / M;
        const g = refBackward(G.config, init, f.cache, { lossScale: 1 / (gc.B * gc.T * M) });
        for (const [n, a] of acc) a.forEach((_, i) => (a[i] += g.get(n)![i]));
      }
      expect(Math.abs(loss - gc.losses[0]) / gc.losses[0]).toBeLessThan(1e-12);
      for (const s of specs) {
        if (frozen.has(s.group)) {
          expect(gc.tensors.has(`grad.${s.name}`), s.name).toBe(false);
          continue;
        }
        expect(relErr(acc.get(s.name)!, goldenTensor(gc, `grad.${s.name}`)), s.name).toBeLessThan(1e-6);
      }
    });

    it(`${gc.steps} AdamW steps: losses, gradient norms before clipping, final parameters`, () => {
      const r = refTrain({
        config: G.config, params: init, tokens: G.tokens, B: gc.B, T: gc.T, steps: gc.steps, gradAccum: M,
        lr: gc.lr, beta1: gc.beta1, beta2: gc.beta2, eps: gc.eps, weightDecay: gc.weight_decay,
        maxGradNorm: gc.max_grad_norm, frozen,
      });
      for (let s = 0; s < gc.steps; s++) {
        expect(Math.abs(r.log[s].loss - gc.losses[s]) / gc.losses[s], `loss step ${s}`).toBeLessThan(1e-12);
        expect(Math.abs(r.log[s].gradNorm - gc.grad_norms[s]) / gc.grad_norms[s], `grad norm step ${s}`).toBeLessThan(1e-12);
      }
      const clipped = r.log.flatMap((l, s) => (l.gradNorm + 1e-6 > gc.max_grad_norm ? [s] : []));
      expect(clipped).toEqual(gc.clipped_steps);
      for (const s of specs) {
        const golden = goldenTensor(gc, `final.${s.name}`);
        const got = r.params.get(s.name)!;
        if (frozen.has(s.group)) {
          // frozen: unchanged bit for bit, in PyTorch's output and in ours
          expect([...golden], s.name).toEqual([...G.params.get(s.name)!]);
          expect([...got], s.name).toEqual([...init.get(s.name)!]);
        } else {
          expect(offF32(got, golden), s.name).toBe(0);
          expect(relErr(got, init.get(s.name)!), `${s.name} moved`).toBeGreaterThan(1e-6);
        }
      }
    });
  });
}
