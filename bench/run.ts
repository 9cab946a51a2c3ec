// The training benchmark: tokens/s and GPU memory by category for named configurations, on the
// adapter Dawn finds (`npm run bench`). Not a test: absolute times on a shared machine without a
// GPU say little; compare rows of one run, or runs on one machine.
//
// Configurations: a tiny model (the golden test shape); distilgpt2's shape (V=50257, C=768,
// 6 layers, 12 heads); GPT-2 124M's shape (12 layers) trained fully, and with the embeddings and
// 10 of its 12 blocks frozen, and with LoRA adapters (r 8 on c_attn, c_proj, c_fc) on the same
// layer count as the full run, so the two rows compare memory and time per step. On a software adapter (Mesa lavapipe, SwiftShader: a few GFLOP/s)
// the full 124M configuration runs with fewer layers and every configuration with a short
// sequence; the table says so. Weights are random (Hugging Face's initialization,
// scripts/make-random-model.ts), tokens uniform; warm-up steps (pipeline compilation, first
// touches) are excluded from the timing.
//
//   npm run bench [-- --only tiny,distilgpt2] [--steps N] [--warmup N] [--batch B] [--seq T]
//                 [--full-depth] [--precision f32,f16] [--no-log]
// --full-depth runs every configuration with all its layers even on a software adapter.
// --precision runs every configuration in each listed precision (default f32), one after the
// other in this process, and prints the f16 / f32 ratios of tokens/s and memory per configuration
// (f16 needs the adapter's shader-f16: docs/ARCHITECTURE.md, Mixed precision).
// Prints a table and appends it, dated, to bench/README.md (unless --no-log).
import { execFileSync } from 'node:child_process';
import { appendFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { nodeGpu } from '../src/cli/webgpu-node.ts';
import { GpuContext } from '../src/engine/gpu/context.ts';
import { GPT2_SMALL, type GPT2Config } from '../src/engine/model/config.ts';
import { estimateMemory, formatBytes, memoryLimitsOf, withTotal, type MemoryBreakdown } from '../src/engine/train/memory.ts';
import { countParams } from '../src/engine/model/params.ts';
import { GpuWeights, type Precision } from '../src/engine/model/weights.ts';
import { Trainer } from '../src/engine/train/trainer.ts';
import { initLoraParams, LoraWeights, type LoraConfig } from '../src/engine/model/lora.ts';
import { randomGpt2Params, randomTokens } from '../scripts/make-random-model.ts';

interface BenchConfig {
  name: string;
  config: GPT2Config;
  /** layers to run on a software adapter instead of config.nLayer (undefined: all) */
  softwareLayers?: number;
  /** depth groups to freeze, given the layer count actually run */
  frozen: (L: number) => number[];
  /** what trains, in words */
  trains: string;
  /** LoRA adapters instead of full fine-tuning */
  lora?: LoraConfig;
}

const NO_DROPOUT = { embdPdrop: 0, attnPdrop: 0, residPdrop: 0 };
const DISTILGPT2: GPT2Config = { ...GPT2_SMALL, nLayer: 6, ...NO_DROPOUT };
const GPT2: GPT2Config = { ...GPT2_SMALL, ...NO_DROPOUT };
const TINY: GPT2Config = { ...GPT2_SMALL, vocabSize: 311, nPositions: 64, nEmbd: 48, nLayer: 2, nHead: 4, nInner: 192, bosTokenId: 310,
  eosTokenId: 310, ...NO_DROPOUT };

const CONFIGS: BenchConfig[] = [
  { name: 'tiny', config: TINY, frozen: () => [], trains: 'all' },
  { name: 'distilgpt2', config: DISTILGPT2, frozen: () => [], trains: 'all' },
  { name: 'gpt2-124M', config: GPT2, softwareLayers: 4, frozen: () => [], trains: 'all' },
  {
    name: 'gpt2-124M-lora', config: GPT2, softwareLayers: 4, frozen: () => [], trains: 'LoRA r=8 on c_attn, c_proj, c_fc',
    lora: { r: 8, alpha: 16, dropout: 0, targets: ['c_attn', 'c_proj', 'c_fc'], rslora: false },
  },
  // embeddings (group 0) and blocks 0-9 (groups 1-10): blocks 10-11 and ln_f train
  { name: 'gpt2-124M-frozen10', config: GPT2, frozen: () => Array.from({ length: 11 }, (_, g) => g), trains: 'blocks 10-11, ln_f' },
];

interface Row {
  name: string;
  precision: Precision;
  layers: string;
  trains: string;
  B: number;
  T: number;
  tokensPerSecond: number;
  msPerStep: number;
  memory: MemoryBreakdown;
  estimate: MemoryBreakdown;
  params: number;
}

function isSoftware(ctx: GpuContext): boolean {
  const a = ctx.adapter;
  return a.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader|software/i.test(`${a.vendor} ${a.architecture} ${a.description}`);
}

function parseArgs(argv: string[]) {
  const out = { only: null as string[] | null, steps: 0, warmup: 0, batch: 0, seq: 0, fullDepth: false, log: true, precisions: ['f32'] as Precision[] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') out.only = argv[++i].split(',');
    else if (a === '--steps') out.steps = Number(argv[++i]);
    else if (a === '--warmup') out.warmup = Number(argv[++i]);
    else if (a === '--batch') out.batch = Number(argv[++i]);
    else if (a === '--seq') out.seq = Number(argv[++i]);
    else if (a === '--full-depth') out.fullDepth = true;
    else if (a === '--no-log') out.log = false;
    else if (a === '--precision') {
      out.precisions = argv[++i].split(',') as Precision[];
      for (const p of out.precisions) if (p !== 'f32' && p !== 'f16') throw new Error(`unknown precision ${p}: use f32, f16 or f32,f16`);
    } else throw new Error(`unknown option ${a}: use --only a,b --steps N --warmup N --batch B --seq T --full-depth --precision f32,f16 --no-log`);
  }
  if (out.only) for (const n of out.only) if (!CONFIGS.some((c) => c.name === n)) throw new Error(`unknown configuration ${n}: ${CONFIGS.map((c) => c.name).join(', ')}`);
  return out;
}

async function bench(
  ctx: GpuContext, bc: BenchConfig, reduce: boolean, B: number, T: number, warmup: number, steps: number, precision: Precision,
): Promise<Row> {
  const L = reduce && bc.softwareLayers ? bc.softwareLayers : bc.config.nLayer;
  const config = { ...bc.config, nLayer: L };
  const frozen = bc.frozen(L);
  const opts = { batch: B, seq: T, gradAccum: 1, frozen, precision, ...(bc.lora ? { lora: bc.lora } : {}) };
  const estimate = estimateMemory(config, opts, memoryLimitsOf(ctx));
  const weights = new GpuWeights(ctx, config, randomGpt2Params(config, 1234));
  const lora = bc.lora ? new LoraWeights(ctx, config, bc.lora, initLoraParams(config, bc.lora, 5)) : undefined;
  const trainer = await Trainer.create(ctx, weights, {
    ...opts, frozen: new Set(frozen), lora, dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1,
    beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClip: 1,
  });
  const memory = withTotal(trainer.memory());
  const stream = randomTokens(B * T * (warmup + steps) + 1, config.vocabSize, 7);
  const batch = (s: number) => {
    const o = s * B * T;
    return [{ inputs: Uint32Array.from(stream.subarray(o, o + B * T)), targets: Uint32Array.from(stream.subarray(o + 1, o + 1 + B * T)) }];
  };
  for (let s = 0; s < warmup; s++) await trainer.step(batch(s), () => 1e-4);
  const t0 = performance.now();
  const pending = [];
  for (let s = 0; s < steps; s++) pending.push((await trainer.submit(batch(warmup + s), () => 1e-4)).metrics);
  await Promise.all(pending);
  const seconds = (performance.now() - t0) / 1000;
  trainer.destroy();
  lora?.destroy();
  weights.destroy();
  return {
    name: bc.name,
    precision,
    layers: L === bc.config.nLayer ? String(L) : `${L} of ${bc.config.nLayer}`,
    trains: bc.trains,
    B, T,
    tokensPerSecond: (steps * B * T) / seconds,
    msPerStep: (1000 * seconds) / steps,
    memory, estimate,
    params: countParams(config),
  };
}

function table(rows: Row[]): string {
  const mib = (b: number) => (b / 2 ** 20).toFixed(1);
  const head = ['configuration', 'precision', 'layers', 'trains', 'B×T', 'tokens/s', 'ms/step', 'params', 'parameters MiB', 'gradients MiB', 'optimizer MiB', 'activations MiB', 'scratch MiB', 'total', 'estimate'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const m = r.memory;
    lines.push(`| ${[
      r.name, r.precision, r.layers, r.trains, `${r.B}×${r.T}`, r.tokensPerSecond.toFixed(r.tokensPerSecond < 100 ? 2 : 0), r.msPerStep.toFixed(0),
      `${(r.params / 1e6).toFixed(1)}M`, mib(m.parameters), mib(m.gradients), mib(m.optimizer), mib(m.activations), mib(m.scratch), formatBytes(m.total),
      m.total === r.estimate.total ? 'equal' : `${formatBytes(r.estimate.total)}`,
    ].join(' | ')} |`);
  }
  // f16 against f32 of the same configuration, measured one after the other in this process.
  for (const r of rows.filter((x) => x.precision === 'f16')) {
    const base = rows.find((x) => x.name === r.name && x.precision === 'f32');
    if (!base) continue;
    lines.push('', `${r.name}: f16 / f32 tokens/s ${(r.tokensPerSecond / base.tokensPerSecond).toFixed(3)}×, GPU memory ${(r.memory.total / base.memory.total).toFixed(3)}× ` +
      `(${formatBytes(r.memory.total)} vs ${formatBytes(base.memory.total)}; parameters ${formatBytes(r.memory.parameters)} vs ${formatBytes(base.memory.parameters)})`);
  }
  return lines.join('\n');
}

const args = parseArgs(process.argv.slice(2));
const ctx = await GpuContext.create(await nodeGpu());
const software = isSoftware(ctx);
const a = ctx.adapter;
const adapter = `${a.vendor} ${a.architecture} ${a.description}`.replace(/\s+/g, ' ').trim();
// A software adapter does a few GFLOP/s: short sequences, one warm-up and two timed steps.
const B = args.batch || (software ? 1 : 4);
const T = args.seq || (software ? 64 : 512);
const reduce = software && !args.fullDepth;
const warmup = args.warmup || (software ? 1 : 3);
const steps = args.steps || (software ? 2 : 10);
const shape = `B×T = ${B}×${T}${reduce ? ', fewer layers where noted' : ''}`;
console.log(`adapter: ${adapter}${software ? ' (software adapter)' : ''}; ${shape}; max storage binding ${formatBytes(ctx.maxBinding)}`);
const rows: Row[] = [];
for (const bc of CONFIGS) {
  if (args.only && !args.only.includes(bc.name)) continue;
  for (const precision of args.precisions) {
    const t = performance.now();
    const row = await bench(ctx, bc, reduce, B, Math.min(bc.config.nPositions, T), warmup, steps, precision);
    rows.push(row);
    console.log(`${bc.name} ${precision}: ${row.tokensPerSecond.toFixed(1)} tokens/s, ${row.msPerStep.toFixed(0)} ms/step, GPU memory ${formatBytes(row.memory.total)} ` +
      `(${((performance.now() - t) / 1000).toFixed(0)} s with setup and warm-up; load average ${loadavg()[0].toFixed(1)})`);
  }
}
const t = table(rows);
console.log(`\n${t}`);
if (args.log) {
  const when = new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  let commit = 'unknown commit';
  try {
    commit = `commit ${execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim()}`;
  } catch {
    // not a git checkout
  }
  const notes = [
    `${commit}; machine load average ${loadavg().map((x) => x.toFixed(1)).join(', ')} (1, 5, 15 min) at the end: other work on the same CPU slows a software adapter`,
    `adapter: ${adapter}${software ? ' (a software adapter)' : ''}; ${shape}${reduce ? ' (GPT-2 124M full: 4 of its 12 layers)' : ''}`,
    `${warmup} warm-up step(s) excluded, ${steps} timed; random HF-initialized weights, uniform random tokens, dropout 0, AdamW with clipping; memory from Trainer.memory() ("estimate": estimateMemory before allocating, "equal" when identical)`,
  ];
  await appendFile(new URL('./README.md', import.meta.url), `\n### ${when}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n\n${t}\n`);
  console.log('\nappended to bench/README.md');
}
ctx.destroy();
