// The studio page. The engine runs in a Web Worker; this tree only renders the store.
import { useEffect, useRef } from 'react';
import { EngineClient } from '../worker/client.ts';
import { AdapterPanel } from './AdapterPanel.tsx';
import { useStudio } from './store.ts';
import { NO_WEBGPU_HELP } from '../worker/protocol.ts';

export function App() {
  const client = useRef<EngineClient | null>(null);
  const apply = useStudio((s) => s.apply);
  const selftestStarted = useStudio((s) => s.selftestStarted);

  useEffect(() => {
    // Without navigator.gpu on the page there is none in the worker either: say so at once.
    if (!('gpu' in navigator) || !navigator.gpu) {
      apply({ type: 'error', name: 'NoWebGPUError', message: `This browser exposes no WebGPU (navigator.gpu is missing). ${NO_WEBGPU_HELP}`, request: 'probe' });
      return;
    }
    const c = new EngineClient(apply);
    client.current = c;
    c.send({ type: 'probe' });
    return () => c.terminate();
  }, [apply]);

  const runSelftest = () => {
    selftestStarted();
    client.current?.send({ type: 'selftest', M: 96, N: 80, K: 72, seed: 7 });
  };

  return (
    <div className="app">
      <header className="top">
        <h1>WebGPU Fine-Tuning Studio</h1>
        <p className="sub">Fine-tune GPT-2 on your own GPU. Nothing leaves this machine.</p>
      </header>
      <main>
        <AdapterPanel onSelftest={runSelftest} />
      </main>
    </div>
  );
}
