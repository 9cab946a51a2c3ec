// The page's Hub check (io/hub.ts checkHub): one HEAD request for config.json at the URL
// hubFileUrl builds, no body downloaded, and a sentence for each outcome. The cache summary the
// page lists (io/cache.ts summarizeCache) groups files per repository and revision.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { summarizeCache, type CacheEntry } from '../../../src/io/cache.ts';
import { checkHub } from '../../../src/io/hub.ts';
import { hubFixtures, startHubServer, type HubServer } from '../../helpers/hub-server.ts';

describe('checkHub', () => {
  let hub: HubServer;
  const repo = Object.keys(hubFixtures().repos)[0];

  beforeAll(async () => {
    hub = await startHubServer();
  });
  afterAll(async () => hub?.close());

  it('asks for config.json with HEAD at the resolve URL, and says the endpoint is reachable', async () => {
    const r = await checkHub(hub.endpoint, repo);
    expect(r).toEqual({ endpoint: hub.endpoint, reachable: true, detail: `${hub.endpoint} is reachable` });
    expect(hub.requests.at(-1)).toMatchObject({ method: 'HEAD', path: `/${repo}/resolve/main/config.json` });
  });

  it('names the URL and status of a repository the server does not have', async () => {
    const r = await checkHub(`${hub.endpoint}/`, 'nobody/nothing');
    expect(r.reachable).toBe(false);
    expect(r.detail).toMatch(new RegExp(`^${hub.endpoint}/nobody/nothing/resolve/main/config\\.json answered HTTP 4\\d\\d$`));
  });

  it('says an endpoint that does not answer is not reachable, and a bad one what is wrong with it', async () => {
    const down = await checkHub('http://127.0.0.1:9', repo, { timeoutMs: 2000 });
    expect(down).toMatchObject({ reachable: false, detail: expect.stringMatching(/^http:\/\/127\.0\.0\.1:9 is not reachable \(/) });
    const bad = await checkHub('ftp://example.com', repo);
    expect(bad).toMatchObject({ reachable: false, detail: expect.stringMatching(/must be an http:\/\/ or https:\/\/ URL/) });
  });
});

describe('summarizeCache', () => {
  it('sums files and bytes per endpoint, repository and revision; one partial file makes the model partial', () => {
    const e = (repo: string, revision: string, file: string, size: number, complete = true): CacheEntry => ({ endpoint: 'https://huggingface.co', repo, revision, file, size, complete, storedAt: 0 });
    expect(summarizeCache([e('a/b', 'main', 'config.json', 10), e('a/b', 'main', 'model.safetensors', 90, false), e('a/b', 'v2', 'config.json', 5), e('c/d', 'main', 'config.json', 1)])).toEqual([
      { endpoint: 'https://huggingface.co', repo: 'a/b', revision: 'main', files: 2, bytes: 100, complete: false },
      { endpoint: 'https://huggingface.co', repo: 'a/b', revision: 'v2', files: 1, bytes: 5, complete: true },
      { endpoint: 'https://huggingface.co', repo: 'c/d', revision: 'main', files: 1, bytes: 1, complete: true },
    ]);
  });
});
