// Runs an exported decoder_model_merged.onnx the way transformers.js does — a prompt with an empty
// past ([1, n_head, 0, head_size]), then the next tokens one call each with the returned
// present.* as past_key_values — through any onnxruntime flavour (onnxruntime-node's and
// onnxruntime-web's APIs are the same), and models for the tests.
import type { GPT2Config } from '../../src/engine/model/config.ts';

/** The slice of onnxruntime's API both flavours share. */
export interface OrtLike {
  Tensor: new (type: 'int64' | 'float32', data: BigInt64Array | Float32Array, dims: number[]) => unknown;
}
export interface SessionLike {
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown; dims: readonly number[] }>>;
}

/**
 * Logits (sequence, V) of every position of `ids`: the first `prompt` ids in one call with no
 * past, then each further id alone with the past returned so far.
 */
export async function ortLogits(
  ort: OrtLike, session: SessionLike, config: GPT2Config, ids: number[], prompt: number,
): Promise<{ logits: Float32Array; pastDims: readonly number[] }> {
  const NH = config.nHead, HS = config.nEmbd / config.nHead, V = config.vocabSize;
  const out = new Float32Array(ids.length * V);
  let past: Record<string, unknown> | null = null;
  let pastDims: readonly number[] = [];
  let pos = 0;
  while (pos < ids.length) {
    const toks = pos === 0 ? ids.slice(0, prompt) : [ids[pos]];
    const feeds: Record<string, unknown> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(toks.map(BigInt)), [1, toks.length]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(pos + toks.length).fill(1n), [1, pos + toks.length]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(toks.map((_, i) => BigInt(pos + i))), [1, toks.length]),
    };
    for (let l = 0; l < config.nLayer; l++) {
      for (const kv of ['key', 'value']) {
        feeds[`past_key_values.${l}.${kv}`] = past ? past[`present.${l}.${kv}`] : new ort.Tensor('float32', new Float32Array(0), [1, NH, 0, HS]);
      }
    }
    const r = await session.run(feeds);
    const logits = r.logits;
    if (logits.dims.join() !== [1, toks.length, V].join()) throw new Error(`logits dims ${logits.dims.join('×')}, expected 1×${toks.length}×${V}`);
    out.set(logits.data as Float32Array, pos * V);
    past = r;
    pastDims = r['present.0.key'].dims;
    pos += toks.length;
  }
  return { logits: out, pastDims };
}

/** max |got − ref| / max |ref|: the measure ("within 1e-4 relative to the largest"). */
export function relToLargest(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (got.length !== ref.length) throw new Error(`length ${got.length} != ${ref.length}`);
  let d = 0, m = 0;
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]);
    if (!(e <= d)) d = Number.isNaN(e) ? Infinity : e;
    m = Math.max(m, Math.abs(ref[i]));
  }
  return d / m;
}

/** Index of the largest value in row `r` of a (rows, V) array. */
export function argmaxRow(a: ArrayLike<number>, r: number, V: number): number {
  let best = 0;
  for (let v = 1; v < V; v++) if (a[r * V + v] > a[r * V + best]) best = v;
  return best;
}
