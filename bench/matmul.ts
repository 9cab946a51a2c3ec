// Matmul throughput (GFLOP/s) of the engine's kernel (shaders/matmul.wgsl through
// kernels/matmul.ts) at GPT-2 124M's training shapes for B·T = 128 rows: the linear layers
// forward, their input and weight gradients, and the tied LM head over one wte range. Matmul is most of a training
// step, so a kernel change should show here first (llm.c's dev/cuda habit: a variant earns its
// place with a number).
//
//   npx tsx bench/matmul.ts [--reps N] [--tile BMxBNxBK-TXxTY] [--scalar] [--only SUBSTRING]
// --tile times that tiling for every shape (default: the context's choice per shape class, the
// defaults without a tuned cache); --scalar turns the vec4 loads off.
import { nodeGpu } from '../src/cli/webgpu-node.ts';
import { GpuContext } from '../src/engine/gpu/context.ts';
import { run, whole } from '../src/engine/gpu/dispatch.ts';
import { matmul } from '../src/engine/kernels/matmul.ts';
import { parseTile, tileName } from '../src/engine/gpu/variants.ts';

const N = 128;
const SHAPES: Array<{ what: string; M: number; N: number; K: number; transA?: boolean; transB?: boolean }> = [
  { what: 'c_attn forward x·W', M: N, N: 2304, K: 768 },
  { what: 'c_fc forward x·W', M: N, N: 3072, K: 768 },
  { what: 'mlp c_proj forward x·W', M: N, N: 768, K: 3072 },
  { what: 'c_fc dx = dy·Wᵀ', M: N, N: 768, K: 3072, transB: true },
  { what: 'c_fc dW = xᵀ·dy', M: 768, N: 3072, K: N, transA: true },
  // wte (147 MiB) is bound in ranges of at most 128 MiB; one range of 32768 rows here
  { what: 'LM head logits x·wteᵀ', M: N, N: 32768, K: 768, transB: true },
  { what: 'LM head dwte = dlogitsᵀ·x', M: 32768, N: 768, K: N, transA: true },
];

const repsArg = process.argv.indexOf('--reps');
const reps = repsArg > 0 ? Number(process.argv[repsArg + 1]) : 3;
const tileArg = process.argv.indexOf('--tile');
const tile = tileArg > 0 ? parseTile(process.argv[tileArg + 1]) : undefined;
const vec4 = process.argv.includes('--scalar') ? false : undefined;
const onlyArg = process.argv.indexOf('--only');
const only = onlyArg > 0 ? process.argv[onlyArg + 1] : '';
const ctx = await GpuContext.create(await nodeGpu());
const a = ctx.adapter;
console.log(`adapter: ${a.vendor} ${a.architecture} ${a.description}`.replace(/\s+/g, ' ').trim());
if (tile) console.log(`tile ${tileName(tile)}${vec4 === false ? ', scalar loads' : ''}`);
for (const s of SHAPES) {
  if (only && !s.what.includes(only)) continue;
  const fill = (n: number) => Float32Array.from({ length: n }, (_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  const A = ctx.createBuffer(s.M * s.K * 4, 'A', fill(s.M * s.K));
  const B = ctx.createBuffer(s.K * s.N * 4, 'B', fill(s.K * s.N));
  const C = ctx.createBuffer(s.M * s.N * 4, 'C');
  const tc = performance.now();
  const d = await matmul(ctx, { label: s.what, M: s.M, N: s.N, K: s.K, a: whole(A), b: whole(B), out: whole(C),
    transA: s.transA, transB: s.transB, tile, vec4 });
  const compile = performance.now() - tc;
  let t0 = performance.now();
  await run(ctx, [d]); // warm-up: first touch
  const warm = performance.now() - t0;
  t0 = performance.now();
  await run(ctx, Array(reps).fill(d));
  const seconds = (performance.now() - t0) / 1000 / reps;
  console.log(`${s.what.padEnd(28)} (${s.M}, ${s.N}, ${s.K})${s.transA ? ' transA' : ''}${s.transB ? ' transB' : ''}: ${(2 * s.M * s.N * s.K / seconds / 1e9).toFixed(2)} GFLOP/s, ${(1000 * seconds).toFixed(1)} ms (pipeline ${compile.toFixed(0)} ms, first run ${warm.toFixed(0)} ms)`);
  for (const b of [A, B, C]) b.destroy();
}
ctx.destroy();
