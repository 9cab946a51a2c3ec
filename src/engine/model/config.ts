// GPT2Config: the shape and options of a Hugging Face GPT-2 checkpoint (config.json), checked
// against what the engine reproduces exactly. Field meanings follow transformers'
// GPT2Config (configuration_gpt2.py): n_inner null means 4·n_embd, activation_function
// 'gelu_new' is the tanh approximation, layer_norm_epsilon defaults to 1e-5.
import { ShapeError, UnsupportedConfigError } from '../errors.ts';

export type Activation = 'gelu_new' | 'gelu';

export interface GPT2Config {
  /** V: vocabulary size (50257 for GPT-2) */
  vocabSize: number;
  /** P: maximum sequence length, rows of wpe (1024) */
  nPositions: number;
  /** C: channels (768 for GPT-2 124M) */
  nEmbd: number;
  /** L: transformer blocks */
  nLayer: number;
  /** NH: attention heads; C must divide by it */
  nHead: number;
  /** MLP width (4·C when the config says null) */
  nInner: number;
  layerNormEpsilon: number;
  activation: Activation;
  embdPdrop: number;
  attnPdrop: number;
  residPdrop: number;
  bosTokenId: number;
  eosTokenId: number;
}

/** GPT-2 124M (openai-community/gpt2). */
export const GPT2_SMALL: GPT2Config = {
  vocabSize: 50257, nPositions: 1024, nEmbd: 768, nLayer: 12, nHead: 12, nInner: 3072,
  layerNormEpsilon: 1e-5, activation: 'gelu_new', embdPdrop: 0.1, attnPdrop: 0.1, residPdrop: 0.1,
  bosTokenId: 50256, eosTokenId: 50256,
};

function positiveInt(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new UnsupportedConfigError(`config.json: '${name}' must be a positive integer, got ${JSON.stringify(v)}.`);
  }
  return v;
}

function rate(v: unknown, name: string, fallback: number): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== 'number' || !(v >= 0 && v < 1)) throw new UnsupportedConfigError(`config.json: '${name}' must be in [0, 1), got ${JSON.stringify(v)}.`);
  return v;
}

/** Parses a Hugging Face config.json object; refuses options the engine cannot reproduce exactly. */
export function parseConfig(json: unknown): GPT2Config {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new UnsupportedConfigError('config.json is not a JSON object.');
  }
  const j = json as Record<string, unknown>;
  if (j.model_type !== undefined && j.model_type !== 'gpt2') {
    throw new UnsupportedConfigError(`config.json: model_type is '${String(j.model_type)}'; only GPT-2 ('gpt2') models can be fine-tuned here.`);
  }
  const refuse = (cond: boolean, what: string) => {
    if (cond) throw new UnsupportedConfigError(`config.json: ${what} is not supported; the engine reproduces standard GPT-2 only and will not run it approximately.`);
  };
  refuse(j.scale_attn_by_inverse_layer_idx === true, 'scale_attn_by_inverse_layer_idx = true');
  refuse(j.reorder_and_upcast_attn === true, 'reorder_and_upcast_attn = true');
  refuse(j.scale_attn_weights === false, 'scale_attn_weights = false');
  refuse(j.add_cross_attention === true, 'add_cross_attention = true');
  const act = j.activation_function ?? 'gelu_new';
  let activation: Activation;
  if (act === 'gelu_new' || act === 'gelu_pytorch_tanh') activation = 'gelu_new';
  else if (act === 'gelu') activation = 'gelu';
  else throw new UnsupportedConfigError(`config.json: activation_function '${String(act)}' is not supported (gelu_new, gelu_pytorch_tanh or gelu).`);

  const nEmbd = positiveInt(j.n_embd ?? j.hidden_size, 'n_embd');
  const nHead = positiveInt(j.n_head ?? j.num_attention_heads, 'n_head');
  if (nEmbd % nHead !== 0) throw new ShapeError(`config.json: n_embd ${nEmbd} is not divisible by n_head ${nHead}.`);
  const nInner = j.n_inner === undefined || j.n_inner === null ? 4 * nEmbd : positiveInt(j.n_inner, 'n_inner');
  const eps = j.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new UnsupportedConfigError(`config.json: layer_norm_epsilon must be a positive number.`);
  const vocabSize = positiveInt(j.vocab_size, 'vocab_size');
  const tok = (v: unknown, fallback: number) => (typeof v === 'number' && Number.isInteger(v) && v >= 0 ? v : fallback);
  return {
    vocabSize,
    nPositions: positiveInt(j.n_positions ?? j.n_ctx ?? j.max_position_embeddings, 'n_positions'),
    nEmbd,
    nLayer: positiveInt(j.n_layer ?? j.num_hidden_layers, 'n_layer'),
    nHead,
    nInner,
    layerNormEpsilon: eps,
    activation,
    embdPdrop: rate(j.embd_pdrop, 'embd_pdrop', 0.1),
    attnPdrop: rate(j.attn_pdrop, 'attn_pdrop', 0.1),
    residPdrop: rate(j.resid_pdrop, 'resid_pdrop', 0.1),
    bosTokenId: tok(j.bos_token_id, Math.min(50256, vocabSize - 1)),
    eosTokenId: tok(j.eos_token_id, Math.min(50256, vocabSize - 1)),
  };
}

/** The config.json we write: what transformers' GPT2Config expects. */
export function configToJson(c: GPT2Config): Record<string, unknown> {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: c.vocabSize,
    n_positions: c.nPositions,
    n_ctx: c.nPositions,
    n_embd: c.nEmbd,
    n_layer: c.nLayer,
    n_head: c.nHead,
    n_inner: c.nInner === 4 * c.nEmbd ? null : c.nInner,
    activation_function: c.activation,
    layer_norm_epsilon: c.layerNormEpsilon,
    embd_pdrop: c.embdPdrop,
    attn_pdrop: c.attnPdrop,
    resid_pdrop: c.residPdrop,
    initializer_range: 0.02,
    scale_attn_weights: true,
    scale_attn_by_inverse_layer_idx: false,
    reorder_and_upcast_attn: false,
    use_cache: true,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
  };
}

/** Head size hs = C / NH. */
export function headSize(c: GPT2Config): number {
  return c.nEmbd / c.nHead;
}
