// A model folder for CLI tests: the golden tiny GPT-2 (V = 311, EOS = 310) with a tokenizer
// that fits its vocabulary: GPT-2's own tokenizer cut to its first 310 ids (the 256 byte
// tokens, then the merged tokens of GPT-2's first 54 merges, which are ids 256 … 309 in merge
// order) plus <|endoftext|> as id 310. Text encodes to ids the tiny model can embed.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const GOLD = new URL('../goldens/gpt2-tiny/model/', import.meta.url).pathname;
const GPT2 = new URL('../../public/tokenizer/gpt2/', import.meta.url).pathname;

export function writeTinyModelDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(GOLD, 'config.json'), join(dir, 'config.json'));
  copyFileSync(join(GOLD, 'model.safetensors'), join(dir, 'model.safetensors'));
  const tok = JSON.parse(readFileSync(join(GPT2, 'tokenizer.json'), 'utf8'));
  const vocab: Record<string, number> = {};
  for (const [k, v] of Object.entries(tok.model.vocab as Record<string, number>)) if (v < 310) vocab[k] = v;
  vocab['<|endoftext|>'] = 310;
  tok.model.vocab = vocab;
  tok.model.merges = (tok.model.merges as unknown[]).slice(0, 54);
  tok.added_tokens = tok.added_tokens.map((t: Record<string, unknown>) => ({ ...t, id: 310 }));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(tok));
  copyFileSync(join(GPT2, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
  return dir;
}
