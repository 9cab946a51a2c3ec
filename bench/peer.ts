// The side-by-side benchmark: the studio's engine against TensorFlow.js's WebGPU backend (a GPT-2
// written in tfjs ops, bench/peer/gpt2-tfjs.ts) in one process, on one adapter, on the same
// weights (one safetensors file written here and read by both) and the same tokens.
//
// For each shape: training tokens/s (Adam: weight decay and clipping off in the engine, so both
// do the same update), forward-only tokens/s, generation tokens/s (greedy, KV cache, decode steps
// after the first token), peak GPU memory, and the per-step overhead of one training step
// (passes, dispatches, submits, pipeline and bind-group switches, CPU milliseconds to record and
// submit it; bench/counters.ts). Before anything is timed the peer's step-1 loss must equal the
// engine's within 1e-4: otherwise the two would not be doing the same work and the shape is
// reported as a mismatch. Once per run: matmul GFLOP/s of the engine's kernel against
// tf.matMul at GPT-2 124M's training shapes (B·T = 128 rows), results compared element-wise.
// End to end (tiny and gpt2-vocab): the wall time of the CLI's `train --steps 6` minus
// `train --steps 2` (same flags, a fresh --out each; the median of 5 interleaved runs of each),
// per 4·B·T tokens: what a user of the command line gets, start-up, pipeline compilation and
// the final save cancelling out. A difference within the start-up noise (half the spread of the
// `--steps 2` runs) gives no figure; where 4 steps take under a second, a longer run's
// difference is timed too.
//
//   npm run bench:peer [-- --only tiny,gpt2-vocab,gpt2-124M] [--steps N] [--profile]
//                      [--no-matmul] [--no-e2e] [--engine-only] [--no-log] [--json FILE]
//                      [--keep-models DIR] [--require-gpu] [--default-tiles] [--matmul-only]
// The engine uses the matmul tiles `npm run tune` cached for this adapter, as train does
// (--default-tiles: the defaults); --matmul-only runs the matmul comparison alone.
// Prints a table and the JSON of every number; appends the table, dated, with the commit and
// the load average, to bench/README.md unless --no-log. --profile adds the engine's time per
// kernel family for one training step of each shape (src/engine/gpu/profile.ts). --keep-models
// keeps each shape's model folder and token stream (uint16) in DIR/<shape>, for
// bench/torch_peer.py (PyTorch on the same weights and batches; bench/gpu.sh runs both).
import { execFile, execFileSync } from 'node:child_process';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeGpu } from '../src/cli/webgpu-node.ts';
import { GpuContext } from '../src/engine/gpu/context.ts';
import { run, whole } from '../src/engine/gpu/dispatch.ts';
import { profileTable } from '../src/engine/gpu/profile.ts';
import { Evaluator } from '../src/engine/eval/evaluate.ts';
import { Generator } from '../src/engine/generate/generator.ts';
import { matmul } from '../src/engine/kernels/matmul.ts';
import { kernelsRecord } from '../src/engine/gpu/variants.ts';
import { readTunedTiles, tuningFilePath } from '../src/cli/tuning-file.ts';
import { GPT2_SMALL, type GPT2Config } from '../src/engine/model/config.ts';
import { formatBytes, withTotal } from '../src/engine/train/memory.ts';
import { GpuWeights } from '../src/engine/model/weights.ts';
import { Trainer } from '../src/engine/train/trainer.ts';
import { loadModelDir, saveModelDir } from '../src/io/node-model.ts';
import { readSafetensors } from '../src/io/safetensors.ts';
import { writeLlmcTokens } from '../src/io/token-files.ts';
import { randomGpt2Params, randomTokens } from '../scripts/make-random-model.ts';
import { countDevice, type OverheadCounts } from './counters.ts';
import { TfGpt2 } from './peer/gpt2-tfjs.ts';
import { tf, tfjsGpuBytes, tfjsOnDawn, tfjsSync } from './peer/tfjs.ts';

interface Shape {
  name: string;
  config: GPT2Config;
  B: number;
  T: number;
  /** new tokens generated after an 8-token prompt */
  generate: number;
  /** also time the engine with only the top `frozenTop` blocks (and ln_f) trainable, against the FLOP-count ideal */
  frozenTop?: number;
  /** also time the CLI end to end (train --steps 6 minus --steps 2) */
  e2e?: boolean;
}

const NO_DROPOUT = { embdPdrop: 0, attnPdrop: 0, residPdrop: 0 };
const shapeConfig = (V: number, C: number, NH: number, L: number, P: number): GPT2Config => ({
  ...GPT2_SMALL, vocabSize: V, nEmbd: C, nHead: NH, nLayer: L, nInner: 4 * C, nPositions: P, bosTokenId: V - 1, eosTokenId: V - 1, ...NO_DROPOUT,
});

// The shapes of the issue that asked for this harness: (V, C, heads, layers, T, B).
const SHAPES: Shape[] = [
  { name: 'tiny', config: shapeConfig(311, 48, 3, 3, 64), B: 2, T: 37, generate: 48, e2e: true },
  { name: 'gpt2-vocab', config: shapeConfig(50257, 128, 4, 4, 1024), B: 4, T: 64, generate: 32, e2e: true },
  { name: 'gpt2-124M', config: { ...GPT2_SMALL, ...NO_DROPOUT }, B: 1, T: 128, generate: 8, frozenTop: 2 },
];

