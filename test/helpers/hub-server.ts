// A local HTTP server on 127.0.0.1 in the Hugging Face Hub's URL layout
// (`/{owner}/{name}/resolve/{revision}/{file}`), serving tiny GPT-2 checkpoints, so the hub client
// is tested without a network. It behaves as the Hub does where the client depends on it:
//   - .safetensors files (LFS on the Hub) answer with a 302 to a CDN path that serves the bytes;
//     a renamed repository answers with a relative 307 to its new name;
//   - a missing file is 404 `X-Error-Code: EntryNotFound`, a missing revision 404
//     `RevisionNotFound`, a missing repository 401 `RepoNotFound`;
//   - Range requests get 206 + Content-Range (or 416 past the end), unless turned off;
//   - an "interruption" sends the full Content-Length, then closes the socket (or goes silent)
//     part-way;
//   - every request is logged, so tests can count them.
// Fixtures: `tiny/gpt2` (the PyTorch-golden tiny GPT-2 + a byte-level BPE tokenizer),
// `tiny/sharded` (the same weights in two shards + index), `tiny/bin-only` (pytorch_model.bin
// only), `tiny/big` (a 2 MiB checkpoint, for resumed downloads), `old/name` (renamed to tiny/gpt2).
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { parseConfig, configToJson, type GPT2Config } from '../../src/engine/model/config.ts';
import { paramSpecs, type HostParams } from '../../src/engine/model/params.ts';
import { checkpointTensors } from '../../src/io/checkpoint.ts';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors.ts';
import { gpt2TokenizerFiles, type TokenizerFiles } from '../../src/io/tokenizer.ts';
import { randn } from './numeric.ts';

export interface HubRepo {
  files: Record<string, Uint8Array>;
  /** revisions that exist (all serve the same files); default ['main'] */
  revisions?: string[];
}

export interface Interruption {
  repo: string;
  file: string;
  /** how many GET responses of this file are cut off */
  times: number;
  /** bytes of each response body sent before the socket is closed */
  after: number;
  /**
   * 'close' (default): close the socket after those bytes. The client may then see fewer of them,
   * since a fetch body that errors drops chunks it had queued. 'stall': send them and go silent,
   * so a client reads all of them before its stall timeout ends the attempt.
   */
  mode?: 'close' | 'stall';
}

export interface RequestLogEntry {
  method: string;
  /** the path as requested, e.g. /tiny/gpt2/resolve/main/config.json */
  path: string;
  range: string | null;
}

export interface HubServer {
  endpoint: string;
  repos: Record<string, HubRepo>;
  requests: RequestLogEntry[];
  /** cut off the next responses of a file */
  interrupt(i: Interruption): void;
  /** answer Range requests with the whole file (200), as a server without range support does */
  rangeSupport: boolean;
  close(): Promise<void>;
}

export const COMMIT = '0123456789abcdef0123456789abcdef01234567';

/** GPT-2's byte → printable character map (bytes_to_unicode in OpenAI's encoder.py). */
export function byteLevelAlphabet(): string[] {
  const keep = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const out: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) out.push(String.fromCodePoint(keep(b) ? b : 256 + n++));
  return out;
}

/** A byte-level BPE tokenizer with no merges: 256 byte tokens and <|endoftext|> = 256. */
export function tinyTokenizer(): TokenizerFiles {
  const vocab: Record<string, number> = {};
  byteLevelAlphabet().forEach((c, i) => { vocab[c] = i; });
  vocab['<|endoftext|>'] = 256;
  return gpt2TokenizerFiles(vocab, []);
}

/** tinyTokenizer's two files, as bytes. */
export function tinyTokenizerFiles(): { 'tokenizer.json': Uint8Array; 'tokenizer_config.json': Uint8Array } {
  const { tokenizerJson, tokenizerConfig } = tinyTokenizer();
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
  return { 'tokenizer.json': enc(tokenizerJson), 'tokenizer_config.json': enc(tokenizerConfig) };
}

const GOLD = new URL('../goldens/gpt2-tiny/model/', import.meta.url);

export interface HubFixtures {
  repos: Record<string, HubRepo>;
  tinyConfig: GPT2Config;
  /** the tiny model's parameters (engine names), as served */
  tinyParams: HostParams;
  bigConfig: GPT2Config;
  bigParams: HostParams;
}

export function hubFixtures(): HubFixtures {
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v, null, 2));
  const configBytes = new Uint8Array(readFileSync(new URL('config.json', GOLD)));
  const weights = new Uint8Array(readFileSync(new URL('model.safetensors', GOLD)));
  const tinyConfig = parseConfig(JSON.parse(new TextDecoder().decode(configBytes)));
  const stored = readSafetensors(weights);
  const tinyParams: HostParams = new Map(paramSpecs(tinyConfig).map((s) => {
    const t = stored.get(`transformer.${s.name}`) ?? stored.get(s.name);
    if (!t) throw new Error(`golden model lacks ${s.name}`);
    return [s.name, t.data];
  }));
  const tokenizer = tinyTokenizerFiles();

  // The same tensors in two shards, split after block 0 (as save_pretrained's max_shard_size does).
  const all = checkpointTensors(tinyConfig, tinyParams);
  const cut = all.findIndex((t) => t.name.startsWith('transformer.h.1.'));
  const shards = [all.slice(0, cut), all.slice(cut)];
  const shardName = (i: number) => `model-0000${i + 1}-of-00002.safetensors`;
  const weightMap: Record<string, string> = {};
  shards.forEach((ts, i) => ts.forEach((t) => { weightMap[t.name] = shardName(i); }));
  const index = { metadata: { total_size: all.reduce((a, t) => a + t.data.byteLength, 0) }, weight_map: weightMap };

  const bigConfig = parseConfig({ model_type: 'gpt2', vocab_size: 8192, n_positions: 16, n_embd: 64, n_layer: 1, n_head: 4 });
  const bigParams: HostParams = new Map(paramSpecs(bigConfig).map((s, i) => [s.name, Float32Array.from(randn(s.numel, 900 + i), (x) => 0.02 * x)]));

  const repos: Record<string, HubRepo> = {
    'tiny/gpt2': {
      files: { 'config.json': configBytes, 'model.safetensors': weights, ...tokenizer },
      revisions: ['main', 'v1.0', 'refs/pr/1'],
    },
    'tiny/sharded': {
      files: {
        'config.json': configBytes,
        'model.safetensors.index.json': enc(index),
        [shardName(0)]: writeSafetensors(shards[0]),
        [shardName(1)]: writeSafetensors(shards[1]),
      },
    },
    'tiny/bin-only': {
      files: { 'config.json': configBytes, 'pytorch_model.bin': new Uint8Array(4096).fill(0x80) },
    },
    'tiny/big': {
      files: { 'config.json': enc(configToJson(bigConfig)), 'model.safetensors': writeSafetensors(checkpointTensors(bigConfig, bigParams)) },
    },
  };
  return { repos, tinyConfig, tinyParams, bigConfig, bigParams };
}

