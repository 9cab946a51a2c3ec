// A tiny GPT-2 for the browser tier, with its own byte-level tokenizer: GPT-2's 256 byte symbols
// (ids 0–255 of GPT-2's vocabulary are exactly them) and no merges, plus <|endoftext|> at 256.
// With V = 257 instead of 50257 a training step takes well under a second on SwiftShader, and
// the page's "model's own tokenizer" path is exercised.
import { readFileSync } from 'node:fs';
import { hfInitParams } from '../../scripts/make-demo-model.ts';
import { configToJson, GPT2_SMALL, type GPT2Config } from '../../src/engine/model/config.ts';
import type { HostParams } from '../../src/engine/model/params.ts';
import { checkpointTensors } from '../../src/io/checkpoint.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';

export const TINY_CONFIG: GPT2Config = {
  ...GPT2_SMALL,
  vocabSize: 257,
  nPositions: 64,
  nEmbd: 32,
  nLayer: 2,
  nHead: 2,
  nInner: 128,
  bosTokenId: 256,
  eosTokenId: 256,
};

export interface TinyModel {
  config: GPT2Config;
  params: HostParams;
  /** the folder's files by name */
  files: Record<string, Uint8Array>;
}

export function tinyModel(seed = 11): TinyModel {
  const gpt2 = JSON.parse(readFileSync('public/tokenizer/gpt2/tokenizer.json', 'utf8')) as { model: { vocab: Record<string, number> } & Record<string, unknown>; added_tokens: Array<Record<string, unknown>> } & Record<string, unknown>;
  const vocab: Record<string, number> = {};
  for (const [tok, id] of Object.entries(gpt2.model.vocab)) if (id < 256) vocab[tok] = id;
  vocab['<|endoftext|>'] = 256;
  const tokenizer = {
    ...gpt2,
    added_tokens: [{ ...gpt2.added_tokens[0], id: 256 }],
    model: { ...gpt2.model, vocab, merges: [] },
  };
  const tokenizerConfig = { tokenizer_class: 'GPT2Tokenizer', bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>', add_prefix_space: false, model_max_length: 64 };
  const params = hfInitParams(TINY_CONFIG, seed);
  const enc = new TextEncoder();
  return {
    config: TINY_CONFIG,
    params,
    files: {
      'config.json': enc.encode(JSON.stringify(configToJson(TINY_CONFIG))),
      'model.safetensors': writeSafetensors(checkpointTensors(TINY_CONFIG, params)),
      'tokenizer.json': enc.encode(JSON.stringify(tokenizer)),
      'tokenizer_config.json': enc.encode(JSON.stringify(tokenizerConfig)),
    },
  };
}
