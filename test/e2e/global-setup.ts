// Builds the production bundle and serves it on localhost (WebGPU needs a secure context;
// http://localhost is one) for the browser tier. The build goes to a private temporary folder,
// so a concurrent `vite build` into dist/ cannot change the files under test.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build, preview } from 'vite';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    baseUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  // The offline assets the page serves (GPT-2's tokenizer, the built-in model); idempotent.
  const gen = spawnSync('node', ['scripts/gen.mjs'], { stdio: 'inherit' });
  if (gen.status !== 0) throw new Error('npm run gen failed: the page would miss its tokenizer or built-in model.');
  const outDir = mkdtempSync(join(tmpdir(), 'studio-e2e-'));
  // The page's Content-Security-Policy lets it connect to its origin and the Hub only; the tests'
  // Hub-layout server listens on 127.0.0.1 at a port chosen when the tests start, so the build
  // names that host with any port (vite.config.ts adds STUDIO_EXTRA_CONNECT to connect-src).
  process.env.STUDIO_EXTRA_CONNECT = 'http://127.0.0.1:*';
  await build({ logLevel: 'warn', build: { outDir, emptyOutDir: true } });
  const server = await preview({ preview: { port: 0, host: '127.0.0.1', strictPort: false }, build: { outDir }, logLevel: 'warn' });
  const addr = server.httpServer.address();
  if (!addr || typeof addr === 'string') throw new Error('preview server has no port');
  const baseUrl = `http://localhost:${addr.port}/`;
  console.log(`[e2e tier] serving the production build at ${baseUrl}`);
  project.provide('baseUrl', baseUrl);
  return async () => {
    await new Promise<void>((resolve) => server.httpServer.close(() => resolve()));
    rmSync(outDir, { recursive: true, force: true });
  };
}