/** Renamed repositories: old id → new id (the Hub redirects the old URLs). */
const RENAMED: Record<string, string> = { 'old/name': 'tiny/gpt2' };

function etagOf(bytes: Uint8Array): string {
  let h = 2166136261;
  for (let i = 0; i < bytes.length; i += 97) h = Math.imul(h ^ bytes[i], 16777619);
  return `"${(h >>> 0).toString(16)}-${bytes.length}"`;
}

export async function startHubServer(repos: Record<string, HubRepo> = hubFixtures().repos): Promise<HubServer> {
  const requests: RequestLogEntry[] = [];
  const cuts: Interruption[] = [];
  const state = { rangeSupport: true };

  const fail = (res: ServerResponse, status: number, code: string, message: string) => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'X-Error-Code': code, 'X-Error-Message': message });
    res.end(JSON.stringify({ error: message }));
  };

  const serveBytes = (req: IncomingMessage, res: ServerResponse, repo: string, file: string, bytes: Uint8Array) => {
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ETag: etagOf(bytes), 'X-Repo-Commit': COMMIT,
    };
    let start = 0;
    let end = bytes.length; // exclusive
    let status = 200;
    const range = req.headers.range;
    if (range && state.rangeSupport) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range);
      if (m) {
        start = Number(m[1]);
        if (start >= bytes.length) {
          res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` });
          res.end();
          return;
        }
        end = m[2] ? Math.min(bytes.length, Number(m[2]) + 1) : bytes.length;
        status = 206;
        headers['Content-Range'] = `bytes ${start}-${end - 1}/${bytes.length}`;
      }
    }
    headers['Content-Length'] = end - start;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const cut = cuts.find((c) => c.repo === repo && c.file === file && c.times > 0);
    if (cut) {
      cut.times--;
      // Send part of the body, then drop the connection (or go silent) without finishing it.
      res.write(bytes.subarray(start, Math.min(end, start + cut.after)), () => {
        if (cut.mode !== 'stall') setTimeout(() => res.socket?.destroy(), 5);
      });
      return;
    }
    res.end(bytes.subarray(start, end));
  };

  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push({ method: req.method ?? 'GET', path: url.pathname, range: req.headers.range ?? null });
    const segs = url.pathname.split('/').slice(1);
    // CDN path of an LFS file: /cdn/{owner}/{name}/{revision}/{file…}
    if (segs[0] === 'cdn' && segs.length >= 5) {
      const repo = `${segs[1]}/${segs[2]}`;
      const file = segs.slice(4).map(decodeURIComponent).join('/');
      const bytes = repos[repo]?.files[file];
      if (!bytes) return fail(res, 404, 'EntryNotFound', 'Entry not found');
      return serveBytes(req, res, repo, file, bytes);
    }
    if (segs.length < 5 || segs[2] !== 'resolve') return fail(res, 404, '', 'Not found');
    const repo = `${segs[0]}/${segs[1]}`;
    const revision = decodeURIComponent(segs[3]);
    const file = segs.slice(4).map(decodeURIComponent).join('/');
    if (RENAMED[repo]) {
      res.writeHead(307, { Location: `/${RENAMED[repo]}/resolve/${segs.slice(3).join('/')}` });
      return res.end();
    }
    const r = repos[repo];
    if (!r) return fail(res, 401, 'RepoNotFound', 'Repository not found');
    if (!(r.revisions ?? ['main']).includes(revision)) return fail(res, 404, 'RevisionNotFound', 'Invalid rev id: ' + revision);
    const bytes = r.files[file];
    if (!bytes) return fail(res, 404, 'EntryNotFound', 'Entry not found');
    if (file.endsWith('.safetensors')) {
      res.writeHead(302, { Location: `/cdn/${repo}/${encodeURIComponent(revision)}/${segs.slice(4).join('/')}`, 'X-Repo-Commit': COMMIT, 'X-Linked-Size': bytes.length, ETag: etagOf(bytes) });
      return res.end();
    }
    serveBytes(req, res, repo, file, bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    repos,
    requests,
    interrupt: (i) => cuts.push({ ...i }),
    get rangeSupport() {
      return state.rangeSupport;
    },
    set rangeSupport(v: boolean) {
      state.rangeSupport = v;
    },
    close: () => new Promise<void>((resolve, reject) => {
      server.closeAllConnections();
      server.close((e) => (e ? reject(e) : resolve()));
    }),
  };
}
