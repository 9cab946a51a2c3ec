// Shows the WebGPU adapter the engine got and the limits that matter for training,
// or why there is none and where WebGPU works.
import type { AdapterReport } from '../worker/protocol.ts';
import { useStudio } from './store.ts';

function mib(n: number): string {
  return n >= 1 << 30 ? `${(n / (1 << 30)).toFixed(n % (1 << 30) ? 1 : 0)} GiB` : `${Math.round(n / (1 << 20))} MiB`;
}

function Limits({ report }: { report: AdapterReport }) {
  const l = report.limits;
  const rows: Array<[string, string]> = [
    ['Vendor', report.vendor],
    ['Architecture', report.architecture],
    ['Description', report.description || '—'],
    ['Largest storage binding', mib(l.maxStorageBufferBindingSize)],
    ['Largest buffer', mib(l.maxBufferSize)],
    ['Workgroup storage', `${l.maxComputeWorkgroupStorageSize / 1024} KiB`],
    ['Invocations per workgroup', String(l.maxComputeInvocationsPerWorkgroup)],
    ['shader-f16', report.features.includes('shader-f16') ? 'yes' : 'no'],
    ['subgroups', report.features.includes('subgroups') ? 'yes' : 'no'],
  ];
  return (
    <dl className="kv" data-testid="adapter-limits">
      {rows.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </div>
      ))}
    </dl>
  );
}

export function AdapterPanel({ onSelftest }: { onSelftest: () => void }) {
  const adapter = useStudio((s) => s.adapter);
  const selftest = useStudio((s) => s.selftest);
  return (
    <section className="panel" aria-labelledby="adapter-title">
      <h2 id="adapter-title">GPU</h2>
      {adapter.status === 'probing' && <p role="status">Looking for a WebGPU adapter…</p>}
      {adapter.status === 'unavailable' && (
        <div className="notice error" role="alert" data-testid="no-webgpu">
          <strong>WebGPU is not available here.</strong>
          <p>{adapter.reason}</p>
        </div>
      )}
      {adapter.status === 'ready' && (
        <>
          <p data-testid="adapter-status" className="ok">
            Adapter: {adapter.report.vendor} · {adapter.report.architecture}
          </p>
          <Limits report={adapter.report} />
          <div className="row">
            <button type="button" onClick={onSelftest} disabled={selftest.status === 'running'}>
              Run GPU self-test
            </button>
            <span data-testid="selftest" role="status" aria-live="polite">
              {selftest.status === 'running' && 'Running a 96×80×72 matmul in the worker…'}
              {selftest.status === 'done' &&
                `Self-test passed: ${selftest.result.M}×${selftest.result.N}×${selftest.result.K} matmul, max error ${selftest.result.maxAbsError.toExponential(2)}, ${selftest.result.ms.toFixed(0)} ms`}
              {selftest.status === 'failed' && `Self-test failed: ${selftest.message}`}
            </span>
          </div>
        </>
      )}
    </section>
  );
}
