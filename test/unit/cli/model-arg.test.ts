// --model: a mistyped local folder is refused as a missing folder, naming both readings, and
// nothing is sent to the Hub for it (no request, so no HF_TOKEN either). The Hub-layout test
// server holds a repository with the very same id, so a request, had one been made, would have
// been answered: the same id from a folder where it does not read as a path downloads from it.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isHubModelArg, resolveModelDir } from '../../../src/cli/model-arg.ts';
import { MissingModelFileError } from '../../../src/io/checkpoint.ts';
import { hubFixtures, startHubServer, type HubServer } from '../../helpers/hub-server.ts';

const ID = 'mymodels/gpt2-mine';

describe('--model: paths never go to the Hub', () => {
  let hub: HubServer;
  let work: string;
  let cwdWithFolder: string;
  let cwdPlain: string;
  const log = () => {};

  beforeAll(async () => {
    const files = Object.values(hubFixtures().repos)[0].files;
    hub = await startHubServer({ [ID]: { files } });
    work = await mkdtemp(join(tmpdir(), 'model-arg-'));
    cwdWithFolder = join(work, 'with');
    cwdPlain = join(work, 'plain');
    await mkdir(join(cwdWithFolder, 'mymodels'), { recursive: true });
    await mkdir(cwdPlain, { recursive: true });
    vi.stubEnv('HF_TOKEN', 'hf_secret_token_that_must_not_be_sent');
  });

  afterAll(async () => {
    vi.unstubAllEnvs();
    await hub?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  const resolveIn = (cwd: string, arg: string) => resolveModelDir(arg, { cwd, endpoint: hub.endpoint, cacheDir: join(work, 'cache'), weights: false, log });

  it.each([
    ['owner/name whose first component is a folder here', ID,
      /\(read as a path: mymodels\/ is a folder here; as the Hugging Face Hub repository 'mymodels\/gpt2-mine' it was not looked up, and no request was sent\)\. .*check the folder name/],
    ['a relative path', './mymodels/gpt2-mine', /\(read as a path: it starts with '\.'\)\. Give a folder/],
    ['a hidden folder', '.models/gpt2', /\(read as a path: it starts with '\.'\)/],
    ['a home path', '~/models/gpt2', /\(read as a path: it starts with '~'\)/],
    ['an absolute path', '/nonexistent/gpt2', /\(read as a path: it starts with '\/'\)/],
  ])('%s (%s) is refused as a missing folder, with no request', async (_what, arg, why) => {
    const before = hub.requests.length;
    const err = await resolveIn(cwdWithFolder, arg).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingModelFileError);
    expect((err as Error).message).toMatch(new RegExp(`^Model folder ${arg.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} does not exist \\(read as a path`));
    expect((err as Error).message).toMatch(why);
    expect(hub.requests.length).toBe(before);
    expect(await isHubModelArg(arg, cwdWithFolder)).toBe(false);
  });

  it('the same id where its first component is no folder is a Hub id, and downloads from the server', async () => {
    expect(hub.requests).toEqual([]);
    expect(await isHubModelArg(ID, cwdPlain)).toBe(true);
    const dir = await resolveIn(cwdPlain, ID);
    expect(dir).toContain(join(work, 'cache'));
    expect(hub.requests.map((r) => r.path)).toContain(`/${ID}/resolve/main/config.json`);
  });
});
