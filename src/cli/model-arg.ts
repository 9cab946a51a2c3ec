// The CLI's --model argument: a local model folder, or a Hugging Face Hub id
// (`owner/name[@revision]`) that is not an existing folder, downloaded into the Node cache
// ($STUDIO_CACHE, else ~/.cache/webgpu-studio) whose revision folder is then the model folder.
// As huggingface_hub does, HF_ENDPOINT sets another endpoint (a mirror, a local server) and
// HF_TOKEN an access token; --endpoint overrides HF_ENDPOINT.
//
// An argument that looks like a path is never sent to the Hub (with HF_TOKEN) when it is missing:
// it starts with '.', '/', '~' (or a drive letter, or holds a backslash), or its first component
// is a folder here (`mymodels/gpt2-mine` with `mymodels/` present but no `gpt2-mine` in it is a
// mistyped folder, not the Hub repository of a user called "mymodels").
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { MissingModelFileError } from '../io/checkpoint.ts';
import { DEFAULT_ENDPOINT, loadHubModel, looksLikeHubId, parseHubId, type DownloadProgress, type HubOptions } from '../io/hub.ts';
import { nodeCache } from '../io/node-cache.ts';

export interface ModelArgOptions {
  /** --endpoint; default $HF_ENDPOINT, else https://huggingface.co */
  endpoint?: string;
  /** cache folder; default $STUDIO_CACHE or ~/.cache/webgpu-studio */
  cacheDir?: string;
  /** download the weights (train) or only config and tokenizer (prepare) */
  weights: boolean;
  /** progress lines */
  log: (line: string) => void;
  /** for tests: fetch, retry delays … */
  hub?: Omit<HubOptions, 'endpoint' | 'onProgress' | 'weights'>;
  /** the folder relative paths start from; default the process's working directory */
  cwd?: string;
}

const MB = 1e6;

function progressLogger(log: (line: string) => void): (p: DownloadProgress) => void {
  const lastPct = new Map<string, number>();
  return (p) => {
    if (p.cached) return;
    if (p.done) {
      log(`downloaded ${p.file} (${(p.bytes / MB).toFixed(1)} MB)`);
      return;
    }
    if (p.total === null || p.total < 10 * MB) return;
    const pct = Math.floor((100 * p.bytes) / p.total / 10) * 10;
    if (pct <= (lastPct.get(p.file) ?? -1)) return;
    lastPct.set(p.file, pct);
    const eta = p.eta === null ? '' : `, ${Math.ceil(p.eta)} s left`;
    log(`${p.file}: ${pct}% of ${(p.total / MB).toFixed(0)} MB at ${(p.rate / MB).toFixed(1)} MB/s${eta}`);
  };
}

/** Why `arg` reads as a path (so it is never taken for a Hub id), or null when it does not. */
async function pathReading(arg: string, cwd: string): Promise<string | null> {
  const lead = /^(\.|\/|~|[A-Za-z]:[\\/])/.exec(arg);
  if (lead) return `it starts with '${lead[1]}'`;
  if (arg.includes('\\')) return 'it holds a backslash';
  const first = arg.split('/')[0];
  if (arg.includes('/') && first && (await stat(resolve(cwd, first)).catch(() => null))?.isDirectory()) return `${first}/ is a folder here`;
  return null;
}

/** Whether --model `arg` is taken as a Hub id: not an existing folder, not a path, and owner/name[@revision]. */
export async function isHubModelArg(arg: string, cwd: string = process.cwd()): Promise<boolean> {
  const st = await stat(resolve(cwd, arg)).catch(() => null);
  return !st && looksLikeHubId(arg) && (await pathReading(arg, cwd)) === null;
}

/** The folder of the model `arg` names: itself when it is a folder, else the cache folder of a Hub id. */
export async function resolveModelDir(arg: string, opts: ModelArgOptions): Promise<string> {
  const cwd = opts.cwd ?? process.cwd();
  const st = await stat(resolve(cwd, arg)).catch(() => null);
  if (st?.isDirectory()) return opts.cwd === undefined ? arg : resolve(cwd, arg);
  if (st) throw new MissingModelFileError(`${arg} is a file, not a model folder. Give the folder that holds config.json, or a Hub id like openai-community/gpt2.`);
  const asPath = await pathReading(arg, cwd);
  const hubId = looksLikeHubId(arg);
  if (asPath !== null || !hubId) {
    // Both readings, and which one was taken: nothing is sent to the Hub for a path.
    const why = asPath === null
      ? ', and it is not a Hugging Face Hub id (owner/name or owner/name@revision)'
      : ` (read as a path: ${asPath}${hubId ? `; as the Hugging Face Hub repository '${arg}' it was not looked up, and no request was sent` : ''})`;
    throw new MissingModelFileError(
      `Model folder ${arg} does not exist${why}. Give a folder with config.json + model.safetensors` +
        `${hubId && asPath !== null ? ' (check the folder name)' : ''}, or a Hub id like openai-community/gpt2.`,
    );
  }
  const ref = parseHubId(arg);
  const endpoint = opts.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT;
  const cache = nodeCache(opts.cacheDir);
  const token = process.env.HF_TOKEN || undefined;
  const m = await loadHubModel(ref, cache, {
    ...(token ? { token } : {}),
    ...opts.hub,
    endpoint,
    weights: opts.weights,
    onProgress: progressLogger(opts.log),
  });
  const dir = cache.repoDir({ endpoint: m.endpoint, repo: ref.repo, revision: ref.revision });
  opts.log(`model ${ref.repo}@${ref.revision}: ${m.requests === 0 ? 'from the cache' : 'downloaded'}, in ${dir}`);
  return dir;
}