const LR = 1e-4;
const LOSS_TOLERANCE = 1e-4;
const PROMPT = 8;

interface Side {
  trainTokensPerSecond: number | null;
  forwardTokensPerSecond: number | null;
  generateTokensPerSecond: number | null;
  peakGpuBytes: number | null;
  overhead: (OverheadCounts & { cpuMs: number }) | null;
  step1Loss: number | null;
  step2Loss: number | null;
  /** batch indices trained on, in order, before generating */
  trainedBatches?: number[];
  generatedTokens?: number[];
  error?: string;
}

interface ShapeResult {
  shape: string;
  V: number; C: number; heads: number; layers: number; T: number; B: number;
  /** timed training steps */
  steps: number;
  ours: Side;
  peer: Side;
  step1LossDiff: number | null;
  step2LossDiff: number | null;
  sameGeneratedTokens: boolean | null;
  loadAverage: number[];
  profile?: string;
  frozen?: FrozenResult;
  e2e?: EndToEnd;
}

interface EndToEnd {
  /** wall seconds of `train --steps 2` and `--steps 6`, the median of E2E_REPEATS runs each */
  seconds2: number;
  seconds6: number;
  /** 4·B·T / (seconds6 − seconds2), or null when the difference is within the start-up noise */
  tokensPerSecond: number | null;
  /** half the spread (max − min) of the `--steps 2` runs: the start-up noise a difference must exceed */
  noise: number;
  /** where 4 steps are too short to stand out of that noise: `train --steps 2 + long` minus `--steps 2` */
  long?: { steps: number; seconds: number; tokensPerSecond: number | null };
}

const E2E_STEPS = [2, 6] as const;
const E2E_REPEATS = 5;
/** Seconds the extra steps of the long difference should take (by the harness's step time). */
const E2E_LONG_SECONDS = 4;

/**
 * The CLI end to end: `train --steps 6` minus `train --steps 2` over the same model folder and
 * token file, the same flags (the harness's: Adam lr, no weight decay, no clipping, dropout 0;
 * saving only at the end), each into a fresh --out; run as the user runs it, in its own process.
 */
