// The page's corpus: files the user dropped (read in slices, so hundreds of MB are never held
// whole) or the sample shipped with the site, tokenized once (io/corpus.ts) and split into
// training and validation tokens again whenever the validation fraction, seed or context length
// changes. What the page is shown of it is `corpusInfo`.
import { StudioError } from '../engine/errors.ts';
import { blobSource } from '../io/bytes.ts';
import { splitCorpus, tokenizeCorpus, type CorpusSplit, type TokenizedCorpus } from '../io/corpus.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { NamedFile } from '../io/utf8.ts';
import { fetchSiteFile, siteBase } from './model-source.ts';
import type { CorpusInfo, CorpusOptions, CorpusSource } from './protocol.ts';

/** No corpus files were given. */
export class EmptyCorpusSourceError extends StudioError {}

/** The sample corpus shipped with the page, a public-domain excerpt (public/samples/). */
const SAMPLE_CORPUS = { file: 'samples/tiny-shakespeare.txt', name: 'Tiny Shakespeare (excerpt, public domain)' };

export interface SplitSettings {
  valFraction: number;
  seed: number;
  /** T: windows are counted at it, and a single document is cut at a multiple of it */
  contextLength: number;
}

export interface Corpus extends SplitSettings {
  source: CorpusSource;
  options: CorpusOptions;
  name: string;
  names: string[];
  tokenized: TokenizedCorpus;
  /** the tokenizer that made the ids */
  tokenizer: Tokenizer;
  split: CorpusSplit;
  /** changes whenever the split does (cached evaluations are keyed by it) */
  version: number;
}

async function corpusFiles(source: CorpusSource): Promise<{ files: NamedFile[]; name: string; names: string[] }> {
  if (source.kind === 'files') {
    if (source.files.length === 0) throw new EmptyCorpusSourceError('No corpus files were given. Drop .txt, .md, .jsonl or .csv files.');
    const names = source.files.map((f) => f.name);
    return { files: source.files.map((f) => blobSource(f, f.name)), name: names.length === 1 ? names[0] : `${names.length} files`, names };
  }
  const file = SAMPLE_CORPUS.file.split('/').pop()!;
  const blob = await fetchSiteFile(siteBase() + SAMPLE_CORPUS.file, 'the sample corpus', () => {});
  return { files: [blobSource(blob, file)], name: SAMPLE_CORPUS.name, names: [file] };
}

/** Reads and tokenizes `source`, then splits it; `version` is the previous corpus's plus one. */
export async function loadCorpus(
  source: CorpusSource,
  options: CorpusOptions,
  tokenizer: Tokenizer,
  split: SplitSettings,
  version: number,
  onProgress: (label: string, done: number, total: number) => void,
): Promise<Corpus> {
  const { files, name, names } = await corpusFiles(source);
  const tokenized = await tokenizeCorpus(files, tokenizer, { jsonlField: options.jsonlField || 'text', csvColumn: options.csvColumn || 'text', contextLength: split.contextLength }, (done, total) =>
    onProgress(`Tokenizing ${name}`, done, total),
  );
  return { source, options, name, names, tokenized, tokenizer, split: splitCorpus(tokenized, split), ...split, version };
}

/** Splits `c` again when the settings differ from its split's; true when it did. */
export function resplit(c: Corpus, s: SplitSettings): boolean {
  if (c.valFraction === s.valFraction && c.seed === s.seed && c.contextLength === s.contextLength) return false;
  c.split = splitCorpus(c.tokenized, s);
  Object.assign(c, s, { version: c.version + 1 });
  return true;
}

export function corpusInfo(c: Corpus): CorpusInfo {
  const s = c.tokenized.stats;
  return {
    name: c.name, files: s.files, documents: s.documents, characters: s.characters, bytes: s.bytes, tokens: s.tokens,
    trainTokens: c.split.train.length, valTokens: c.split.val.length,
    trainDocuments: c.split.trainDocuments, valDocuments: c.split.valDocuments,
    contextLength: c.contextLength, trainWindows: c.split.trainWindows, valWindows: c.split.valWindows, valFraction: c.valFraction,
    ...(c.split.message ? { splitMessage: c.split.message } : {}),
  };
}

/** What the model card says about the corpus. */
export function corpusCard(c: Corpus) {
  return {
    ...c.tokenized.stats, names: c.names, trainTokens: c.split.train.length, valTokens: c.split.val.length,
    trainDocuments: c.split.trainDocuments, valDocuments: c.split.valDocuments,
  };
}
