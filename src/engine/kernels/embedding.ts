// Wrapper for shaders/embedding.wgsl: the token + position embedding with embedding dropout, and
// its gradients as deterministic gathers. The wte gradient needs the positions of every token
// grouped by token: buildTokenBuckets computes that on the CPU (the technique of llm.c's
// encoder_backward, which buckets positions by token so that no two threads add into one row),
// packTokenBuckets lays it out for the GPU, writeTokenBuckets uploads it each step.
// wte and dwte can be bound as row ranges (wteRows / dwteRows) when the table is larger than one
// storage binding: one forward / gather dispatch per range, each touching only its own tokens.
import { ShapeError, StudioError } from '../errors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { bindAll, flatGrid, needElements, needPositive, uniformWords, type BufferRange, type Dispatch } from '../gpu/dispatch.ts';
import { DROPOUT_SITE } from '../random.ts';
import { dropoutParams, type DropoutSpec } from './dropout.ts';

/** A token id outside the vocabulary (a tokenizer / model mismatch). */
export class TokenOutOfRangeError extends StudioError {}

export interface TokenBuckets {
  /** (U) the distinct token ids, increasing */
  uniqueTokens: Uint32Array;
  /** (U + 1) positions of uniqueTokens[u] are positions[starts[u] .. starts[u+1]) */
  starts: Uint32Array;
  /** (B·T) flat positions b·T + t, grouped by token, increasing within each group */
  positions: Uint32Array;
}

/** Groups the positions of `tokens` (B·T) by token id. Throws TokenOutOfRangeError for an id ≥ V. */
export function buildTokenBuckets(tokens: Uint32Array, V: number): TokenBuckets {
  const n = tokens.length;
  for (let i = 0; i < n; i++) {
    if (tokens[i] >= V) {
      throw new TokenOutOfRangeError(`Token id ${tokens[i]} at position ${i} is outside the model's vocabulary of ${V}; tokenize the corpus with this model's tokenizer.`);
    }
  }
  // Positions ordered by (token, position): the tie-break makes the order independent of the sort.
  const positions = new Uint32Array(n);
  for (let i = 0; i < n; i++) positions[i] = i;
  positions.sort((a, b) => tokens[a] - tokens[b] || a - b);
  const unique: number[] = [];
  const starts: number[] = [];
  for (let k = 0; k < n; k++) {
    const tok = tokens[positions[k]];
    if (k === 0 || tok !== tokens[positions[k - 1]]) {
      unique.push(tok);
      starts.push(k);
    }
  }
  starts.push(n);
  return { uniqueTokens: Uint32Array.from(unique), starts: Uint32Array.from(starts), positions };
}

/** u32 words of the GPU bucket buffer for a batch of `capacity` = B·T tokens. */
export function tokenBucketWords(capacity: number): number {
  return 2 + 3 * capacity;
}

/** The GPU layout of shaders/embedding.wgsl: [U | uniqueTokens (K) | starts (K+1) | positions (K)], K = capacity. */
export function packTokenBuckets(b: TokenBuckets, capacity: number): Uint32Array {
  const U = b.uniqueTokens.length;
  if (b.positions.length > capacity) {
    throw new ShapeError(`Token buckets hold ${b.positions.length} positions but the buffer was sized for ${capacity} (B·T); build the embedding with the batch's B and T.`);
  }
  const out = new Uint32Array(tokenBucketWords(capacity));
  out[0] = U;
  out.set(b.uniqueTokens, 1);
  out.set(b.starts, 1 + capacity);
  out.set(b.positions, 2 + 2 * capacity);
  return out;
}

/** Builds, packs and uploads the buckets of `tokens` (B·T) into `range` (queue.writeBuffer, no GPU allocation). */
export function writeTokenBuckets(ctx: GpuContext, range: BufferRange, tokens: Uint32Array, V: number): void {
  const words = packTokenBuckets(buildTokenBuckets(tokens, V), tokens.length);
  needElements(range, words.length, 'token buckets', 'writeTokenBuckets');
  ctx.device.queue.writeBuffer(range.buffer, range.offset, words.buffer, words.byteOffset, words.byteLength);
}

/** Rows [start, start + count) of the (V, C) table that a bound range holds. */
export interface RowRange {
  start: number;
  count: number;
}

export interface EmbeddingDims {
  label: string;
  B: number;
  T: number;
  /** channels (n_embd) */
  C: number;
  /** vocabulary size (rows of wte) */
  V: number;
  /** n_positions (rows of wpe), ≥ T */
  P: number;
  /** embd_pdrop at site 0 (its `site` is ignored: the embedding is always site 0); omitted means p = 0 */
  dropout?: Omit<DropoutSpec, 'site'>;
}

export interface EmbeddingForwardArgs extends EmbeddingDims {
  /** (B·T) u32 token ids, read (a token ≥ V gives NaN rows) */
  tokens: BufferRange;
  /** (V, C) read, or rows wteRows of it */
  wte: BufferRange;
  /** The rows of wte this range holds (default all V): only tokens in it are written. */
  wteRows?: RowRange;
  /** (P, C) read */
  wpe: BufferRange;
  /** (B, T, C) written */
  out: BufferRange;
}

