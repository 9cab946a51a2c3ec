// A local server in the Hugging Face Hub's URL layout, {endpoint}/{repo}/resolve/{revision}/{file},
// for the browser tier (the Hub is not reachable from test machines). Answers with CORS headers,
// as the Hub does, so the page's worker on another port may fetch from it.
import { createServer, type Server } from 'node:http';

export interface HubServer {
  endpoint: string;
  /** requested paths, in order */
  requests: string[];
  close(): Promise<void>;
}

/** Serves `repos[repo][file]` at /{repo}/resolve/{any revision}/{file}; everything else is 404. */
export async function startHubServer(repos: Record<string, Record<string, Uint8Array>>): Promise<HubServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    requests.push(`${req.method} ${url.pathname}`);
    res.setHeader('Access-Control-Allow-Origin', '*');
    res.setHeader('Access-Control-Expose-Headers', 'Content-Length, ETag');
    const m = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(decodeURIComponent(url.pathname));
    const body = m ? repos[m[1]]?.[m[3]] : undefined;
    if (!body) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('Entry not found');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': body.byteLength });
    res.end(req.method === 'HEAD' ? undefined : Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('hub server has no port');
  return {
    endpoint: `http://127.0.0.1:${addr.port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
