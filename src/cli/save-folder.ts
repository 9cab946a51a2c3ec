// The train command's output: the fine-tuned model as a full Hugging Face folder (export.ts):
// config.json, model.safetensors, the model's tokenizer files when it has a tokenizer that fits
// its vocabulary, generation_config.json, and a model card with the base model, the data, the
// training settings and the final loss.
import { basename } from 'node:path';
import type { GPT2Config } from '../engine/model/config.ts';
import type { HostParams } from '../engine/model/params.ts';
import type { StepLog, TrainRunConfig } from '../engine/train/config.ts';
import type { ByteSource } from '../io/bytes.ts';
import { nodeDirFiles } from '../io/node-model.ts';
import { writeHfFolder } from '../io/node-export.ts';
import { isHubModelArg } from './model-arg.ts';
import { tokenizerFromModelFiles, type TokenizerFiles } from '../io/tokenizer.ts';

export interface TrainedModel {
  config: GPT2Config;
  params: HostParams;
  /** --model as given: a folder or a Hub id */
  modelArg: string;
  /** the folder it resolved to (the cache folder for a Hub id) */
  modelDir: string;
  training: TrainRunConfig;
  logs: StepLog[];
  /** --data paths */
  data: string[];
  /** tokens of training data */
  tokens: number;
  seconds: number;
  /** the card's name (default: the folder's name; a save into a temporary folder gives the final one) */
  cardName?: string;
}

const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt'];
/** GPT-2's vocabulary: the default tokenizer fits only models this large. */
const GPT2_VOCAB = 50257;

/** The model's tokenizer files to ship with it, or undefined when it has none that fits. */
export async function tokenizerFor(modelDir: string, config: GPT2Config, log: (line: string) => void): Promise<TokenizerFiles | undefined> {
  const files = await nodeDirFiles(modelDir);
  const own = TOKENIZER_FILES.map((n) => files.get(n)).filter((s): s is ByteSource => s !== undefined);
  if (own.length === 0 && config.vocabSize < GPT2_VOCAB) {
    log(`note: ${modelDir} has no tokenizer files and its vocabulary (${config.vocabSize}) is smaller than GPT-2's, so the saved folder has no tokenizer.`);
    return undefined;
  }
  const { tokenizer } = await tokenizerFromModelFiles(own);
  if (tokenizer.vocabSize > config.vocabSize) {
    log(`note: the tokenizer has ${tokenizer.vocabSize} ids but the model ${config.vocabSize}; the saved folder has no tokenizer.`);
    return undefined;
  }
  return tokenizer.files;
}

/** Writes the trained model to `outDir` as a Hugging Face folder; returns the file names. */
export async function saveTrainedFolder(outDir: string, m: TrainedModel, log: (line: string) => void): Promise<string[]> {
  const t = m.training;
  const fromHub = await isHubModelArg(m.modelArg);
  const last = m.logs.at(-1);
  return writeHfFolder(outDir, {
    config: m.config,
    params: m.params,
    tokenizer: await tokenizerFor(m.modelDir, m.config, log),
    card: {
      name: m.cardName ?? basename(outDir),
      // A local path is no Hub id, even when it looks like owner/name: say it is a folder.
      baseModel: fromHub ? m.modelArg.replace(/@main$/, '') : `local folder ${basename(m.modelArg)}`,
      corpus: { names: m.data.map((p) => basename(p)), tokens: m.tokens },
      training: t,
      metrics: {
        steps: m.logs.length,
        ...(last ? { trainLoss: last.loss } : {}),
        tokensSeen: m.logs.length * t.batch * t.seq * t.gradAccum,
        seconds: m.seconds,
      },
    },
  });
}