export interface EmbeddingBackwardArgs extends EmbeddingDims {
  /** (B, T, C) gradient of the embedding output, read */
  dout: BufferRange;
  /** tokenBucketWords(B·T) u32 words, read; rewritten each step with writeTokenBuckets */
  buckets: BufferRange;
  /** (V, C) gradient of wte, or rows dwteRows of it; omit with dwpe for frozen embeddings (then build nothing at all) */
  dwte?: BufferRange;
  /** The rows of dwte this range holds (default all V): only those rows are cleared and gathered. */
  dwteRows?: RowRange;
  /** true: add into dwte (the LM head's contribution is already there); false: dwte is cleared first */
  accumulateWte?: boolean;
  /** (P, C) gradient of wpe: rows t < T written (or added into), rows ≥ T zeroed unless accumulating */
  dwpe?: BufferRange;
  accumulateWpe?: boolean;
}

function checkDims(a: EmbeddingDims): void {
  for (const k of ['B', 'T', 'C', 'V', 'P'] as const) needPositive(a[k], k, a.label);
  if (a.T > a.P) throw new ShapeError(`${a.label}: sequence length T = ${a.T} exceeds the model's n_positions = ${a.P}; use T ≤ ${a.P}.`);
}

function rowRange(label: string, V: number, r: RowRange | undefined): RowRange {
  if (!r) return { start: 0, count: V };
  if (!(Number.isInteger(r.start) && Number.isInteger(r.count) && r.start >= 0 && r.count >= 1 && r.start + r.count <= V)) {
    throw new ShapeError(`${label}: rows ${r.start} … ${r.start + r.count - 1} are not a range of the ${V}-row table.`);
  }
  return r;
}

type DimsWords = Array<number | { f32: number }>;

function dimsWords(a: EmbeddingDims, words: DimsWords, n: number, rows: RowRange = { start: 0, count: a.V }): DimsWords {
  // Layout of `Dims` in embedding.wgsl: B T C V | P micro site threshold | scale n row0 rows
  return [a.B, a.T, a.C, a.V, a.P, words[0], words[1], words[2], words[3], n, rows.start, rows.count];
}

export async function embeddingForward(ctx: GpuContext, args: EmbeddingForwardArgs): Promise<Dispatch> {
  checkDims(args);
  const { label, B, T, C, V, P } = args;
  needElements(args.tokens, B * T, 'tokens', label);
  const rows = rowRange(label, V, args.wteRows);
  needElements(args.wte, rows.count * C, 'wte', label);
  needElements(args.wpe, P * C, 'wpe', label);
  needElements(args.out, B * T * C, 'out', label);
  const { words, rng } = dropoutParams(ctx, args.dropout && { ...args.dropout, site: DROPOUT_SITE.embedding }, label);
  const pipeline = await ctx.pipeline('embedding', 'forward');
  const dims = uniformWords(ctx, `${label}.dims`, dimsWords(args, words, B * T * C, rows));
  return {
    label,
    pipeline,
    bindGroup: bindAll(ctx, pipeline, label, [dims, rng], [args.tokens, args.wte, args.wpe, args.out]),
    workgroups: flatGrid(ctx, Math.ceil((B * T * C) / 256), label),
  };
}

/** [dwpe], then [clear dwte (when not accumulating), dwte gather]: run in this order. */
export async function embeddingBackward(ctx: GpuContext, args: EmbeddingBackwardArgs): Promise<Dispatch[]> {
  checkDims(args);
  const { label, B, T, C, V, P } = args;
  if (!args.dwte && !args.dwpe) throw new ShapeError(`${label}: pass dwte and/or dwpe (for frozen embeddings skip the backward).`);
  needElements(args.dout, B * T * C, 'dout', label);
  const { words, rng } = dropoutParams(ctx, args.dropout && { ...args.dropout, site: DROPOUT_SITE.embedding }, label);
  const out: Dispatch[] = [];
  if (args.dwpe) {
    needElements(args.dwpe, P * C, 'dwpe', label);
    const pipe = await ctx.pipeline('embedding', 'backward_wpe', { ACCUMULATE: !!args.accumulateWpe });
    const dims = uniformWords(ctx, `${label}.dwpe.dims`, dimsWords(args, words, P * C));
    out.push({
      label: `${label}.dwpe`,
      pipeline: pipe,
      bindGroup: bindAll(ctx, pipe, `${label}.dwpe`, [dims, rng], [args.dout, args.dwpe]),
      workgroups: flatGrid(ctx, Math.ceil((P * C) / 256), label),
    });
  }
  if (args.dwte) {
    const rows = rowRange(label, V, args.dwteRows);
    needElements(args.dwte, rows.count * C, 'dwte', label);
    needElements(args.buckets, tokenBucketWords(B * T), 'buckets', label);
    if (!args.accumulateWte) {
      const zero = await ctx.pipeline('embedding', 'zero_fill');
      const zdims = uniformWords(ctx, `${label}.zero.dims`, dimsWords(args, words, rows.count * C, rows));
      out.push({
        label: `${label}.dwte.clear`,
        pipeline: zero,
        bindGroup: bindAll(ctx, zero, `${label}.dwte.clear`, [zdims], [args.dwte]),
        workgroups: flatGrid(ctx, Math.ceil((rows.count * C) / 256), label),
      });
    }
    // After clearing, the gather adds into zeros: the same kernel serves both modes.
    const pipe = await ctx.pipeline('embedding', 'backward_wte', { ACCUMULATE: true });
    const dims = uniformWords(ctx, `${label}.dwte.dims`, dimsWords(args, words, rows.count * C, rows));
    out.push({
      label: `${label}.dwte`,
      pipeline: pipe,
      bindGroup: bindAll(ctx, pipe, `${label}.dwte`, [dims, rng], [args.dout, args.buckets, args.dwte]),
      workgroups: flatGrid(ctx, B * T, label),
    });
  }
  return out;
}