async function endToEnd(dir: string, s: Shape, harnessMsPerStep: number): Promise<EndToEnd> {
  // Outside the model folder: train refuses an --out inside it.
  const work = await mkdtemp(join(tmpdir(), `bench-e2e-${s.name}-`));
  try {
    return await endToEndIn(dir, work, s, harnessMsPerStep);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function endToEndIn(dir: string, work: string, s: Shape, harnessMsPerStep: number): Promise<EndToEnd> {
  const c = s.config;
  const data = join(work, 'train.bin');
  // Enough windows for 6 steps without repeating one; the CLI's own shuffled order.
  await writeFile(data, writeLlmcTokens(randomTokens(8 * s.B * (s.T + 1) + 1, c.vocabSize, 11)));
  const cli = new URL('../src/cli/main.ts', import.meta.url).pathname;
  // Where 4 steps take less than a second by the harness, their difference drowns in the
  // start-up noise of a process (hundreds of ms): also time a long run whose extra steps take
  // about E2E_LONG_SECONDS, and report its difference per extra step beside the 6 − 2 one.
  const longExtra = 4 * harnessMsPerStep < 1000 ? Math.max(8, 4 * Math.ceil((E2E_LONG_SECONDS * 1000) / harnessMsPerStep / 4)) : 0;
  const stepCounts: number[] = longExtra ? [...E2E_STEPS, E2E_STEPS[0] + longExtra] : [...E2E_STEPS];
  const times: number[][] = stepCounts.map(() => []);
  // Interleaved repeats, the median of each: start-up varies by seconds on a loaded machine.
  for (let rep = 0; rep < E2E_REPEATS; rep++) for (const [i, steps] of stepCounts.entries()) {
    const out = join(work, `out-${steps}`);
    const args = [
      '--import', 'tsx', cli, 'train', '--model', dir, '--data', data, '--out', out, '--steps', String(steps),
      '--batch', String(s.B), '--seq', String(s.T), '--lr', String(LR), '--schedule', 'constant', '--weight-decay', '0', '--grad-clip', '0',
      '--dropout', '0', '--save-every', '0', '--seed', '1',
    ];
    const t0 = performance.now();
    try {
      await promisify(execFile)(process.execPath, args, { maxBuffer: 1 << 26 });
    } catch (e) {
      const err = e as { stderr?: string; message: string };
      throw new Error(`train --steps ${steps} failed: ${(err.stderr || err.message).trim().split('\n').slice(-3).join(' ')}`);
    }
    times[i].push((performance.now() - t0) / 1000);
    await rm(out, { recursive: true, force: true });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  const [seconds2, seconds6, secondsLong] = times.map(median);
  const noise = (Math.max(...times[0]) - Math.min(...times[0])) / 2;
  // A difference no larger than the noise says nothing about the steps: no figure, not a wrong one.
  const rate = (extraSteps: number, seconds: number) => (seconds - seconds2 > noise ? (extraSteps * s.B * s.T) / (seconds - seconds2) : null);
  const tokensPerSecond = rate(E2E_STEPS[1] - E2E_STEPS[0], seconds6);
  const r: EndToEnd = { seconds2, seconds6, tokensPerSecond, noise };
  if (longExtra) r.long = { steps: E2E_STEPS[0] + longExtra, seconds: secondsLong, tokensPerSecond: rate(longExtra, secondsLong) };
  const tps = (x: number | null) => (x === null ? 'within the start-up noise' : `${x.toFixed(1)} tokens/s`);
  console.log(`${s.name} end to end: train --steps 2 ${seconds2.toFixed(2)} s (± ${noise.toFixed(2)}), --steps 6 ${seconds6.toFixed(2)} s: ${tps(tokensPerSecond)}` +
    (r.long ? `; --steps ${r.long.steps} ${r.long.seconds.toFixed(2)} s: ${tps(r.long.tokensPerSecond)}` : ''));
  return r;
}

interface FrozenResult {
  /** trainable blocks, counted from the top (ln_f trains too; embeddings and the blocks below are frozen) */
  trainableTop: number;
  tokensPerSecond: number;
  msPerStep: number;
  fullMsPerStep: number;
  /** FLOPs of a full step and of the frozen one (matmuls and attention) */
  fullFlops: number;
  frozenFlops: number;
  /** the full step's time scaled by frozenFlops / fullFlops */
  idealMs: number;
  /** msPerStep / idealMs − 1 (the target is ≤ 0.15) */
  overIdeal: number;
}

/**
 * Matmul and attention FLOPs of one training step (N = B·T tokens): the forward of every block and
 * the LM head, then backward — the LM head's input gradient, wte's gradient when it trains, and
 * both gradients (input and weights) of each block from the top down to the lowest trainable
 * one. Per block forward: 2N·(3C² + C² + 4C² + 4C²) = 24NC² for the four linear layers, and
 * 4·B·T²·C for q·kᵀ and att·v; backward twice that.
 */
export function stepFlops(c: GPT2Config, B: number, T: number, trainableBlocks: number, trainsWte: boolean): number {
  const N = B * T;
  const C = c.nEmbd;
  const block = 2 * N * (4 * C * C + 2 * C * c.nInner) + 4 * B * T * T * C;
  const head = 2 * N * c.vocabSize * C;
  return c.nLayer * block + head + head + (trainsWte ? head : 0) + 2 * block * trainableBlocks;
}

/** The engine with only the top `top` blocks and ln_f trainable: time per step against the FLOP-count ideal. */
async function frozenStep(
  ctx: GpuContext, weights: GpuWeights, s: Shape, top: number, steps: number, fullTokensPerSecond: number,
  batch: (k: number) => { inputs: Uint32Array; targets: Uint32Array },
): Promise<FrozenResult> {
  const c = s.config;
  const N = s.B * s.T;
  const frozen = new Set(Array.from({ length: c.nLayer + 1 - top }, (_, g) => g)); // embeddings (0) and blocks 0 … L−top−1
  const trainer = await Trainer.create(ctx, weights, {
    batch: s.B, seq: s.T, gradAccum: 1, frozen, dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1,
    beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 0,
  });
  await trainer.step([batch(0)], () => LR); // pipelines for the frozen plan
  const t0 = performance.now();
  const pending = [];
  for (let k = 0; k < steps; k++) pending.push((await trainer.submit([batch(1 + k)], () => LR)).metrics);
  await Promise.all(pending);
  const msPerStep = (performance.now() - t0) / steps;
  trainer.destroy();
  const fullMsPerStep = (1000 * N) / fullTokensPerSecond;
  const fullFlops = stepFlops(c, s.B, s.T, c.nLayer, true);
  const frozenFlops = stepFlops(c, s.B, s.T, top, false);
  const idealMs = (fullMsPerStep * frozenFlops) / fullFlops;
  console.log(`${s.name} with the top ${top} blocks trainable: ${msPerStep.toFixed(0)} ms/step, ideal ${idealMs.toFixed(0)} ms (${frozenFlops.toExponential(2)} of ${fullFlops.toExponential(2)} FLOPs)`);
  const overIdeal = msPerStep / idealMs - 1;
  return { trainableTop: top, tokensPerSecond: (1000 * N) / msPerStep, msPerStep, fullMsPerStep, fullFlops, frozenFlops, idealMs, overIdeal };
}

function parseArgs(argv: string[]) {
  const out = { only: null as string[] | null, steps: 0, profile: false, matmul: true, e2e: true, log: true, json: '', peer: true, keepModels: '', requireGpu: false, defaultTiles: false, matmulOnly: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--only') out.only = argv[++i].split(',');
    else if (a === '--steps') out.steps = Number(argv[++i]);
    else if (a === '--profile') out.profile = true;
    else if (a === '--no-matmul') out.matmul = false;
    else if (a === '--no-e2e') out.e2e = false;
    else if (a === '--engine-only') out.peer = false;
    else if (a === '--no-log') out.log = false;
    else if (a === '--json') out.json = argv[++i];
    else if (a === '--keep-models') out.keepModels = argv[++i];
    else if (a === '--require-gpu') out.requireGpu = true;
    else if (a === '--default-tiles') out.defaultTiles = true;
    else if (a === '--matmul-only') out.matmulOnly = true;
    else throw new Error(`unknown option ${a}: use --only ${SHAPES.map((s) => s.name).join(',')} --steps N --profile --no-matmul --no-e2e --engine-only --no-log --json FILE --keep-models DIR --require-gpu --default-tiles --matmul-only`);
  }
  if (out.only) for (const n of out.only) if (!SHAPES.some((s) => s.name === n)) throw new Error(`unknown shape ${n}: ${SHAPES.map((s) => s.name).join(', ')}`);
  if (out.steps && !(Number.isInteger(out.steps) && out.steps >= 1)) throw new Error(`--steps must be a whole number ≥ 1, got ${out.steps}`);
  return out;
}

function isSoftware(ctx: GpuContext): boolean {
  const a = ctx.adapter;
  return a.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader|software/i.test(`${a.vendor} ${a.architecture} ${a.description}`);
}

const emptySide = (): Side => ({
  trainTokensPerSecond: null, forwardTokensPerSecond: null, generateTokensPerSecond: null, peakGpuBytes: null, overhead: null, step1Loss: null, step2Loss: null,
});

/** Runs `f` under validation and out-of-memory error scopes of `device`: a WebGPU error becomes an exception. */
async function scoped<T>(device: GPUDevice, f: () => Promise<T>): Promise<T> {
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let value: T | undefined;
  let thrown: unknown = null;
  try {
    value = await f();
  } catch (e) {
    thrown = e;
  }
  const validation = await device.popErrorScope();
  const oom = await device.popErrorScope();
  const gpuError = validation ?? oom;
  if (gpuError) throw new Error(`WebGPU ${validation ? 'validation' : 'out-of-memory'} error: ${gpuError.message.split('\n')[0]}`);
  if (thrown) throw thrown;
  return value as T;
}

interface ShapeOptions {
  steps: number;
  profile: boolean;
  withPeer: boolean;
  /** keep the model folder and the token stream in keepModels/<shape> (bench/torch_peer.py reads them) */
  keepModels: string;
  /** time the CLI end to end where the shape asks for it */
  e2e: boolean;
}

async function benchShape(ctx: GpuContext, peerDevice: GPUDevice, s: Shape, o: ShapeOptions): Promise<ShapeResult> {
  const { steps, profile, withPeer } = o;
  const c = s.config;
  const { B, T } = s;
  const N = B * T;
  const ours = emptySide();
  const peer = emptySide();
  const result: ShapeResult = {
    shape: s.name, V: c.vocabSize, C: c.nEmbd, heads: c.nHead, layers: c.nLayer, T, B, steps, ours, peer,
    step1LossDiff: null, step2LossDiff: null, sameGeneratedTokens: null, loadAverage: [],
  };
  // Both sides read the same file.
  const dir = o.keepModels ? join(o.keepModels, s.name) : await mkdtemp(join(tmpdir(), `bench-peer-${s.name}-`));
  try {
    await saveModelDir(dir, c, randomGpt2Params(c, 1234));
    const stream = randomTokens(N * (steps + 3) + 1, c.vocabSize, 7);
    if (o.keepModels) await writeFile(join(dir, 'tokens.bin'), stream);
    const batch = (k: number) => {
      const o = k * N;
      return { inputs: Uint32Array.from(stream.subarray(o, o + N)), targets: Uint32Array.from(stream.subarray(o + 1, o + 1 + N)) };
    };
    const prompt = Array.from(stream.subarray(0, PROMPT));

    // ---- the engine --------------------------------------------------------------------------
    const loaded = await loadModelDir(dir);
    const weights = new GpuWeights(ctx, loaded.config, loaded.params);
    loaded.params.clear();
    const trainer = await Trainer.create(ctx, weights, {
      batch: B, seq: T, gradAccum: 1, frozen: new Set(), dropout: { embd: 0, attn: 0, resid: 0 }, seed: 1,
      beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, gradClip: 0,
    });
    const lr = () => LR;
    // The batches trained on, in order: the peer (and bench/torch_peer.py) train on the same ones
    // before generating, so all sides generate from the same weights.
    const trained = (ours.trainedBatches = [0, 1, ...Array.from({ length: steps }, (_, k) => 2 + k), 2]);
    if (profile) trained.push(3);
    ours.step1Loss = (await trainer.step([batch(0)], lr)).loss;
    ours.step2Loss = (await trainer.step([batch(1)], lr)).loss;
    let t0 = performance.now();
    const pending = [];
    for (let k = 0; k < steps; k++) pending.push((await trainer.submit([batch(2 + k)], lr)).metrics);
    await Promise.all(pending);
    ours.trainTokensPerSecond = (steps * N) / ((performance.now() - t0) / 1000);
    ours.peakGpuBytes = withTotal(trainer.memory()).total;
    const counter = countDevice(ctx.device);
    counter.reset();
    t0 = performance.now();
    const sub = await trainer.submit([batch(2)], lr);
    const cpuMs = performance.now() - t0;
    await sub.metrics;
    ours.overhead = { ...counter.counts, cpuMs };
    if (profile) {
      const step = await trainer.submit([batch(3)], lr, { profile: 'auto' });
      await step.metrics;
      const p = step.profile!;
      result.profile = `engine, one training step of ${s.name} (${p.method}), time per kernel family:\n\n${profileTable(p.rows, 10)}`;
      console.log(result.profile);
    }
    trainer.destroy();
    // Forward only: the evaluator's loss pass (forward, chunked LM head, cross-entropy) over `steps` batches.
    const evaluator = await Evaluator.create(ctx, weights, { batch: B, seq: T });
    const evalTokens = stream.subarray(0, N * steps + 1);
    await evaluator.evaluate(stream.subarray(0, N + 1)); // warm-up
    const ev = await evaluator.evaluate(evalTokens);
    ours.forwardTokensPerSecond = ev.tokensPerSecond;
    evaluator.destroy();
    const generator = await Generator.create(ctx, weights);
    await generator.generate(prompt, { maxNewTokens: 2, eosTokenId: null }); // warm-up
    const gen = await generator.generate(prompt, { maxNewTokens: s.generate, eosTokenId: null });
    ours.generateTokensPerSecond = ((s.generate - 1) * 1000) / gen.decodeMs;
    ours.generatedTokens = gen.tokens;
    generator.destroy();
    if (s.frozenTop) result.frozen = await frozenStep(ctx, weights, s, s.frozenTop, steps, ours.trainTokensPerSecond, batch);
    weights.destroy();
    if (o.e2e && s.e2e) {
      try {
        result.e2e = await endToEnd(dir, s, (1000 * N) / ours.trainTokensPerSecond!);
      } catch (e) {
        console.log(`${s.name} end to end failed: ${(e as Error).message}`);
      }
    }
    console.log(`${s.name} engine: step-1 loss ${ours.step1Loss.toFixed(6)}, ${ours.trainTokensPerSecond.toFixed(1)} training tokens/s`);

    // ---- the peer ----------------------------------------------------------------------------
    if (!withPeer) {
      peer.error = 'not run (--engine-only)';
      result.loadAverage = loadavg().map((x) => Number(x.toFixed(2)));
      return result;
    }
    const file = readSafetensors(new Uint8Array(await readFile(join(dir, 'model.safetensors'))));
    const params = new Map<string, Float32Array>();
    const shapes = new Map<string, number[]>();
    for (const [name, t] of file) {
      const n = name.replace(/^transformer\./, '');
      params.set(n, t.data);
      shapes.set(n, t.shape);
    }
    let model: TfGpt2 | null = null;
    try {
      const i32 = (a: Uint32Array) => Int32Array.from(a);
      const step = async (k: number) => {
        const b = batch(k);
        const l = model!.trainStep(i32(b.inputs), i32(b.targets), B, T, LR);
        const v = (await l.data())[0];
        l.dispose();
        return v;
      };
      await scoped(peerDevice, async () => {
        model = new TfGpt2(c, params, shapes);
        peer.step1Loss = await step(0);
      });
      params.clear();
      const diff = Math.abs(peer.step1Loss! - ours.step1Loss);
      result.step1LossDiff = diff;
      if (!(diff <= LOSS_TOLERANCE)) throw new Error(`step-1 loss ${peer.step1Loss} differs from the engine's ${ours.step1Loss} by ${diff} (> ${LOSS_TOLERANCE}): not the same computation, not timed`);
      peer.step2Loss = await step(1);
      result.step2LossDiff = Math.abs(peer.step2Loss - ours.step2Loss);
      t0 = performance.now();
      const losses: tf.Scalar[] = [];
      for (let k = 0; k < steps; k++) {
        const b = batch(2 + k);
        losses.push(model!.trainStep(i32(b.inputs), i32(b.targets), B, T, LR));
      }
      for (const l of losses) await l.data();
      await tfjsSync();
      peer.trainTokensPerSecond = (steps * N) / ((performance.now() - t0) / 1000);
      for (const l of losses) l.dispose();
      const pc = countDevice(peerDevice);
      pc.reset();
      t0 = performance.now();
      const b2 = batch(2);
      const l2 = model!.trainStep(i32(b2.inputs), i32(b2.targets), B, T, LR);
      const peerCpu = performance.now() - t0;
      await l2.data();
      await tfjsSync();
      l2.dispose();
      peer.overhead = { ...pc.counts, cpuMs: peerCpu };
      peer.peakGpuBytes = tfjsGpuBytes();
      // forward only
      const fwd = (k: number) => {
        const b = batch(k);
        return model!.forwardLoss(i32(b.inputs), i32(b.targets), B, T);
      };
      const w = fwd(0);
      await w.data();
      w.dispose();
      t0 = performance.now();
      const fl: tf.Scalar[] = [];
      for (let k = 0; k < steps; k++) fl.push(fwd(k));
      for (const l of fl) await l.data();
      peer.forwardTokensPerSecond = (steps * N) / ((performance.now() - t0) / 1000);
      for (const l of fl) l.dispose();
      for (const k of ours.trainedBatches.slice(3 + steps)) await step(k); // as many updates as the engine made
      await model!.generate(prompt, 2); // warm-up
      const pg = await model!.generate(prompt, s.generate);
      peer.generateTokensPerSecond = ((s.generate - 1) * 1000) / pg.decodeMs;
      peer.generatedTokens = pg.tokens;
      result.sameGeneratedTokens = pg.tokens.length === gen.tokens.length && pg.tokens.every((t, i) => t === gen.tokens[i]);
      peer.peakGpuBytes = Math.max(peer.peakGpuBytes, tfjsGpuBytes());
    } catch (e) {
      peer.error = (e as Error).message;
      console.log(`${s.name} peer failed: ${peer.error}`);
    } finally {
      (model as TfGpt2 | null)?.dispose();
      tf.disposeVariables();
    }
  } finally {
    if (!o.keepModels) await rm(dir, { recursive: true, force: true });
  }
  result.loadAverage = loadavg().map((x) => Number(x.toFixed(2)));
  return result;
}

interface MatmulRow {
  what: string;
  M: number; N: number; K: number;
  transA: boolean; transB: boolean;
  oursGflops: number;
  peerGflops: number;
  relativeDifference: number;
}

// GPT-2 124M's training shapes for B·T = 128 rows (as bench/matmul.ts).
const MATMUL_SHAPES = [
  { what: 'c_attn forward x·W', M: 128, N: 2304, K: 768 },
  { what: 'c_fc forward x·W', M: 128, N: 3072, K: 768 },
  { what: 'mlp c_proj forward x·W', M: 128, N: 768, K: 3072 },
  { what: 'c_fc dx = dy·Wᵀ', M: 128, N: 768, K: 3072, transB: true },
  { what: 'c_fc dW = xᵀ·dy', M: 768, N: 3072, K: 128, transA: true },
  { what: 'LM head logits x·wteᵀ', M: 128, N: 32768, K: 768, transB: true },
  { what: 'LM head dwte = dlogitsᵀ·x', M: 32768, N: 768, K: 128, transA: true },
];

async function benchMatmul(ctx: GpuContext, reps: number): Promise<MatmulRow[]> {
  const rows: MatmulRow[] = [];
  for (const s of MATMUL_SHAPES) {
    const transA = !!s.transA;
    const transB = !!s.transB;
    const fill = (n: number, salt: number) => Float32Array.from({ length: n }, (_, i) => (((i + salt) * 2654435761) % 1000) / 1000 - 0.5);
    const a = fill(s.M * s.K, 1);
    const b = fill(s.K * s.N, 2);
    const flop = 2 * s.M * s.N * s.K;
    const A = ctx.createBuffer(a.byteLength, 'A', a);
    const Bf = ctx.createBuffer(b.byteLength, 'B', b);
    const C = ctx.createBuffer(s.M * s.N * 4, 'C');
    const d = await matmul(ctx, { label: s.what, M: s.M, N: s.N, K: s.K, a: whole(A), b: whole(Bf), out: whole(C), transA, transB });
    await run(ctx, [d]);
    let t0 = performance.now();
    await run(ctx, Array(reps).fill(d));
    const ours = flop / ((performance.now() - t0) / 1000 / reps) / 1e9;
    const oursC = await ctx.readF32(C, 0, s.M * s.N);
    for (const x of [A, Bf, C]) x.destroy();
    const ta = tf.tensor2d(a, transA ? [s.K, s.M] : [s.M, s.K]);
    const tb = tf.tensor2d(b, transB ? [s.N, s.K] : [s.K, s.N]);
    const warm = tf.matMul(ta, tb, transA, transB);
    const peerC = await warm.data();
    warm.dispose();
    t0 = performance.now();
    const outs = Array.from({ length: reps }, () => tf.matMul(ta, tb, transA, transB));
    await tfjsSync();
    const peer = flop / ((performance.now() - t0) / 1000 / reps) / 1e9;
    for (const o of [...outs, ta, tb]) o.dispose();
    let num = 0;
    let den = 0;
    for (let i = 0; i < oursC.length; i++) {
      num += (oursC[i] - peerC[i]) ** 2;
      den += peerC[i] ** 2;
    }
    rows.push({ what: s.what, M: s.M, N: s.N, K: s.K, transA, transB, oursGflops: ours, peerGflops: peer, relativeDifference: Math.sqrt(num / den) });
    console.log(`matmul ${s.what}: engine ${ours.toFixed(2)} GFLOP/s, tf.matMul ${peer.toFixed(2)} GFLOP/s`);
  }
  return rows;
}

const fmt = (x: number | null, digits = 1) => (x === null ? '—' : x >= 100 ? x.toFixed(0) : x.toFixed(digits));
const ratio = (a: number | null, b: number | null) => (a === null || b === null ? '—' : `${(a / b).toFixed(2)}×`);
const bytes = (b: number | null) => (b === null ? '—' : formatBytes(b));

function tables(results: ShapeResult[], mm: MatmulRow[]): string {
  const out: string[] = [];
  out.push('| shape (V, C, heads, layers, T, B) | training tok/s ours | peer | ratio | forward tok/s ours | peer | ratio | generation tok/s ours | peer | ratio | GPU memory ours | peer | step-1 loss Δ | step-2 loss Δ | same tokens | load avg |');
  out.push(`|${Array(16).fill('---').join('|')}|`);
  for (const r of results) {
    const p = r.peer;
    const failed = p.error ? `fails: ${p.error}` : null;
    out.push(`| ${[
      `${r.shape} (${r.V}, ${r.C}, ${r.heads}, ${r.layers}, ${r.T}, ${r.B})`,
      fmt(r.ours.trainTokensPerSecond, 2), failed ?? fmt(p.trainTokensPerSecond, 2), ratio(r.ours.trainTokensPerSecond, p.trainTokensPerSecond),
      fmt(r.ours.forwardTokensPerSecond), fmt(p.forwardTokensPerSecond), ratio(r.ours.forwardTokensPerSecond, p.forwardTokensPerSecond),
      fmt(r.ours.generateTokensPerSecond, 2), fmt(p.generateTokensPerSecond, 2), ratio(r.ours.generateTokensPerSecond, p.generateTokensPerSecond),
      bytes(r.ours.peakGpuBytes), bytes(p.peakGpuBytes),
      r.step1LossDiff === null ? '—' : r.step1LossDiff.toExponential(1), r.step2LossDiff === null ? '—' : r.step2LossDiff.toExponential(1),
      r.sameGeneratedTokens === null ? '—' : r.sameGeneratedTokens ? 'yes' : 'no', r.loadAverage.map((x) => x.toFixed(1)).join(', '),
    ].join(' | ')} |`);
  }
  out.push('');
  out.push('Overhead of one training step (CPU ms: recording and submitting it):');
  out.push('');
  out.push('| shape | side | passes | dispatches | submits | command buffers | queue writes | pipeline switches | bind-group switches | CPU ms |');
  out.push(`|${Array(10).fill('---').join('|')}|`);
  for (const r of results) {
    for (const [side, v] of [['engine', r.ours], ['TF.js', r.peer]] as const) {
      const o = v.overhead;
      if (!o) continue;
      out.push(`| ${r.shape} | ${side} | ${o.passes} | ${o.dispatches} | ${o.submits} | ${o.commandBuffers} | ${o.writes} | ${o.pipelineSwitches} | ${o.bindGroupSwitches} | ${o.cpuMs.toFixed(1)} |`);
    }
  }
  const e2e = results.filter((r) => r.e2e);
  if (e2e.length) {
    out.push('');
    out.push(`End to end: the CLI's \`train --steps 6\` minus \`train --steps 2\` (same flags, a fresh --out each; median of ${E2E_REPEATS} ` +
      'interleaved runs each), per 4·B·T tokens, beside the harness. "± noise" is half the spread of the `--steps 2` runs; a difference ' +
      'within it gives no figure. Where 4 steps take under a second, a longer run\'s difference (`--steps 2+n` minus `--steps 2`, per ' +
      'n·B·T tokens) is shown too:');
    out.push('');
    out.push('| shape | train --steps 2 s (± noise) | --steps 6 s | end-to-end tok/s ours | longer run: steps, s, tok/s | harness tok/s ours | ' +
      'peer tok/s (harness) | end-to-end ratio to peer (6 − 2; longer) | load avg |');
    out.push(`|${Array(9).fill('---').join('|')}|`);
    for (const r of e2e) {
      const x = r.e2e!;
      const peerTps = r.peer.error ? null : r.peer.trainTokensPerSecond;
      const tps = (v: number | null) => (v === null ? 'within noise' : fmt(v, 2));
      const long = x.long ? `${x.long.steps}, ${x.long.seconds.toFixed(2)}, ${tps(x.long.tokensPerSecond)}` : '—';
      const ratios = [x.tokensPerSecond, ...(x.long ? [x.long.tokensPerSecond] : [])].map((v) => (v === null ? '—' : ratio(v, peerTps))).join('; ');
      out.push(`| ${r.shape} | ${x.seconds2.toFixed(2)} (± ${x.noise.toFixed(2)}) | ${x.seconds6.toFixed(2)} | ${tps(x.tokensPerSecond)} | ${long} | ` +
        `${fmt(r.ours.trainTokensPerSecond, 2)} | ${fmt(peerTps, 2)} | ${ratios} | ${r.loadAverage.map((v) => v.toFixed(1)).join(', ')} |`);
    }
  }
  const frozen = results.filter((r) => r.frozen);
  if (frozen.length) {
    out.push('');
    out.push('| shape, trainable | ms/step | full step ms | FLOPs frozen / full | ideal ms (full × FLOP ratio) | over ideal |');
    out.push('|---|---|---|---|---|---|');
    for (const r of frozen) {
      const f = r.frozen!;
      out.push(`| ${r.shape}, top ${f.trainableTop} blocks + ln_f | ${f.msPerStep.toFixed(0)} | ${f.fullMsPerStep.toFixed(0)} | ${(f.frozenFlops / f.fullFlops).toFixed(3)} | ${f.idealMs.toFixed(0)} | ${(100 * f.overIdeal).toFixed(1)}% |`);
    }
  }
  if (mm.length) {
    out.push('');
    out.push('| matmul at GPT-2 124M training shapes (M, N, K) | engine GFLOP/s | tf.matMul GFLOP/s | ratio | ‖Δ‖/‖C‖ |');
    out.push('|---|---|---|---|---|');
    for (const m of mm) {
      out.push(`| ${m.what} (${m.M}, ${m.N}, ${m.K}) | ${m.oursGflops.toFixed(2)} | ${m.peerGflops.toFixed(2)} | ${(m.oursGflops / m.peerGflops).toFixed(2)}× | ${m.relativeDifference.toExponential(1)} |`);
    }
    const geo = (f: (m: MatmulRow) => number) => Math.exp(mm.reduce((a, m) => a + Math.log(f(m)), 0) / mm.length);
    out.push(`| geometric mean | ${geo((m) => m.oursGflops).toFixed(2)} | ${geo((m) => m.peerGflops).toFixed(2)} | ${(geo((m) => m.oursGflops) / geo((m) => m.peerGflops)).toFixed(2)}× | |`);
  }
  return out.join('\n');
}

const args = parseArgs(process.argv.slice(2));
const gpu = await nodeGpu();
const ctx = await GpuContext.create(gpu);
const peerDevice = await tfjsOnDawn(gpu);
const software = isSoftware(ctx);
const a = ctx.adapter;
const adapter = `${a.vendor} ${a.architecture} ${a.description}`.replace(/\s+/g, ' ').trim();
if (software && args.requireGpu) {
  console.error(`bench:peer --require-gpu: Dawn found only a software adapter (${adapter}); install the GPU's Vulkan driver or set VK_ICD_FILENAMES to its manifest.`);
  process.exit(1);
}
const steps = args.steps || (software ? 3 : 20);
// The matmul tiles a training run on this adapter uses (train reads the same cache): the tuned
// ones from `npm run tune`, else the defaults; --default-tiles ignores the cache.
const tuned = args.defaultTiles ? null : await readTunedTiles(ctx.adapter, (l) => console.error(l));
if (tuned) ctx.kernels.matmul = tuned;
const tiles = tuned ? `tuned (${tuningFilePath()})` : 'defaults';
console.log(`matmul tiles: ${tiles}${tuned ? `: ${Object.entries(kernelsRecord(ctx.kernels).matmul ?? {}).map(([c, t]) => `${c} ${t}`).join(', ')}` : ''}`);
console.log(`adapter: ${adapter}${software ? ' (software adapter)' : ''}; engine and TensorFlow.js ${tf.version_core} (webgpu) on it; ${steps} timed steps`);
const results: ShapeResult[] = [];
for (const s of SHAPES) {
  if (args.matmulOnly || (args.only && !args.only.includes(s.name))) continue;
  // The full GPT-2 124M on a software adapter: fewer timed steps (about half a minute each).
  const shapeSteps = s.name === 'gpt2-124M' && software && !args.steps ? 1 : steps;
  const o = { steps: shapeSteps, profile: args.profile, withPeer: args.peer, keepModels: args.keepModels, e2e: args.e2e };
  results.push(await benchShape(ctx, peerDevice, s, o));
}
const mm = args.matmul ? await benchMatmul(ctx, software ? 3 : 20) : [];
const table = tables(results, mm);
const when = new Date().toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
let commit = 'unknown commit';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
} catch {
  // not a git checkout
}
const json = { when, commit, adapter, software, steps, loadAverage: loadavg(), kernels: kernelsRecord(ctx.kernels), shapes: results, matmul: mm };
console.log(`\n${table}\n`);
console.log(JSON.stringify(json, null, 1));
if (args.json) await writeFile(args.json, `${JSON.stringify(json, null, 1)}\n`);
if (args.log) {
  const notes = [
    `commit ${commit}; load average ${loadavg().map((x) => x.toFixed(1)).join(', ')} (1, 5, 15 min) at the end, per shape in the table: other work on the same CPU slows a software adapter`,
    `adapter: ${adapter}${software ? ' (a software adapter)' : ''}; TensorFlow.js ${tf.version_core} WebGPU backend on the same adapter`,
    `matmul tiles: ${tiles}${tuned ? ` (${Object.entries(kernelsRecord(ctx.kernels).matmul ?? {}).map(([c, t]) => `${c} ${t}`).join(', ')})` : ''}`,
    `${steps} timed training steps after two untimed ones (GPT-2 124M on a software adapter: 1); Adam lr ${LR}, no weight decay, no clipping, dropout 0; random HF-initialized weights from one safetensors file, uniform random tokens`,
  ];
  const profiles = results.filter((r) => r.profile).map((r) => `\n${r.profile}\n`).join('');
  await appendFile(new URL('./README.md', import.meta.url), `\n### ${when} — engine vs TensorFlow.js (bench:peer)\n\n${notes.map((n) => `- ${n}`).join('\n')}\n\n${table}\n${profiles}`);
  console.log('\nappended to bench/README.md');
}
tf.engine().reset();
ctx.destroy();
