// GPT-2 written with TensorFlow.js ops, trained with its autodiff and Adam: the peer that the
// studio's engine is measured against (bench/peer.ts). The same semantics as the engine
// (Hugging Face GPT2LMHeadModel: pre-LayerNorm blocks, Conv1D weights stored (in, out), causal
// attention scaled by 1/sqrt(head size), gelu_new, LM head tied to wte; dropout off), so its
// first loss on the same weights and tokens equals the engine's and the same work is timed.
// Written the way a TensorFlow.js user would: batched matMul for attention with an additive
// causal mask, softmax cross-entropy against one-hot targets, tf.train.adam.
// Generation keeps a key/value cache per layer (tf.concat along the time axis) and decodes one
// token at a time, greedy, like the engine's generate/generator.ts.
import type { GPT2Config } from '../../src/engine/model/config.ts';
import { tf } from './tfjs.ts';

type T2 = tf.Tensor2D;

export class TfGpt2 {
  readonly config: GPT2Config;
  readonly vars = new Map<string, tf.Variable>();
  private masks = new Map<number, tf.Tensor2D>();
  private optimizer: tf.Optimizer | null = null;

  /** `params`: Hugging Face names (no `transformer.` prefix) → float32 values in HF's shapes. */
  constructor(config: GPT2Config, params: ReadonlyMap<string, Float32Array>, shapes: ReadonlyMap<string, number[]>) {
    this.config = config;
    for (const [name, data] of params) {
      const shape = shapes.get(name);
      if (!shape) throw new Error(`no shape for ${name}`);
      this.vars.set(name, tf.variable(tf.tensor(data, shape, 'float32'), true, name));
    }
  }

