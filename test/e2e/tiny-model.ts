// A tiny GPT-2 for the browser tier, with its own byte-level tokenizer (the Hub test server's:
// 256 byte symbols, no merges, <|endoftext|> = 256). With V = 257 instead of 50257 a training
// step takes well under a second on SwiftShader, and the page's "model's own tokenizer" path is
// exercised. Weights: Hugging Face's initialization from a seed (scripts/make-demo-model.ts).
import { hfInitParams } from '../../scripts/make-demo-model.ts';
import { configToJson, GPT2_SMALL, type GPT2Config } from '../../src/engine/model/config.ts';
import type { HostParams } from '../../src/engine/model/params.ts';
import { checkpointTensors } from '../../src/io/checkpoint.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { tinyTokenizerFiles } from '../helpers/hub-server.ts';

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
  const params = hfInitParams(TINY_CONFIG, seed);
  return {
    config: TINY_CONFIG,
    params,
    files: {
      'config.json': new TextEncoder().encode(JSON.stringify(configToJson(TINY_CONFIG))),
      'model.safetensors': writeSafetensors(checkpointTensors(TINY_CONFIG, params)),
      ...tinyTokenizerFiles(),
    },
  };
}
