// Puts CORS headers on a local server's answers, as the Hugging Face Hub and its CDN send them,
// so the page (on another localhost port) may fetch from the Hub-layout test server
// (test/helpers/hub-server.ts), which is written for Node clients and sends none. Redirects keep
// their relative Location, so they stay on the proxy.
import { createServer, request, type Server } from 'node:http';

export interface CorsProxy {
  endpoint: string;
  close(): Promise<void>;
}

export async function startCorsProxy(target: string): Promise<CorsProxy> {
  const to = new URL(target);
  const server: Server = createServer((req, res) => {
    const cors = {
      'Access-Control-Allow-Origin': '*',
      'Access-Control-Allow-Headers': 'Range, Authorization',
      'Access-Control-Expose-Headers': 'Content-Length, Content-Range, ETag, X-Repo-Commit, X-Linked-Size, X-Error-Code, X-Error-Message',
    };
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { ...cors, 'Access-Control-Allow-Methods': 'GET, HEAD' });
      res.end();
      return;
    }
    const up = request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: { ...req.headers, host: to.host } }, (r) => {
      res.writeHead(r.statusCode ?? 502, { ...r.headers, ...cors });
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('CORS proxy has no port');
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
