// Export: the fine-tuned model as a Hugging Face folder (.zip), the ONNX folder transformers.js
// loads (.zip), model.safetensors alone, or the LoRA weights (PEFT's folder) when LoRA trained.
// The worker builds the file; the page saves it. "Try the export" runs the ONNX model in
// onnxruntime-web inside the worker next to the engine and shows whether they agree.
import { useEffect, useState } from 'react';
import type { ExportFormat } from '../worker/protocol.ts';
import { send } from './engine.ts';
import { NumberField, Progress, TextField } from './fields.tsx';
import { bytes, rate } from './format.ts';
import { useStudio } from './store.ts';

const FORMATS: Array<{ format: ExportFormat; label: string; hint: string }> = [
  { format: 'hf-zip', label: 'Hugging Face folder (.zip)', hint: 'config, weights, tokenizer and a model card: loads with from_pretrained.' },
  { format: 'onnx-zip', label: 'ONNX for transformers.js (.zip)', hint: 'onnx/decoder_model_merged.onnx (+ 8-bit), config and tokenizer: AutoModelForCausalLM loads it.' },
  { format: 'safetensors', label: 'model.safetensors', hint: 'The weights alone, in Hugging Face names.' },
  { format: 'lora', label: 'LoRA weights (PEFT folder)', hint: 'adapter_config.json + adapter_model.safetensors (PEFT).' },
];

export function ExportPanel() {
  const info = useStudio((s) => s.model.info);
  const exports = useStudio((s) => s.exports);
  const progress = useStudio((s) => s.progress.export);
  const runState = useStudio((s) => s.run.state);
  const lora = useStudio((s) => s.train.lora.enabled);
  // Steps of a run still in progress (paused) count too: an export now holds them.
  const trained = useStudio((s) => s.model.trainedSteps + (s.run.state === 'paused' || s.run.state === 'running' ? s.run.step : 0));
  const { started } = useStudio.getState();
  const busy = exports.pending !== null || runState === 'running' || runState === 'starting' || runState === 'stopping';
  useEffect(() => () => {
    const last = useStudio.getState().exports.last;
    if (last) URL.revokeObjectURL(last.url);
  }, []);

  return (
    <section className="panel" aria-labelledby="export-title" data-testid="export-panel">
      <h2 id="export-title">Export</h2>
      <p className="muted">{info ? (trained > 0 ? `The fine-tuned weights (${trained} steps).` : 'Not fine-tuned yet: an export now holds the loaded weights.') : 'Load a model first.'}</p>
      <ul className="exports">
        {FORMATS.map((f) => (
          <li key={f.format}>
            <button type="button" disabled={!info || busy || (f.format === 'lora' && !lora)} data-testid={`export-${f.format}`}
              onClick={() => {
                started('export', f.format);
                send({ type: 'export', format: f.format });
              }}>
              {exports.pending === f.format ? 'Preparing…' : f.label}
            </button>
            <span className="hint">{f.format === 'lora' && !lora ? 'Turn LoRA on in the settings to train LoRA weights.' : f.hint}</span>
          </li>
        ))}
      </ul>
      {progress && exports.pending && <Progress {...progress} testId="export-progress" />}
      {exports.last && (
        <p data-testid="export-done">
          Saved <a href={exports.last.url} download={exports.last.fileName}>{exports.last.fileName}</a> ({bytes(exports.last.bytes)}).
        </p>
      )}
      <TryExport disabled={!info || busy} />
    </section>
  );
}

/** The ONNX export in onnxruntime-web next to the engine: greedy, same prompt, token for token. */
function TryExport({ disabled }: { disabled: boolean }) {
  const samplePrompt = useStudio((s) => s.sample.prompt);
  const state = useStudio((s) => s.tryExport);
  const { started } = useStudio.getState();
  const [prompt, setPrompt] = useState(samplePrompt);
  const [maxNew, setMaxNew] = useState(20);
  const r = state.result;
  return (
    <div className="try-export" data-testid="try-export">
      <h3>Try the export</h3>
      <p className="muted">The ONNX export runs in onnxruntime-web in this page (WebGPU where available, else WebAssembly) and continues the prompt greedily next to the studio's engine.</p>
      <TextField label="Prompt" value={prompt} onChange={setPrompt} testId="try-export-prompt" />
      <NumberField label="New tokens" value={maxNew} onChange={(v) => setMaxNew(Math.max(1, Math.min(200, Math.round(v))))} integer testId="try-export-tokens" />
      <button type="button" disabled={disabled || state.pending} data-testid="try-export-run"
        onClick={() => {
          started('tryExport');
          send({ type: 'tryExport', prompt, maxNewTokens: maxNew });
        }}>
        {state.pending ? 'Running both…' : 'Run both'}
      </button>
      {r && (
        <div data-testid="try-export-result">
          <p className={r.firstDifference === null ? 'agree' : 'differ'} data-testid="try-export-verdict">
            {r.firstDifference === null
              ? `They agree token for token (${r.engine.tokens.length} tokens).`
              : `They differ from new token ${r.firstDifference + 1} on (${r.engine.tokens[r.firstDifference] ?? 'end'} vs ${r.onnx.tokens[r.firstDifference] ?? 'end'}).`}
          </p>
          <table className="kv">
            <tbody>
              <tr><th>Studio engine (WebGPU)</th><td data-testid="try-export-engine-speed">{rate(r.engine.tokensPerSec, 'tokens')}</td></tr>
              <tr><th>onnxruntime-web ({r.provider === 'webgpu' ? 'WebGPU' : 'WebAssembly'})</th><td data-testid="try-export-onnx-speed">{rate(r.onnx.tokensPerSec, 'tokens')}</td></tr>
              <tr><th>decoder_model_merged.onnx</th><td>{bytes(r.onnxBytes)}</td></tr>
            </tbody>
          </table>
          <p className="text"><span className="prompt">{r.prompt}</span>{r.engine.text}</p>
          {r.firstDifference !== null && <p className="text base"><span className="prompt">{r.prompt}</span>{r.onnx.text}</p>}
        </div>
      )}
    </div>
  );
}
