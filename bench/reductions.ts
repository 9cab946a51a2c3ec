// Reductions with and without the `subgroups` kernel variant, at GPT-2 124M's sizes for
// B·T = 128 rows: LayerNorm forward and its dx (shaders/layernorm.wgsl) and the fused residual +
// LayerNorm (shaders/residual.wgsl) at C = 768; the fused cross-entropy over the 50257-token
// vocabulary (shaders/crossentropy.wgsl); the generation softmax over a full 1024-position
// cache, 12 heads (shaders/decode.wgsl attend; the training attention keeps its softmax per
// thread and has no workgroup reduction); and the gradient norm for clipping over one
// transformer block's twelve gradients (shaders/reduce.wgsl sum_squares_multi + norm_finalize).
// Off and on are timed alternately in one process, several rounds, and the median of each is
// reported with their ratio (fair under a shared machine's load; absolute times are not).
//
//   VK_ICD_FILENAMES=… npx tsx bench/reductions.ts [--reps N] [--rounds N] [--rows N]
import { execSync } from 'node:child_process';
import { loadavg } from 'node:os';
import { nodeGpu } from '../src/cli/webgpu-node.ts';
import { GpuContext } from '../src/engine/gpu/context.ts';
import { run, whole, type Dispatch } from '../src/engine/gpu/dispatch.ts';
import { layernormBackward, layernormForward } from '../src/engine/kernels/layernorm.ts';
import { crossEntropy } from '../src/engine/kernels/crossentropy.ts';
import { residualLayernorm } from '../src/engine/kernels/residual.ts';
import { createStepUniform, decodeAttend, kvCacheElements, writeDecodeStep } from '../src/engine/kernels/decode.ts';
import { gradNorm } from '../src/engine/kernels/reduce.ts';
import { createRngUniform } from '../src/engine/kernels/dropout.ts';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
}
const reps = arg('--reps', 20);
const rounds = arg('--rounds', 5);
const N = arg('--rows', 128);
const C = 768;
const V = 50257;
const NH = 12;
const P = 1024;

const ctx = await GpuContext.create(await nodeGpu());
if (!ctx.device.features.has('subgroups')) throw new Error('this adapter lacks the subgroups feature: nothing to compare');
const a = ctx.adapter;
console.log(`adapter: ${a.vendor} ${a.architecture} ${a.description}`.replace(/\s+/g, ' ').trim());
const commit = (() => {
  try {
    return execSync('git rev-parse --short HEAD', { encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
})();
const load = () => loadavg().map((l) => l.toFixed(2)).join(' ');
console.log(`${new Date().toISOString()}, commit ${commit}, load average ${load()}`);
const fill = (n: number, scale = 1) => Float32Array.from({ length: n }, (_, i) => (((i * 2654435761) % 1000) / 1000 - 0.5) * scale);
const buf = (data: Float32Array | Uint32Array, label: string) => whole(ctx.createBuffer(data.byteLength, label, data));
const x = buf(fill(N * C, 4), 'x');
const w = buf(fill(C), 'w');
const b = buf(fill(C), 'b');
const out = buf(new Float32Array(N * C), 'out');
const mean = buf(new Float32Array(N), 'mean');
const rstd = buf(new Float32Array(N), 'rstd');
const dx = buf(new Float32Array(N * C), 'dx');
const logits = buf(fill(N * V, 8), 'logits');
const targets = buf(Uint32Array.from({ length: N }, (_, i) => (i * 7919) % V), 'targets');
const losses = buf(new Float32Array(N), 'losses');
const sum = buf(new Float32Array(N * C), 'sum');
const rng = createRngUniform(ctx, 'rng', 1, 0);
const qkv = buf(fill(3 * C), 'qkv');
const kv = buf(fill(kvCacheElements(C, P)), 'kv');
const scores = buf(new Float32Array(NH * P), 'scores');
const attnOut = buf(new Float32Array(C), 'attn.out');
const step = createStepUniform(ctx);
writeDecodeStep(ctx, step, 0, P - 1); // the last position: every head's softmax runs over all P
// One block's gradients: ln_1, c_attn, attn.c_proj, ln_2, c_fc, mlp.c_proj (weight, bias each).
const blockSizes = [C, C, C * 3 * C, 3 * C, C * C, C, C, C, C * 4 * C, 4 * C, 4 * C * C, C];
const grads = blockSizes.map((n, k) => buf(fill(n, 0.01), `grad${k}`));
const norm = buf(new Float32Array(3), 'norm');

async function kernels(subgroups: boolean): Promise<Record<string, Dispatch[]>> {
  ctx.kernels = { ...ctx.kernels, subgroups };
  return {
    [`layernorm.forward (${N}, ${C})`]: [await layernormForward(ctx, { label: 'ln', N, C, eps: 1e-5, x, weight: w, bias: b, out, mean, rstd })],
    [`layernorm.backward_dx (${N}, ${C})`]: await layernormBackward(ctx, { label: 'ln.bwd', N, C, dout: x, x, weight: w, mean, rstd, dx }),
    // loss only: the logits stay as they are, so every repetition sees the same input
    [`crossentropy loss (${N}, ${V})`]: [await crossEntropy(ctx, { label: 'ce', N, V, targets, logits, losses, scale: 1, writeGrad: false })],
    [`residual + layernorm (${N}, ${C})`]: [
      await residualLayernorm(ctx, { label: 'rl', N, C, eps: 1e-5, a: x, b: dx, out: sum, dropout: { p: 0.1, site: 3, micro: 0, rng }, weight: w, bias: b, ln: out, mean, rstd }),
    ],
    [`decode softmax (${NH} heads, ${P} positions)`]: [await decodeAttend(ctx, { label: 'attend', C, NH, P, step, qkv, kv, scores, out: attnOut })],
    [`grad norm (one block, ${(blockSizes.reduce((p, q) => p + q, 0) / 1e6).toFixed(1)}M floats)`]: (await gradNorm(ctx, { label: 'clip', grads, norm, maxNorm: 1 })).dispatches,
  };
}
const variants = { off: await kernels(false), on: await kernels(true) };
const median = (v: number[]) => [...v].sort((p, q) => p - q)[Math.floor(v.length / 2)];
for (const name of Object.keys(variants.off)) {
  const ms: Record<'off' | 'on', number[]> = { off: [], on: [] };
  for (const k of ['off', 'on'] as const) await run(ctx, variants[k][name]); // compile and first touch
  for (let r = 0; r < rounds; r++) {
    for (const k of ['off', 'on'] as const) {
      const t0 = performance.now();
      await run(ctx, Array.from({ length: reps }, () => variants[k][name]).flat());
      ms[k].push((performance.now() - t0) / reps);
    }
  }
  const off = median(ms.off);
  const on = median(ms.on);
  console.log(`${name.padEnd(40)} off ${off.toFixed(3)} ms, on ${on.toFixed(3)} ms: subgroups ${(off / on).toFixed(2)}× (median of ${rounds} rounds of ${reps}; load ${load()})`);
}
ctx.destroy();
