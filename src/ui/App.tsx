// The studio page. The engine runs in a Web Worker; this tree renders the store and sends
// requests. A good first run needs no reading: the built-in model and the sample corpus load by
// themselves from this site, and GPT-2 124M is one click away. Nothing leaves the page's origin
// until the user chooses the Hub (index.html's Content-Security-Policy holds the page to that).
import { useEffect } from 'react';
import { NO_WEBGPU_HELP } from '../engine/errors.ts';
import { AdapterPanel } from './AdapterPanel.tsx';
import { ChartsPanel } from './ChartsPanel.tsx';
import { DataPanel } from './DataPanel.tsx';
import { connectEngine, disconnectEngine, send } from './engine.ts';
import { EvalPanel } from './EvalPanel.tsx';
import { ExportPanel } from './ExportPanel.tsx';
import { LayersPanel } from './LayersPanel.tsx';
import { ModelPanel } from './ModelPanel.tsx';
import { Notices } from './Notices.tsx';
import { RunPanel } from './RunPanel.tsx';
import { SamplesPanel } from './SamplesPanel.tsx';
import { ResumeOffers, SavedRunsPanel } from './SavedRunsPanel.tsx';
import { useLeaveGuard } from './durability.ts';
import { SettingsPanel } from './SettingsPanel.tsx';
import { useStudio } from './store.ts';

/** Loads the defaults once: the built-in model (served by this site: no other origin is asked), then the sample corpus. */
function useFirstRunDefaults(): void {
  const adapterReady = useStudio((s) => s.adapter.status === 'ready');
  const modelStatus = useStudio((s) => s.model.status);
  const corpusStatus = useStudio((s) => s.corpus.status);
  useEffect(() => {
    if (adapterReady && modelStatus === 'none') {
      useStudio.getState().started('model');
      send({ type: 'loadModel', source: { kind: 'builtin' } });
    }
  }, [adapterReady, modelStatus]);
  useEffect(() => {
    if (modelStatus === 'ready' && corpusStatus === 'none') {
      const s = useStudio.getState();
      s.started('corpus');
      send({ type: 'loadCorpus', source: { kind: 'sample' }, options: { jsonlField: s.corpus.jsonlField, csvColumn: s.corpus.csvColumn }, valFraction: s.train.valFraction, seed: s.train.seed, contextLength: s.train.seq });
    }
  }, [modelStatus, corpusStatus]);
}

function AdapterChip() {
  const adapter = useStudio((s) => s.adapter);
  const text = adapter.status === 'ready' ? `${adapter.report.vendor} · ${adapter.report.architecture}` : adapter.status === 'probing' ? 'Finding a GPU…' : 'No WebGPU';
  return <span className={`chip adapter-${adapter.status}`} title="WebGPU adapter">{text}</span>;
}

export function App() {
  const apply = useStudio((s) => s.apply);
  useEffect(() => {
    // Without navigator.gpu on the page there is none in the worker either: say so at once.
    if (!('gpu' in navigator) || !navigator.gpu) {
      apply({ type: 'error', name: 'NoWebGPUError', message: `This browser exposes no WebGPU (navigator.gpu is missing). ${NO_WEBGPU_HELP}`, request: 'probe' });
      return;
    }
    connectEngine();
    send({ type: 'probe' });
    return () => disconnectEngine();
  }, [apply]);
  useFirstRunDefaults();
  useLeaveGuard();

  return (
    <div className="app">
      <header className="top">
        <div>
          <h1>WebGPU Fine-Tuning Studio</h1>
          <p className="sub">Fine-tune GPT-2 on your own GPU. Your text and the weights never leave this machine.</p>
        </div>
        <AdapterChip />
      </header>
      <Notices />
      <ResumeOffers />
      <main className="grid">
        <div className="col col-a">
          <ModelPanel />
          <DataPanel />
          <SettingsPanel />
        </div>
        <div className="col col-b">
          <RunPanel />
          <ChartsPanel />
          <SamplesPanel />
        </div>
        <div className="col col-c">
          <LayersPanel />
          <EvalPanel />
          <ExportPanel />
          <SavedRunsPanel />
          <AdapterPanel />
        </div>
      </main>
      <footer className="foot">
        <p>GPT-2 semantics as Hugging Face <code>GPT2LMHeadModel</code>; AdamW as{' '}
          <code>torch.optim.AdamW</code>. Exports load with <code>from_pretrained</code>.</p>
      </footer>
    </div>
  );
}
