// Data panel: the sample corpus or dropped text files (.txt, .md, .jsonl, .csv), tokenized in the
// worker with progress; the statistics and the train/validation split.
import { useRef, useState, type DragEvent } from 'react';
import type { CorpusSource } from '../worker/protocol.ts';
import { send } from './engine.ts';
import { NumberField, Progress, TextField } from './fields.tsx';
import { bytes, count } from './format.ts';
import { useStudio } from './store.ts';

export function DataPanel() {
  const corpus = useStudio((s) => s.corpus);
  const progress = useStudio((s) => s.progress.corpus);
  const train = useStudio((s) => s.train);
  const running = useStudio((s) => s.run.state === 'running' || s.run.state === 'paused' || s.run.state === 'starting' || s.run.state === 'stopping');
  const { setCorpusOptions, setTrain, started } = useStudio.getState();
  const [dragging, setDragging] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const loading = corpus.status === 'loading';

  const load = (source: CorpusSource) => {
    started('corpus');
    const s = useStudio.getState();
    send({ type: 'loadCorpus', source, options: { jsonlField: s.corpus.jsonlField, csvColumn: s.corpus.csvColumn }, valFraction: s.train.valFraction, seed: s.train.seed, contextLength: s.train.seq });
  };
  const loadFiles = (files: File[]) => {
    if (files.length) load({ kind: 'files', files });
  };
  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    if (!running) loadFiles([...e.dataTransfer.files]);
  };
  const info = corpus.info;
  const valError = train.valFraction >= 0 && train.valFraction < 1 ? undefined : 'A fraction in [0, 1).';

  return (
    <section className="panel" aria-labelledby="data-title" data-testid="data-panel">
      <h2 id="data-title">Data</h2>
      <div
        className={`dropzone${dragging ? ' over' : ''}`}
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={onDrop}
      >
        <p>Drop text files: <code>.txt</code> / <code>.md</code> (one document each), <code>.jsonl</code> (one per line),{' '}
          <code>.csv</code> (one per row), or nanoGPT / llm.c token files (<code>.bin</code>). They stay on this machine.</p>
        <div className="row">
          <button type="button" onClick={() => input.current?.click()} disabled={running || loading}>Choose files…</button>
          <button type="button" onClick={() => load({ kind: 'sample' })} disabled={running || loading} data-testid="sample-corpus">Use the sample (Shakespeare)</button>
        </div>
        <input ref={input} type="file" multiple hidden accept=".txt,.md,.jsonl,.ndjson,.csv,.bin,.tokens,text/plain" data-testid="corpus-files" aria-label="Corpus files"
          onChange={(e) => {
            loadFiles([...(e.target.files ?? [])]);
            e.target.value = '';
          }} />
      </div>
      <details className="more">
        <summary>Reading options</summary>
        <div className="row2">
          <TextField label=".jsonl field" value={corpus.jsonlField} onChange={(jsonlField) => setCorpusOptions({ jsonlField })} />
          <TextField label=".csv column" value={corpus.csvColumn} onChange={(csvColumn) => setCorpusOptions({ csvColumn })} />
        </div>
        <NumberField label="Validation fraction" value={train.valFraction} onChange={(valFraction) => setTrain({ valFraction })} error={valError} disabled={running}
          hint="Documents held out for validation (a single document is cut at a window boundary)." />
      </details>
      {progress && loading && <Progress {...progress} testId="corpus-progress" />}
      {info && (
        <>
          <dl className="kv compact" data-testid="corpus-info">
            <div><dt>Corpus</dt><dd>{info.name}</dd></div>
            <div><dt>Documents · characters</dt><dd>{count(info.documents)} · {count(info.characters)} ({bytes(info.bytes)})</dd></div>
            <div><dt>Tokens</dt><dd>{count(info.tokens)}</dd></div>
            <div><dt>Train · validation</dt><dd>{count(info.trainTokens)} · {count(info.valTokens)} tokens</dd></div>
            <div><dt>Windows of {info.contextLength}</dt><dd>{count(info.trainWindows)} train · {count(info.valWindows)} validation</dd></div>
          </dl>
          {info.splitMessage && <p className="muted">{info.splitMessage}</p>}
        </>
      )}
    </section>
  );
}
