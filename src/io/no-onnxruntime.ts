// What the page's bundles load in place of transformers.js' ONNX backend (its
// src/backends/onnx.js, which imports onnxruntime-web 1.14 and onnxruntime-node). The studio uses
// transformers.js only for its tokenizer (src/io/tokenizer.ts), which never runs a model; without
// this substitution the whole runtime, with its `eval` and its .wasm fetched from a CDN, would ship
// in the worker and need a Content-Security-Policy with 'unsafe-eval'. vite.config.ts swaps it in
// for the browser builds only; Node (the CLI and the tests) loads the real module.
//
// The two names are the ones transformers.js 2.17 imports from that module: `ONNX` (of which
// utils/tensor.js reads `Tensor` and env.js reads `env.wasm`) and `executionProviders`.

/** Stands in for onnxruntime's Tensor: transformers.js' Tensor copies these fields from it. */
class Tensor {
  type: string;
  data: unknown;
  dims: number[];
  constructor(type: string, data: unknown, dims: number[]) {
    this.type = type;
    this.data = data;
    this.dims = dims;
  }
}

export const ONNX = { Tensor, env: { wasm: {} as Record<string, unknown> } };

export const executionProviders: string[] = [];