  private p(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) throw new Error(`the peer model has no parameter ${name}`);
    return v;
  }

  /** (T, T) additive causal mask: 0 on and below the diagonal, -1e9 above. Kept for reuse. */
  private mask(T: number): tf.Tensor2D {
    let m = this.masks.get(T);
    if (!m) {
      const data = new Float32Array(T * T);
      for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) data[i * T + j] = -1e9;
      m = tf.keep(tf.tensor2d(data, [T, T]));
      this.masks.set(T, m);
    }
    return m;
  }

  private layerNorm(x: T2, prefix: string): T2 {
    const mean = tf.mean(x, -1, true);
    const xc = tf.sub(x, mean);
    const variance = tf.mean(tf.square(xc), -1, true);
    const y = tf.mul(xc, tf.rsqrt(tf.add(variance, this.config.layerNormEpsilon)));
    return tf.add(tf.mul(y, this.p(`${prefix}.weight`)), this.p(`${prefix}.bias`));
  }

  private linear(x: T2, prefix: string): T2 {
    return tf.add(tf.matMul(x, this.p(`${prefix}.weight`)), this.p(`${prefix}.bias`));
  }

  private gelu(x: T2): T2 {
    if (this.config.activation === 'gelu') {
      // 0.5·x·(1 + erf(x/√2))
      return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
    }
    // gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  }

  /** (B·T, C) → (B, NH, T, hs) */
  private heads(x: T2, B: number, T: number): tf.Tensor4D {
    const NH = this.config.nHead;
    return tf.transpose(tf.reshape(x, [B, T, NH, this.config.nEmbd / NH]), [0, 2, 1, 3]);
  }

  /** ln_f output (B·T, C) for (B·T) int32 tokens. */
  hidden(tokens: tf.Tensor1D, B: number, T: number): T2 {
    const C = this.config.nEmbd;
    const positions = tf.tile(tf.range(0, T, 1, 'int32'), [B]);
    let x = tf.add(tf.gather(this.p('wte.weight'), tokens), tf.gather(this.p('wpe.weight'), positions)) as T2;
    const scale = 1 / Math.sqrt(C / this.config.nHead);
    for (let i = 0; i < this.config.nLayer; i++) {
      const h = `h.${i}`;
      const qkv = this.linear(this.layerNorm(x, `${h}.ln_1`), `${h}.attn.c_attn`); // (B·T, 3C)
      const [q, k, v] = tf.split(qkv, 3, 1).map((t) => this.heads(t as T2, B, T));
      const att = tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), scale), this.mask(T))); // (B, NH, T, T)
      const y = tf.reshape(tf.transpose(tf.matMul(att, v), [0, 2, 1, 3]), [B * T, C]) as T2;
      x = tf.add(x, this.linear(y, `${h}.attn.c_proj`));
      const f = this.gelu(this.linear(this.layerNorm(x, `${h}.ln_2`), `${h}.mlp.c_fc`));
      x = tf.add(x, this.linear(f, `${h}.mlp.c_proj`));
    }
    return this.layerNorm(x, 'ln_f');
  }

  /** Mean cross-entropy over the B·T targets: the scalar the engine reports as the step's loss. */
  loss(tokens: tf.Tensor1D, targets: tf.Tensor1D, B: number, T: number): tf.Scalar {
    const logits = tf.matMul(this.hidden(tokens, B, T), this.p('wte.weight'), false, true); // (B·T, V)
    const picked = tf.sum(tf.mul(logits, tf.oneHot(targets, this.config.vocabSize)), -1);
    return tf.mean(tf.sub(tf.logSumExp(logits, -1), picked));
  }

  /** One Adam step (tf.train.adam, eps 1e-8, no weight decay, no clipping); returns the loss before the update. */
  trainStep(tokens: Int32Array, targets: Int32Array, B: number, T: number, lr: number): tf.Scalar {
    this.optimizer ??= tf.train.adam(lr, 0.9, 0.999, 1e-8);
    return tf.tidy(() => {
      const x = tf.tensor1d(tokens, 'int32');
      const y = tf.tensor1d(targets, 'int32');
      const l = this.optimizer!.minimize(() => this.loss(x, y, B, T), true, [...this.vars.values()]);
      if (!l) throw new Error('Adam returned no loss');
      return l;
    });
  }

  /** Forward only: the mean loss of one batch. */
  forwardLoss(tokens: Int32Array, targets: Int32Array, B: number, T: number): tf.Scalar {
    return tf.tidy(() => this.loss(tf.tensor1d(tokens, 'int32'), tf.tensor1d(targets, 'int32'), B, T));
  }

  /**
   * Greedy decoding with a key/value cache: the prompt's forward fills the cache, then each new
   * token runs one position through every layer against the cached keys and values. The chosen
   * token is read back every step (the next step needs it), as the engine reads its logits.
   * Returns the tokens and the milliseconds of the decode steps after the first token.
   */
  async generate(prompt: number[], maxNew: number): Promise<{ tokens: number[]; decodeMs: number }> {
    const c = this.config;
    const C = c.nEmbd;
    const L = c.nLayer;
    const scale = 1 / Math.sqrt(C / c.nHead);
    let cacheK: tf.Tensor4D[] = [];
    let cacheV: tf.Tensor4D[] = [];
    // One forward over `ids` at positions [pos, pos + n), appending to the cache; argmax of the last row.
    const step = (ids: number[], pos: number): tf.Tensor1D => {
      const n = ids.length;
      const { next, ks, vs } = tf.tidy(() => {
        const tokens = tf.tensor1d(ids, 'int32');
        let x = tf.add(tf.gather(this.p('wte.weight'), tokens), tf.gather(this.p('wpe.weight'), tf.range(pos, pos + n, 1, 'int32'))) as T2;
        const ks: tf.Tensor4D[] = [];
        const vs: tf.Tensor4D[] = [];
        for (let i = 0; i < L; i++) {
          const h = `h.${i}`;
          const qkv = this.linear(this.layerNorm(x, `${h}.ln_1`), `${h}.attn.c_attn`);
          const [q, k1, v1] = tf.split(qkv, 3, 1).map((t) => this.heads(t as T2, 1, n));
          const k = pos === 0 ? k1 : tf.concat([cacheK[i], k1], 2);
          const v = pos === 0 ? v1 : tf.concat([cacheV[i], v1], 2);
          ks.push(tf.keep(k));
          vs.push(tf.keep(v));
          let scores = tf.mul(tf.matMul(q, k, false, true), scale); // (1, NH, n, pos + n)
          if (n > 1) scores = tf.add(scores, this.mask(n)); // prefill (pos 0): causal within the prompt
          const y = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v), [0, 2, 1, 3]), [n, C]) as T2;
          x = tf.add(x, this.linear(y, `${h}.attn.c_proj`));
          x = tf.add(x, this.linear(this.gelu(this.linear(this.layerNorm(x, `${h}.ln_2`), `${h}.mlp.c_fc`)), `${h}.mlp.c_proj`));
        }
        const last = tf.slice(this.layerNorm(x, 'ln_f'), [n - 1, 0], [1, C]);
        const logits = tf.matMul(last, this.p('wte.weight'), false, true); // (1, V)
        return { next: tf.argMax(logits, 1) as tf.Tensor1D, ks, vs };
      });
      for (const t of [...cacheK, ...cacheV]) t.dispose();
      cacheK = ks;
      cacheV = vs;
      return next;
    };
    const ids = prompt.length ? [...prompt] : [c.bosTokenId];
    const out: number[] = [];
    const first = step(ids, 0);
    out.push((await first.data())[0]);
    first.dispose();
    const t0 = performance.now();
    for (let i = 1; i < maxNew; i++) {
      const next = step([out[i - 1]], ids.length + i - 1);
      out.push((await next.data())[0]);
      next.dispose();
    }
    const decodeMs = performance.now() - t0;
    for (const t of [...cacheK, ...cacheV]) t.dispose();
    return { tokens: out, decodeMs };
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    for (const m of this.masks.values()) m.dispose();
    this.optimizer?.dispose();
  }
}
