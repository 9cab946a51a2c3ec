// Matmul throughput (GFLOP/s) of the engine's kernel (shaders/matmul.wgsl through
// kernels/matmul.ts) at GPT-2 124M's training shapes for B·T = 128 rows: the linear layers
// forward, their input and weight gradients, and the tied LM head over one wte range. Matmul is most of a training
// step, so a kernel change should show here first (llm.c's dev/cuda habit: a variant earns its
// place with a number).
//
//   npx tsx bench/matmul.ts [--reps N] [--tile T1[,T2…]] [--scalar] [--only SUBSTRING]
// --tile times that tiling for every shape (default: the context's choice per shape class, the
// defaults without a tuned cache); --scalar turns the vec4 loads off. With several tilings
// (`--tile 64x64x32-8x8,16x128x8-64x1-reg`) each shape times them in turn, A/B/A/B for N rounds
// in one process (a noisy machine drifts alike for all), and prints the median of each and its
// ratio to the first.
import { nodeGpu } from '../src/cli/webgpu-node.ts';
import { GpuContext } from '../src/engine/gpu/context.ts';
import { run, whole, type Dispatch } from '../src/engine/gpu/dispatch.ts';
import { matmul } from '../src/engine/kernels/matmul.ts';
import { parseTile, tileName, type MatmulTile } from '../src/engine/gpu/variants.ts';

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
const tiles: Array<MatmulTile | undefined> = tileArg > 0 ? process.argv[tileArg + 1].split(',').map(parseTile) : [undefined];
const vec4 = process.argv.includes('--scalar') ? false : undefined;
const onlyArg = process.argv.indexOf('--only');
const only = onlyArg > 0 ? process.argv[onlyArg + 1] : '';
const ctx = await GpuContext.create(await nodeGpu());
const a = ctx.adapter;
const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[xs.length >> 1];
console.log(`adapter: ${a.vendor} ${a.architecture} ${a.description}`.replace(/\s+/g, ' ').trim());
if (tiles[0]) console.log(`tile ${tiles.map((t) => tileName(t!)).join(', ')}${vec4 === false ? ', scalar loads' : ''}`);
for (const s of SHAPES) {
  if (only && !s.what.includes(only)) continue;
  const fill = (n: number) => Float32Array.from({ length: n }, (_, i) => ((i * 2654435761) % 1000) / 1000 - 0.5);
  const A = ctx.createBuffer(s.M * s.K * 4, 'A', fill(s.M * s.K));
  const B = ctx.createBuffer(s.K * s.N * 4, 'B', fill(s.K * s.N));
  const C = ctx.createBuffer(s.M * s.N * 4, 'C');
  const runs: Array<{ d: Dispatch; compile: number; warm: number; ms: number[] }> = [];
  for (const tile of tiles) {
    const tc = performance.now();
    const d = await matmul(ctx, { label: s.what, M: s.M, N: s.N, K: s.K, a: whole(A), b: whole(B), out: whole(C),
      transA: s.transA, transB: s.transB, tile, vec4 });
    const compile = performance.now() - tc;
    const t0 = performance.now();
    await run(ctx, [d]); // warm-up: first touch
    runs.push({ d, compile, warm: performance.now() - t0, ms: [] });
  }
  if (tiles.length === 1) {
    // One tiling: reps dispatches in one submission, as before.
    const t0 = performance.now();
    await run(ctx, Array(reps).fill(runs[0].d));
    runs[0].ms.push((performance.now() - t0) / reps);
  } else {
    for (let r = 0; r < reps; r++) {
      for (const x of runs) {
        const t0 = performance.now();
        await run(ctx, [x.d]);
        x.ms.push(performance.now() - t0);
      }
    }
  }
  const gflops = (ms: number) => (2 * s.M * s.N * s.K) / (ms / 1000) / 1e9;
  const base = median(runs[0].ms);
  runs.forEach((x, i) => {
    const ms = median(x.ms);
    const name = tiles[i] ? `${tileName(tiles[i]!)} ` : '';
    const ratio = tiles.length > 1 ? `, ${(base / ms).toFixed(2)}× the first` : '';
    console.log(`${s.what.padEnd(28)} (${s.M}, ${s.N}, ${s.K})${s.transA ? ' transA' : ''}${s.transB ? ' transB' : ''}: ${name}${gflops(ms).toFixed(2)} GFLOP/s, ${ms.toFixed(1)} ms${ratio} (pipeline ${x.compile.toFixed(0)} ms, first run ${x.warm.toFixed(0)} ms)`);
  });
  for (const b of [A, B, C]) b.destroy();
}
ctx.destroy();
