// Model panel: the built-in demo model, a Hugging Face Hub repository (presets or any id, at a
// configurable endpoint; downloads are cached by the browser and listed here), or local files
// (dropped, picked, or a whole folder). The Hub is contacted only once the user chooses it: the
// Hub tab, or the one-click GPT-2 124M button.
import { useEffect, useRef, useState, type DragEvent } from 'react';
import { describeError } from '../engine/errors.ts';
import { GPT2_SMALL } from '../engine/model/config.ts';
import { countParams } from '../engine/model/params.ts';
import { HUB_PRESETS } from '../io/hub.ts';
import { localFilesFromDrop, localFilesFromInput, type LocalFile } from '../io/local-files.ts';
import type { ModelSource } from '../worker/protocol.ts';
import { send } from './engine.ts';
import { Progress, TextField } from './fields.tsx';
import { bytes, count } from './format.ts';
import { useStudio, type ModelChoice } from './store.ts';

const CHOICES: Array<{ value: ModelChoice; label: string }> = [
  { value: 'builtin', label: 'Built-in demo' },
  { value: 'hub', label: 'Hugging Face Hub' },
  { value: 'files', label: 'Local files' },
];

/** The pretrained model one click away from the built-in one. */
const GPT2_124M = HUB_PRESETS[0];

function hostOf(endpoint: string): string {
  try {
    return new URL(endpoint).host;
  } catch {
    return endpoint;
  }
}

/** float32 bytes of a preset's weights, from its shape (what a download and the GPU will hold). */
function presetBytes(p: (typeof HUB_PRESETS)[number]): number {
  return 4 * countParams({ ...GPT2_SMALL, ...p.config, nInner: 4 * p.config.nEmbd });
}

function CacheList() {
  const cache = useStudio((s) => s.cache);
  const loaded = useStudio((s) => s.model.info?.name);
  // Listed when shown, and again after each load (a download just went in).
  useEffect(() => send({ type: 'cacheList' }), [loaded]);
  if (!cache) return null;
  return (
    <details className="more" data-testid="hub-cache">
      <summary>Downloaded models ({cache.models.length}{cache.models.length ? `, ${bytes(cache.models.reduce((a, m) => a + m.bytes, 0))}` : ''})</summary>
      {!cache.persistent && <p className="muted">This browser keeps downloads only until the page is closed.</p>}
      {cache.models.length === 0 ? (
        <p className="muted">Nothing downloaded yet.</p>
      ) : (
        <ul className="cache">
          {cache.models.map((m) => (
            <li key={`${m.endpoint} ${m.repo} ${m.revision}`}>
              <span>{m.repo}{m.revision !== 'main' ? `@${m.revision}` : ''} <span className="muted">{bytes(m.bytes)}{m.complete ? '' : ' (partial)'}</span></span>
              <button type="button" onClick={() => send({ type: 'cacheClear', model: { endpoint: m.endpoint, repo: m.repo, revision: m.revision } })} aria-label={`Remove ${m.repo} from the cache`}>Remove</button>
            </li>
          ))}
        </ul>
      )}
      {cache.models.length > 1 && <button type="button" onClick={() => send({ type: 'cacheClear' })}>Remove all</button>}
    </details>
  );
}

