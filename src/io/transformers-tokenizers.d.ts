// The tokenizer module of transformers.js 2.17, imported on its own (src/io/tokenizer.ts) so that
// its models and pipelines stay out of the bundles; its types are the package's.
declare module '@xenova/transformers/src/tokenizers.js' {
  export { PreTrainedTokenizer } from '@xenova/transformers';
}
