// Corpus files → the train and validation token streams that nanoGPT / llm.c token files hold
// (the CLI's `prepare` command): tokenize (corpus.ts), split by documents, check the ids fit
// uint16 (token-files.ts).
import { type CorpusOptions, type CorpusStats, type ProgressFn, type SplitOptions, splitCorpus, tokenizeCorpus } from './corpus.ts';
import { UINT16_VOCAB_LIMIT, VocabTooLargeError } from './token-files.ts';
import type { Tokenizer } from './tokenizer.ts';
import type { NamedFile } from './utf8.ts';

export interface PreparedStats extends CorpusStats {
  trainTokens: number;
  valTokens: number;
  trainDocuments: number;
  valDocuments: number;
  trainWindows: number;
  valWindows: number;
  splitBy: 'documents' | 'window';
  singleDocument: boolean;
  message?: string;
}

export interface PreparedCorpus {
  train: Uint16Array;
  val: Uint16Array;
  stats: PreparedStats;
}

/**
 * Corpus files → train and validation uint16 ids (+ stats), ready for writeNanoGptTokens /
 * writeLlmcTokens. Refuses a vocabulary above 65,536 before reading anything.
 */
export async function prepareCorpus(
  files: readonly NamedFile[],
  tokenizer: Tokenizer,
  options: CorpusOptions & SplitOptions,
  onProgress?: ProgressFn,
): Promise<PreparedCorpus> {
  if (tokenizer.vocabSize > UINT16_VOCAB_LIMIT) {
    throw new VocabTooLargeError(`The tokenizer has ${tokenizer.vocabSize} ids; nanoGPT and llm.c token files store uint16 ids, so at most ${UINT16_VOCAB_LIMIT}. Use a GPT-2 tokenizer (50,257 ids).`);
  }
  const corpus = await tokenizeCorpus(files, tokenizer, { ...options }, onProgress);
  const split = splitCorpus(corpus, options);
  // vocabSize ≤ 65536 made tokenizeCorpus choose Uint16Array.
  const train = split.train as Uint16Array;
  const val = split.val as Uint16Array;
  return {
    train,
    val,
    stats: {
      ...corpus.stats,
      trainTokens: train.length,
      valTokens: val.length,
      trainDocuments: split.trainDocuments,
      valDocuments: split.valDocuments,
      trainWindows: split.trainWindows,
      valWindows: split.valWindows,
      splitBy: split.by,
      singleDocument: split.singleDocument,
      ...(split.message === undefined ? {} : { message: split.message }),
    },
  };
}