export function ModelPanel() {
  const model = useStudio((s) => s.model);
  const progress = useStudio((s) => s.progress.model);
  const running = useStudio((s) => s.run.state === 'running' || s.run.state === 'paused' || s.run.state === 'starting' || s.run.state === 'stopping');
  const { setModelChoice, setHub, started } = useStudio.getState();
  const [files, setFiles] = useState<LocalFile[]>([]);
  const [dragging, setDragging] = useState(false);
  const fileInput = useRef<HTMLInputElement>(null);
  const dirInput = useRef<HTMLInputElement>(null);
  const loading = model.status === 'loading';

  const load = (source: ModelSource) => {
    started('model');
    send({ type: 'loadModel', source });
  };
  const loadChosen = () => {
    if (model.choice === 'builtin') load({ kind: 'builtin' });
    else if (model.choice === 'hub') load({ kind: 'hub', repo: model.hub.repo, revision: model.hub.revision, endpoint: model.hub.endpoint });
    else load({ kind: 'files', files });
  };
  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    // The DataTransfer can only be read during the event; the folder walk may continue after it.
    localFilesFromDrop(e.dataTransfer).then(
      (dropped) => {
        if (dropped.length) {
          setFiles(dropped);
          setModelChoice('files');
        }
      },
      (err: unknown) => {
        const { name, message } = describeError(err);
        useStudio.getState().pageError(name, message);
      },
    );
  };
  const preset = HUB_PRESETS.find((p) => p.id === model.hub.repo);
  const info = model.info;

  return (
    <section className="panel" aria-labelledby="model-title" data-testid="model-panel">
      <h2 id="model-title">Model</h2>
      <div className="segmented" role="radiogroup" aria-label="Model source">
        {CHOICES.map((c) => (
          <button key={c.value} type="button" role="radio" aria-checked={model.choice === c.value} className={model.choice === c.value ? 'on' : ''}
            onClick={() => {
              setModelChoice(c.value);
              // The user chose the Hub: now, and only now, ask whether it answers.
              if (c.value === 'hub') send({ type: 'hubCheck', endpoint: model.hub.endpoint, repo: model.hub.repo });
            }} data-testid={`model-choice-${c.value}`}>
            {c.label}
          </button>
        ))}
      </div>

      {model.choice === 'builtin' && (
        <>
          <p className="muted">
            A small GPT-2 (4 blocks, 64 channels, GPT-2&apos;s tokenizer) that this site generates with Hugging Face&apos;s initialization: it
            works offline and trains quickly on a GPU. Its samples start as noise and take on the corpus&apos;s style.
          </p>
          <div className="row">
            <button type="button" disabled={loading || running} data-testid="load-gpt2"
              onClick={() => {
                setModelChoice('hub');
                setHub({ repo: GPT2_124M.id, revision: 'main' });
                load({ kind: 'hub', repo: GPT2_124M.id, revision: 'main', endpoint: model.hub.endpoint });
              }}>
              Load {GPT2_124M.label} from the Hub
            </button>
          </div>
          <p className="muted">About {bytes(presetBytes(GPT2_124M))} from {hostOf(model.hub.endpoint)}, downloaded once and kept by the browser.</p>
        </>
      )}

      {model.choice === 'hub' && (
        <div className="stack">
          <div className="field">
            <label htmlFor="hub-preset">Preset</label>
            <select id="hub-preset" value={preset ? preset.id : ''} onChange={(e) => e.target.value && setHub({ repo: e.target.value })}>
              {HUB_PRESETS.map((p) => (
                <option key={p.id} value={p.id}>{p.label} — {p.id}</option>
              ))}
              <option value="">Other repository…</option>
            </select>
          </div>
          <TextField label="Repository id" value={model.hub.repo} onChange={(repo) => setHub({ repo })} placeholder="owner/name" testId="hub-repo" />
          <div className="row2">
            <TextField label="Revision" value={model.hub.revision} onChange={(revision) => setHub({ revision })} testId="hub-revision" />
            <TextField label="Endpoint" value={model.hub.endpoint} onChange={(endpoint) => setHub({ endpoint })} testId="hub-endpoint"
              hint="The Hub, a mirror, or a local server with the same URL layout." />
          </div>
          {model.hub.reachable === false && <p className="muted" role="status">{model.hub.detail}. The built-in model works offline.</p>}
          {preset && <p className="muted">About {bytes(presetBytes(preset))} to download once; the browser keeps it for later visits.</p>}
          <CacheList />
        </div>
      )}

      {model.choice === 'files' && (
        <div
          className={`dropzone${dragging ? ' over' : ''}`}
          onDragOver={(e) => {
            e.preventDefault();
            setDragging(true);
          }}
          onDragLeave={() => setDragging(false)}
          onDrop={onDrop}
        >
          <p>Drop a model folder, or <code>config.json</code> with <code>model.safetensors</code> (or a sharded set and its index),
            plus its tokenizer files.</p>
          <div className="row">
            <button type="button" onClick={() => fileInput.current?.click()}>Choose files…</button>
            <button type="button" onClick={() => dirInput.current?.click()}>Choose a folder…</button>
          </div>
          <input ref={fileInput} type="file" multiple hidden data-testid="model-files" aria-label="Model files"
            onChange={(e) => setFiles(localFilesFromInput(e.target.files ?? []))} />
          <input ref={dirInput} type="file" hidden aria-label="Model folder" {...{ webkitdirectory: '' }}
            onChange={(e) => setFiles(localFilesFromInput(e.target.files ?? []))} />
          {files.length > 0 && <p className="muted" data-testid="model-file-list">{files.map((f) => f.path).join(', ')}</p>}
        </div>
      )}

      <div className="row">
        <button type="button" className="primary" onClick={loadChosen} disabled={loading || running || (model.choice === 'files' && files.length === 0)} data-testid="load-model">
          {loading ? 'Loading…' : info ? 'Load this model' : 'Load model'}
        </button>
      </div>
      {progress && loading && <Progress {...progress} testId="model-progress" />}

      {info && (
        <dl className="kv compact" data-testid="model-info">
          <div><dt>Loaded</dt><dd>{info.name}</dd></div>
          <div><dt>Shape</dt><dd>{info.nLayer} blocks · {info.nEmbd} channels · {info.nHead} heads</dd></div>
          <div><dt>Vocabulary · context</dt><dd>{info.vocabSize.toLocaleString('en-US')} · {info.nPositions}</dd></div>
          <div><dt>Parameters</dt><dd>{count(info.params)} ({bytes(info.params * 4)} in float32)</dd></div>
          <div><dt>Tokenizer</dt><dd>{info.tokenizer}</dd></div>
        </dl>
      )}
    </section>
  );
}
