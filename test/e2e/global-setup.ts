// Builds the production bundle and serves it on localhost (WebGPU needs a secure context;
// http://localhost is one) for the browser tier.
import { build, preview } from 'vite';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    baseUrl: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  await build({ logLevel: 'warn' });
  const server = await preview({ preview: { port: 0, host: '127.0.0.1', strictPort: false }, logLevel: 'warn' });
  const addr = server.httpServer.address();
  if (!addr || typeof addr === 'string') throw new Error('preview server has no port');
  const baseUrl = `http://localhost:${addr.port}/`;
  console.log(`[e2e tier] serving the production build at ${baseUrl}`);
  project.provide('baseUrl', baseUrl);
  return async () => {
    await new Promise<void>((resolve) => server.httpServer.close(() => resolve()));
  };
}
