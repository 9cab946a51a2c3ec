// Vite serves and builds the studio. Shaders under shaders/ are fetched at run time through
// `new URL(..., import.meta.url)` (see src/engine/gpu/shaders.ts), which Vite turns into
// emitted assets for both the page and the worker bundle; onnxruntime-web's .wasm is emitted the
// same way (src/worker/onnx-runtime.ts imports it with `?url`), so it is served from the page's origin.
//
// Two plugins keep the built page private (see "Privacy" in README.md):
//   - the Content-Security-Policy in index.html gets its build-time extra connect-src sources
//     (STUDIO_EXTRA_CONNECT, e.g. a Hub mirror, or the browser tests' local Hub server); the dev
//     server drops the policy, since React's fast refresh needs an inline script and a websocket;
//   - transformers.js' ONNX backend (onnxruntime-web, which uses eval and fetches .wasm from a
//     CDN) is replaced by src/io/no-onnxruntime.ts: the studio uses only its tokenizer.
import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';
import react from '@vitejs/plugin-react';

const NO_ONNXRUNTIME = fileURLToPath(new URL('./src/io/no-onnxruntime.ts', import.meta.url));

function withoutOnnxRuntime(): Plugin {
  return {
    name: 'studio:transformers-without-onnxruntime',
    enforce: 'pre',
    resolveId(source, importer) {
      if (importer && /[\\/]@xenova[\\/]transformers[\\/]/.test(importer) && /(^|\/)backends\/onnx\.js$/.test(source)) return NO_ONNXRUNTIME;
      return null;
    },
  };
}

/** CSP source expressions: scheme://host[:port], with `*` for a subdomain or a port. */
const CSP_SOURCE = /^(https?|wss?):\/\/(\*\.)?[A-Za-z0-9.-]+(:(\d+|\*))?$/;

/** STUDIO_EXTRA_CONNECT, checked: space-separated origins the page may also connect to. */
export function extraConnectSources(value: string | undefined): string {
  const list = (value ?? '').split(/\s+/).filter(Boolean);
  for (const s of list) {
    if (!CSP_SOURCE.test(s)) {
      throw new Error(`STUDIO_EXTRA_CONNECT: '${s}' is not an origin like https://hf-mirror.com or http://127.0.0.1:* (space-separated).`);
    }
  }
  return list.join(' ');
}

function contentSecurityPolicy(): Plugin {
  let serve = false;
  return {
    name: 'studio:content-security-policy',
    configResolved(config) {
      serve = config.command === 'serve';
    },
    transformIndexHtml(html) {
      if (serve) return html.replace(/\s*<meta http-equiv="Content-Security-Policy"[^>]*>/, '');
      const extra = extraConnectSources(process.env.STUDIO_EXTRA_CONNECT);
      return html.replace('%STUDIO_EXTRA_CONNECT%', extra ? ` ${extra}` : '');
    },
  };
}

export default defineConfig({
  plugins: [withoutOnnxRuntime(), contentSecurityPolicy(), react()],
  worker: { format: 'es', plugins: () => [withoutOnnxRuntime()] },
  build: { target: 'es2022', sourcemap: true, chunkSizeWarningLimit: 4096 },
  server: { port: 5173, host: 'localhost' },
  preview: { port: 4173, host: 'localhost' },
});
