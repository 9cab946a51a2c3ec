// Text from a model for the page: samples (a prompt continued with the sampling settings) and
// the greedy continuations BLEU scores, with the engine's KV-cache generator. One generator per
// weights copy (and LoRA weights) is kept between calls: its pipelines and cache are built once.
import { Generator } from '../engine/generate/generator.ts';
import type { GpuContext } from '../engine/gpu/context.ts';
import type { LoraWeights } from '../engine/model/lora.ts';
import type { GpuWeights } from '../engine/model/weights.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { SampleSettings } from './settings.ts';

export interface SampleText {
  text: string;
  tokens: number;
  tokensPerSec: number;
}

export class Generators {
  private readonly made = new Map<string, { weights: GpuWeights; lora: LoraWeights | null; gen: Promise<Generator> }>();
  private ids = new WeakMap<object, number>();
  private nextId = 1;

  private id(o: object | null): number {
    if (!o) return 0;
    let i = this.ids.get(o);
    if (i === undefined) this.ids.set(o, (i = this.nextId++));
    return i;
  }

  get(ctx: GpuContext, weights: GpuWeights, lora: LoraWeights | null): Promise<Generator> {
    const key = `${this.id(weights)}:${this.id(lora)}`;
    let m = this.made.get(key);
    if (!m) {
      const gen = Generator.create(ctx, weights, lora ?? undefined);
      gen.catch(() => this.made.delete(key));
      m = { weights, lora, gen };
      this.made.set(key, m);
    }
    return m.gen;
  }

  /** Drops the generators of `lora` (LoRA weights that are being replaced). */
  forget(lora: LoraWeights): void {
    for (const [k, m] of this.made) {
      if (m.lora === lora) {
        void m.gen.then((g) => g.destroy(), () => {});
        this.made.delete(k);
      }
    }
  }

  /** Continues `s.prompt`: the same settings and seed give the same text. */
  async sample(ctx: GpuContext, weights: GpuWeights, lora: LoraWeights | null, tokenizer: Tokenizer, s: SampleSettings): Promise<SampleText> {
    const gen = await this.get(ctx, weights, lora);
    const P = weights.config.nPositions;
    const maxNew = Math.min(s.maxNewTokens, P - 1);
    const prompt = tokenizer.encode(s.prompt);
    // Keep the prompt's end when the prompt and the new tokens do not fit the context together.
    const ids = prompt.length + maxNew > P ? prompt.slice(prompt.length - (P - maxNew)) : prompt;
    const r = await gen.generate(ids, { maxNewTokens: maxNew, sampling: { temperature: s.temperature, topK: s.topK, topP: s.topP }, seed: s.seed });
    return { text: tokenizer.decode(r.tokens), tokens: r.tokens.length, tokensPerSec: r.tokensPerSecond };
  }

  destroy(): void {
    for (const m of this.made.values()) void m.gen.then((g) => g.destroy(), () => {});
    this.made.clear();
  }
}
