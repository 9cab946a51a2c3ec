// Per-step overhead counters for any GPUDevice: compute passes, dispatches, submits (and the
// command buffers in them), queue writes, and pipeline and bind-group switches inside passes.
// The device's methods are wrapped in place, so the engine and TensorFlow.js are counted the
// same way without either knowing. Fixed per-step work, not FLOPs, is what limits small models
// and real GPUs; these numbers say where it goes.

export interface OverheadCounts {
  passes: number;
  dispatches: number;
  submits: number;
  commandBuffers: number;
  /** queue.writeBuffer calls (uploads of tokens, uniforms, ...) */
  writes: number;
  /** setPipeline with a pipeline other than the pass's current one */
  pipelineSwitches: number;
  /** setBindGroup with a group other than the one already at that index */
  bindGroupSwitches: number;
}

export interface Counter {
  /** counts since the last reset */
  readonly counts: OverheadCounts;
  reset(): void;
}

const zero = (): OverheadCounts => ({ passes: 0, dispatches: 0, submits: 0, commandBuffers: 0, writes: 0, pipelineSwitches: 0, bindGroupSwitches: 0 });

const counters = new WeakMap<GPUDevice, Counter>();

/** Wraps `device` (once) so its command recording is counted; returns its counter. */
export function countDevice(device: GPUDevice): Counter {
  const known = counters.get(device);
  if (known) return known;
  const state = { counts: zero() };
  const counter: Counter = {
    get counts() {
      return { ...state.counts };
    },
    reset() {
      state.counts = zero();
    },
  };
  const createEncoder = device.createCommandEncoder.bind(device);
  device.createCommandEncoder = (desc?: GPUCommandEncoderDescriptor) => {
    const enc = createEncoder(desc);
    const begin = enc.beginComputePass.bind(enc);
    enc.beginComputePass = (pd?: GPUComputePassDescriptor) => {
      const pass = begin(pd);
      const c = state.counts;
      c.passes++;
      let pipeline: GPUComputePipeline | null = null;
      const groups: Array<GPUBindGroup | null | undefined> = [];
      const setPipeline = pass.setPipeline.bind(pass);
      pass.setPipeline = (p: GPUComputePipeline) => {
        if (p !== pipeline) state.counts.pipelineSwitches++;
        pipeline = p;
        setPipeline(p);
      };
      const setBindGroup = pass.setBindGroup.bind(pass) as (i: number, g: GPUBindGroup | null, ...rest: unknown[]) => void;
      pass.setBindGroup = ((i: number, g: GPUBindGroup | null, ...rest: unknown[]) => {
        if (groups[i] !== g || rest.length) state.counts.bindGroupSwitches++;
        groups[i] = g;
        setBindGroup(i, g, ...rest);
      }) as GPUComputePassEncoder['setBindGroup'];
      const dispatch = pass.dispatchWorkgroups.bind(pass);
      pass.dispatchWorkgroups = (x: number, y?: number, z?: number) => {
        state.counts.dispatches++;
        dispatch(x, y, z);
      };
      const indirect = pass.dispatchWorkgroupsIndirect.bind(pass);
      pass.dispatchWorkgroupsIndirect = (b: GPUBuffer, o: number) => {
        state.counts.dispatches++;
        indirect(b, o);
      };
      return pass;
    };
    return enc;
  };
  const queue = device.queue;
  const submit = queue.submit.bind(queue);
  queue.submit = (buffers: Iterable<GPUCommandBuffer>) => {
    const list = [...buffers];
    state.counts.submits++;
    state.counts.commandBuffers += list.length;
    submit(list);
  };
  const write = queue.writeBuffer.bind(queue) as (...a: unknown[]) => void;
  queue.writeBuffer = ((...a: unknown[]) => {
    state.counts.writes++;
    write(...a);
  }) as GPUQueue['writeBuffer'];
  counters.set(device, counter);
  return counter;
}
