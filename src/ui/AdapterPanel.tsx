// Shows the WebGPU adapter the engine got and the limits that matter for training, a GPU
// self-test, and (with ?debug in the address) buttons that poison a weight with NaN (the next step's
// loss is non-finite) and that destroy the device as a driver
// reset would, to try recovery without reloading.
import type { AdapterReport } from '../worker/protocol.ts';
import { send } from './engine.ts';
import { bytes } from './format.ts';
import { useStudio } from './store.ts';

function Limits({ report }: { report: AdapterReport }) {
  const l = report.limits;
  const rows: Array<[string, string]> = [
    ['Vendor', report.vendor],
    ['Architecture', report.architecture],
    ['Description', report.description || '—'],
    ['Largest storage binding', bytes(l.maxStorageBufferBindingSize)],
    ['Largest buffer', bytes(l.maxBufferSize)],
    ['Workgroup storage', `${l.maxComputeWorkgroupStorageSize / 1024} KiB`],
    ['Invocations per workgroup', String(l.maxComputeInvocationsPerWorkgroup)],
    ['shader-f16', report.features.includes('shader-f16') ? 'yes' : 'no'],
    ['subgroups', report.features.includes('subgroups') ? 'yes' : 'no'],
  ];
  return (
    <dl className="kv compact" data-testid="adapter-limits">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

export function AdapterPanel() {
  const adapter = useStudio((s) => s.adapter);
  const selftest = useStudio((s) => s.selftest);
  const tune = useStudio((s) => s.tune);
  const running = useStudio((s) => ['starting', 'running', 'paused', 'stopping'].includes(s.run.state));
  const debug = typeof location !== 'undefined' && new URLSearchParams(location.search).has('debug');
  const runSelftest = () => {
    useStudio.getState().started('selftest');
    send({ type: 'selftest', M: 96, N: 80, K: 72, seed: 7 });
  };
  const runTune = () => {
    useStudio.getState().started('tune');
    send({ type: 'tune' });
  };
  return (
    <section className="panel" aria-labelledby="adapter-title">
      <h2 id="adapter-title">GPU</h2>
      {adapter.status === 'probing' && <p role="status">Looking for a WebGPU adapter…</p>}
      {adapter.status === 'unavailable' && <p className="field-error">{adapter.reason}</p>}
      {adapter.status === 'ready' && (
        <>
          <p data-testid="adapter-status" className="ok">
            Adapter: {adapter.report.vendor} · {adapter.report.architecture}
          </p>
          <Limits report={adapter.report} />
          <div className="row wrap">
            <button type="button" onClick={runSelftest} disabled={selftest.status === 'running'}>
              Run GPU self-test
            </button>
            <button type="button" onClick={runTune} disabled={tune.status === 'running' || running} title="Times matmul tilings on this GPU and keeps the fastest for the next runs">
              Tune matmul tiles
            </button>
            {debug && <button type="button" className="danger" onClick={() => send({ type: 'loseDevice' })} data-testid="lose-device">Simulate a lost device</button>}
            {debug && (
              <button type="button" className="danger" onClick={() => send({ type: 'poisonWeights' })} data-testid="poison-weights" title="For a paused run: its next loss becomes NaN">
                Poison a weight (NaN)
              </button>
            )}
          </div>
          <p data-testid="selftest" role="status" aria-live="polite" className="muted">
            {selftest.status === 'running' && 'Running a 96×80×72 matmul in the worker…'}
            {selftest.status === 'done' &&
              `Self-test passed: ${selftest.result.M}×${selftest.result.N}×${selftest.result.K} matmul, max error ${selftest.result.maxAbsError.toExponential(2)}, ${selftest.result.ms.toFixed(0)} ms`}
            {selftest.status === 'failed' && `Self-test failed: ${selftest.message}`}
          </p>
          <p data-testid="tune" role="status" aria-live="polite" className="muted">
            {tune.status === 'running' && 'Timing matmul tilings at the model\'s training shapes (seconds on a GPU, minutes on a software adapter)…'}
            {tune.status === 'done' && `Tuned; the next runs use: ${tune.lines.join('; ')}`}
            {tune.status === 'failed' && `Tuning failed: ${tune.message}`}
          </p>
        </>
      )}
    </section>
  );
}
