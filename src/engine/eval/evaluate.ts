// Held-out evaluation over EVERY window of a token stream (not a sample): mean cross-entropy,
// perplexity = exp(mean loss), and next-token top-1 accuracy.
//
// Windows are the training windows (docs/ARCHITECTURE.md, Windows): N tokens give W = ⌊(N−1)/T⌋
// windows, window w has inputs tokens[w·T .. w·T+T) and targets tokens[w·T+1 .. w·T+T], so each
// window scores T targets. (Hugging Face's `labels=input_ids` scores T−1 positions of a T-token
// block instead; compare perplexities only on the same targets.) The N − 1 − W·T tokens after the
// last window are nobody's target, as in training.
//
// Streaming and memory-bounded: windows go through the GPU in fixed (B, T) batches (the last
// batch padded with IGNORE_TARGET rows, which add loss 0 and are not counted), through the
// training forward (model/graph.ts buildForward) and the chunked LM head without gradient
// (buildHead(..., backward = false)), with a row argmax of each logits chunk (shaders/argmax.wgsl)
// before the next chunk overwrites it. Per batch only the B·T losses and argmax ids come back;
// they are summed on the CPU in float64. Two batches are in flight, so the GPU does not wait for
// the readback. Dropout is off (evaluation mode).
import { NonFiniteLossError, ShapeError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { encode, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';
import { argmaxRows } from '../kernels/argmax.ts';
import { IGNORE_TARGET } from '../kernels/crossentropy.ts';
import { createRngUniform } from '../kernels/dropout.ts';
import { TokenOutOfRangeError } from '../kernels/embedding.ts';
import { Activations, rows } from '../model/activations.ts';
import { buildForward, buildHead } from '../model/graph.ts';
import { LoraActivations, type LoraWeights } from '../model/lora.ts';
import type { GpuWeights } from '../model/weights.ts';
import { NotEnoughTokensError, windowCount } from '../windows.ts';
import { tokensPerSecond } from '../throughput.ts';
import { perplexity } from './metrics.ts';

export interface EvaluatorOptions {
  /** rows per batch (B) */
  batch: number;
  /** tokens per window (T ≤ n_positions) */
  seq: number;
  /** LoRA weights over the weights (evaluated with their dropout off); absent = the weights alone */
  lora?: LoraWeights;
}

export interface EvalProgress {
  windowsDone: number;
  windows: number;
}

export interface EvalRunOptions {
  onProgress?(p: EvalProgress): void;
  signal?: AbortSignal;
}

export interface EvalResult {
  /** mean cross-entropy (nats) over every scored target */
  loss: number;
  /** exp(loss) */
  perplexity: number;
  /** fraction of targets that are the argmax of their logits (ties → lowest id) */
  accuracy: number;
  /** W = ⌊(N−1)/T⌋ windows, all scored */
  windows: number;
  /** targets scored: W·T */
  tokens: number;
  /** targets predicted correctly (top-1) */
  correct: number;
  /** (B, T) batches run; the last one holds W mod B windows when B does not divide W */
  batches: number;
  batch: number;
  seq: number;
  /** tokens of the stream that no window scores: N − 1 − W·T */
  unscored: number;
  /** wall time of the pass */
  ms: number;
  tokensPerSecond: number;
}

interface Slot {
  staging: GPUBuffer; // (2·B·T) words: losses (f32) then argmax ids (u32)
  targets: Uint32Array; // (B·T) the targets of the batch in flight
  valid: number; // rows·T targets that count
  pending: Promise<void> | null;
}

export class Evaluator {
  readonly ctx: GpuContext;
  readonly weights: GpuWeights;
  readonly B: number;
  readonly T: number;
  private readonly acts: Activations;
  private readonly loraActs: LoraActivations | null;
  private readonly buffers: GPUBuffer[] = [];
  private readonly tokensIn: BufferRange; // (B·T) u32
  private readonly targetsIn: BufferRange; // (B·T rounded up to 64) u32
  private readonly argmaxOut: BufferRange; // (B·T rounded up to 64) u32
  private readonly slots: Slot[] = [];
  private dispatches: Dispatch[] = [];

  private constructor(ctx: GpuContext, weights: GpuWeights, opts: EvaluatorOptions) {
    const c = weights.config;
    const { batch: B, seq: T } = opts;
    if (!(Number.isInteger(B) && B >= 1)) throw new ShapeError(`Evaluation batch must be a whole number ≥ 1, got ${B}.`);
    if (!(Number.isInteger(T) && T >= 1)) throw new ShapeError(`Evaluation sequence length must be a whole number ≥ 1, got ${T}.`);
    if (T > c.nPositions) throw new ShapeError(`Evaluation sequence length ${T} exceeds the model's n_positions ${c.nPositions}; use ${c.nPositions} or less.`);
    this.ctx = ctx;
    this.weights = weights;
    this.B = B;
    this.T = T;
    const N = B * T;
    this.acts = new Activations(ctx, c, B, T, false);
    this.loraActs = opts.lora ? new LoraActivations(ctx, opts.lora, B, T, false) : null;
    const u32 = (label: string, count: number): BufferRange => {
      const buffer = ctx.createBuffer(count * 4, label);
      this.buffers.push(buffer);
      return { buffer, offset: 0, size: count * 4 };
    };
    // Padded to whole 64-row chunks: the head binds chunk ranges of these at 64-row offsets.
    const padded = Math.ceil(N / 64) * 64;
    this.tokensIn = u32('eval.tokens', N);
    this.targetsIn = u32('eval.targets', padded);
    this.argmaxOut = u32('eval.argmax', padded);
    for (let i = 0; i < 2; i++) {
      const staging = ctx.device.createBuffer({ size: 2 * N * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: `eval.staging${i}` });
      this.buffers.push(staging);
      this.slots.push({ staging, targets: new Uint32Array(N), valid: 0, pending: null });
    }
  }

  static async create(ctx: GpuContext, weights: GpuWeights, opts: EvaluatorOptions): Promise<Evaluator> {
    const e = new Evaluator(ctx, weights, opts);
    await e.build(opts.lora);
    return e;
  }

  /** GPU bytes held besides the weights. */
  get bytes(): number {
    const a = this.acts.bytes;
    const l = this.loraActs?.bytes;
    return a.activations + a.scratch + (l ? l.activations + l.scratch : 0) + this.buffers.reduce((s, b) => s + b.size, 0);
  }

  private async build(lora: LoraWeights | undefined): Promise<void> {
    const { ctx, weights, acts } = this;
    const c = weights.config;
    const rng = createRngUniform(ctx, 'eval.rng');
    this.buffers.push(rng);
    // Forward-only LoRA buffers carry no dropout scratch, so LoRA dropout is off (model/lora.ts).
    const loraGraph = lora && this.loraActs ? { weights: lora, acts: this.loraActs } : undefined;
    const g = { ctx, config: c, weights, acts, micro: 0, dropout: { embd: 0, attn: 0, resid: 0 }, rng, grad: () => undefined, lora: loraGraph };
    const inp = { tokens: this.tokensIn, targets: this.targetsIn, buckets: this.tokensIn }; // buckets: backward only
    const forward = await buildForward(g, inp);
    // Without backward the cross-entropy leaves each chunk's logits unchanged: its argmax goes
    // right after it, before the next chunk overwrites them.
    const V = c.vocabSize;
    const head = await buildHead(g, this.targetsIn, false, 1, {
      afterChunkLoss: async (k, r0, n) => [
        await argmaxRows(ctx, { label: `head${k}.argmax`, N: n, V, logits: rows(acts.logits, 0, n * V), out: rows(this.argmaxOut, r0, n) }),
      ],
    });
    this.dispatches = [...forward, ...head];
  }

  /** Loss, perplexity and top-1 accuracy over every window of `tokens` (N,). */
  async evaluate(tokens: ArrayLike<number>, run: EvalRunOptions = {}): Promise<EvalResult> {
    const { ctx, B, T } = this;
    const V = this.weights.config.vocabSize;
    const W = windowCount(tokens.length, T);
    if (W < 1) {
      throw new NotEnoughTokensError(`The evaluation data has ${tokens.length} tokens; one window of ${T} targets needs ${T + 1}. Add held-out text or lower the sequence length.`);
    }
    const N = B * T;
    const batches = Math.ceil(W / B);
    const inputs = new Uint32Array(N); // (B, T)
    let lossSum = 0; // float64 sum of the f32 per-target losses
    let correct = 0;
    const t0 = performance.now();

    const collect = async (slot: Slot) => {
      await slot.staging.mapAsync(GPUMapMode.READ);
      const words = slot.staging.getMappedRange();
      const losses = new Float32Array(words, 0, N);
      const argmax = new Uint32Array(words, N * 4, N);
      let s = 0;
      for (let i = 0; i < slot.valid; i++) s += losses[i];
      lossSum += s;
      for (let i = 0; i < slot.valid; i++) if (argmax[i] === slot.targets[i]) correct++;
      slot.staging.unmap();
    };

    let inFlight: Slot[] = [];
    try {
      for (let b = 0; b < batches; b++) {
        if (run.signal?.aborted) throw new DOMException('Evaluation aborted.', 'AbortError');
        if (ctx.lost) throw ctx.lost;
        const slot = this.slots[b % 2];
        if (inFlight.length === 2) {
          await collect(inFlight.shift()!);
          run.onProgress?.({ windowsDone: Math.min(W, (b - 1) * B), windows: W });
        }
        const rowsValid = Math.min(B, W - b * B);
        for (let r = 0; r < B; r++) {
          const o = r * T;
          if (r >= rowsValid) {
            inputs.fill(0, o, o + T);
            slot.targets.fill(IGNORE_TARGET, o, o + T);
            continue;
          }
          const base = (b * B + r) * T;
          for (let t = 0; t <= T; t++) {
            const id = tokens[base + t];
            if (!(id >= 0 && id < V)) {
              throw new TokenOutOfRangeError(`Evaluation token ${base + t} is ${id}, outside the model's vocabulary of ${V}; tokenize the data with this model's tokenizer.`);
            }
            if (t < T) inputs[o + t] = id;
            if (t > 0) slot.targets[o + t - 1] = id;
          }
        }
        slot.valid = rowsValid * T;
        ctx.device.queue.writeBuffer(this.tokensIn.buffer, 0, inputs.buffer, 0, N * 4);
        ctx.device.queue.writeBuffer(this.targetsIn.buffer, 0, slot.targets.buffer, 0, N * 4);
        const enc = ctx.device.createCommandEncoder({ label: `eval${b}` });
        const pass = enc.beginComputePass();
        encode(pass, this.dispatches);
        pass.end();
        enc.copyBufferToBuffer(this.acts.losses.buffer, this.acts.losses.offset, slot.staging, 0, N * 4);
        enc.copyBufferToBuffer(this.argmaxOut.buffer, 0, slot.staging, N * 4, N * 4);
        ctx.device.queue.submit([enc.finish()]);
        inFlight.push(slot);
      }
      for (const s of inFlight) await collect(s);
      inFlight = [];
    } finally {
      // Leave no buffer mapped or pending when a batch failed or the pass was aborted.
      for (const s of inFlight) await s.staging.mapAsync(GPUMapMode.READ).then(() => s.staging.unmap(), () => {});
    }
    run.onProgress?.({ windowsDone: W, windows: W });
    const tokensScored = W * T;
    const loss = lossSum / tokensScored;
    if (!Number.isFinite(loss)) {
      throw new NonFiniteLossError(`The evaluation loss is ${loss}: the model produces non-finite logits. Check the weights (a diverged run) or lower the learning rate.`);
    }
    const ms = performance.now() - t0;
    return {
      loss,
      perplexity: perplexity(loss),
      accuracy: correct / tokensScored,
      windows: W,
      tokens: tokensScored,
      correct,
      batches,
      batch: B,
      seq: T,
      unscored: tokens.length - 1 - tokensScored,
      ms,
      tokensPerSecond: tokensPerSecond(tokensScored, ms),
    };
  }

  destroy(): void {
    this.acts.destroy();
    this.loraActs?.destroy();
    for (const b of this.buffers) b.destroy();
  }
}

/** One evaluation pass with a temporary Evaluator. */
export async function evaluate(ctx: GpuContext, weights: GpuWeights, tokens: ArrayLike<number>, opts: EvaluatorOptions & EvalRunOptions): Promise<EvalResult> {
  const e = await Evaluator.create(ctx, weights, opts);
  try {
    return await e.evaluate(tokens, opts);
  } finally {
    e.destroy();
  }
}
