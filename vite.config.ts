// Vite serves and builds the studio. Shaders under shaders/ are fetched at run time through
// `new URL(..., import.meta.url)` (see src/engine/gpu/shaders.ts), which Vite turns into
// emitted assets for both the page and the worker bundle.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  worker: { format: 'es' },
  build: { target: 'es2022', sourcemap: true, chunkSizeWarningLimit: 4096 },
  server: { port: 5173, host: 'localhost' },
  preview: { port: 4173, host: 'localhost' },
});
