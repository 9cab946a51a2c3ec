// The key/value cache of KV-cache generation (batch 1): for every layer, the keys and values of
// every position decoded so far, so that a new token attends to them without recomputing them.
// This is what Hugging Face's `past_key_values` holds (transformers' GPT2Attention with
// use_cache=True), laid out here as one (2, P, C) buffer per layer, allocated once for the
// model's full context n_positions = P.
import type { GpuContext } from '../gpu/context.ts';
import type { BufferRange } from '../gpu/dispatch.ts';
import { kvCacheElements } from '../kernels/decode.ts';
import type { GPT2Config } from '../model/config.ts';

export class KvCache {
  /** P: positions the cache holds (n_positions) */
  readonly P: number;
  /** per layer: (2, P, C) keys then values */
  readonly layers: BufferRange[] = [];
  /** bytes on the GPU */
  readonly bytes: number;
  /** positions filled so far (the next token goes at this position) */
  length = 0;

  constructor(ctx: GpuContext, c: GPT2Config) {
    this.P = c.nPositions;
    const count = kvCacheElements(c.nEmbd, c.nPositions);
    let bytes = 0;
    for (let i = 0; i < c.nLayer; i++) {
      const buffer = ctx.createBuffer(count * 4, `kv${i}`);
      bytes += buffer.size;
      this.layers.push({ buffer, offset: 0, size: count * 4 });
    }
    this.bytes = bytes;
  }

  destroy(): void {
    for (const l of this.layers) l.buffer.destroy();
  }
}
