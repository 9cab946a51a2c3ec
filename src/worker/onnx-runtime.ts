// onnxruntime-web for the worker, loaded on first use (its JavaScript and ~28 MB of WebAssembly
// are fetched only when the user tries the ONNX export). The .wasm is an asset of this build,
// served from the page's own origin (a Content-Security-Policy of `script-src 'self'
// 'wasm-unsafe-eval'` allows it), never from a CDN. The default entry point bundles its loader
// and runs the WebGPU execution provider (JSEP) and the WASM one from the same binary.
import wasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.jsep.wasm?url';

export type Ort = typeof import('onnxruntime-web');

let loaded: Promise<Ort> | null = null;

export function loadOrt(): Promise<Ort> {
  if (!loaded) {
    loaded = import('onnxruntime-web').then((ort) => {
      // In Node (the tests) onnxruntime-web finds its own files; in the browser, this build's copy.
      const inNode = typeof process !== 'undefined' && typeof process.versions?.node === 'string';
      if (!inNode) ort.env.wasm.wasmPaths = { wasm: new URL(wasmUrl, self.location.href).href };
      // Threads need a cross-origin-isolated page (SharedArrayBuffer); one thread works everywhere.
      ort.env.wasm.numThreads = 1;
      // Its warnings (e.g. shape ops placed on the CPU next to the WebGPU provider, by design)
      // go to console.error; only errors are worth the page's console.
      ort.env.logLevel = 'error';
      return ort;
    });
    loaded.catch(() => (loaded = null));
  }
  return loaded;
}
