// Per-kernel profile of a TensorFlow.js computation: calls, GPU dispatches and GPU time by op type.
//
// Built on tf.profile: on webgpu, the backend times every program it dispatches (each in its own compute pass
// with timestamp queries when the device has `timestamp-query`) and names them, so the dispatch count of a
// kernel is the number of programs it ran. Without timestamp queries (the GL-compat adapter) times are null but
// dispatches are still counted. Profiling serialises the GPU work: use it to see where time goes, and plain
// wall-clock runs to measure throughput.
import * as tf from '@tensorflow/tfjs-core';

export interface KernelProfileRow {
  /** tfjs kernel name, e.g. "BatchMatMul", "PerfusionAttention" */
  op: string;
  calls: number;
  /** GPU programs dispatched by these calls (0 for reshapes and for work tfjs ran on the CPU) */
  dispatches: number;
  /** summed GPU time of those programs, null when the device cannot time them */
  gpuMs: number | null;
  /** dispatches by program (class) name */
  programs: Record<string, number>;
}

export interface KernelProfile {
  rows: KernelProfileRow[];
  /** wall-clock time of the whole profiled run (inflated by profiling) */
  wallMs: number;
  /** whether GPU times are real timestamp measurements */
  timed: boolean;
  /** peak bytes held by tensors during the run */
  peakBytes: number;
}

/**
 * Runs `f` once under tf.profile and aggregates its kernels by op. `f` may return tensors: they are read
 * (so all GPU work is finished) and disposed.
 */
export async function profileKernels(f: () => tf.TensorContainer | Promise<tf.TensorContainer>): Promise<KernelProfile> {
  const timed = tf.getBackend() === 'webgpu' && hasTimestampQuery();
  const t0 = performance.now();
  const info = await tf.profile(async () => {
    const out = await f();
    const tensors = collectTensors(out);
    await Promise.all(tensors.map((t) => t.data()));
    tf.dispose(tensors);
    return [];
  });
  const wallMs = performance.now() - t0;
  const byOp = new Map<string, KernelProfileRow>();
  for (const k of info.kernels) {
    const row = byOp.get(k.name) ?? { op: k.name, calls: 0, dispatches: 0, gpuMs: timed ? 0 : null, programs: {} };
    row.calls++;
    for (const p of parsePrograms(String(k.extraInfo ?? ''))) {
      row.dispatches++;
      row.programs[p.name] = (row.programs[p.name] ?? 0) + 1;
      if (row.gpuMs !== null) row.gpuMs += p.ms;
    }
    if (row.gpuMs !== null && !k.extraInfo && typeof k.kernelTimeMs === 'number') row.gpuMs += k.kernelTimeMs;
    byOp.set(k.name, row);
  }
  const rows = [...byOp.values()].sort((a, b) => (b.gpuMs ?? 0) - (a.gpuMs ?? 0) || b.dispatches - a.dispatches);
  return { rows, wallMs, timed, peakBytes: info.peakBytes };
}

/** A fixed-width table: op, calls, dispatches, GPU ms and share, programs; `maxRows` keeps the costliest ops. */
export function formatProfile(p: KernelProfile, maxRows = Infinity): string {
  const total = p.rows.reduce((s, r) => s + (r.gpuMs ?? 0), 0);
  const dispatches = p.rows.reduce((s, r) => s + r.dispatches, 0);
  const lines = [
    `${'op'.padEnd(28)} ${'calls'.padStart(6)} ${'disp.'.padStart(6)} ${'GPU ms'.padStart(9)} ${'share'.padStart(6)}  programs`,
  ];
  if (p.rows.length > maxRows) lines.push(`(the ${maxRows} costliest of ${p.rows.length} ops)`);
  for (const r of p.rows.slice(0, maxRows)) {
    const ms = r.gpuMs === null ? '–' : r.gpuMs.toFixed(3);
    const share = r.gpuMs === null || total === 0 ? '' : `${((100 * r.gpuMs) / total).toFixed(1)}%`;
    const programs = Object.entries(r.programs).map(([n, c]) => `${n}×${c}`).join(' ');
    lines.push(`${r.op.padEnd(28)} ${String(r.calls).padStart(6)} ${String(r.dispatches).padStart(6)} ${ms.padStart(9)} ${share.padStart(6)}  ${programs}`);
  }
  lines.push(`${'total'.padEnd(28)} ${String(p.rows.reduce((s, r) => s + r.calls, 0)).padStart(6)} ${String(dispatches).padStart(6)} ${(p.timed ? total.toFixed(3) : '–').padStart(9)}`
    + `  wall ${p.wallMs.toFixed(1)} ms (profiling serialises GPU work), peak ${(p.peakBytes / 2 ** 20).toFixed(1)} MiB`);
  return lines.join('\n');
}

/** What `tensorMemoryProfile` measures. */
export interface TensorMemoryProfile {
  /**
   * tf.profile's peak: the most bytes of live tensors at a kernel boundary, tensors that existed before included.
   * tfjs counts a buffer once per tensor sharing it (reshapes, and the clones a gradient tape saves), so under a
   * tape this overstates the memory in use.
   */
  peakBytes: number;
  /** tensor bytes (as counted for peakBytes) when f was called */
  startBytes: number;
  /** webgpu: the most bytes of GPU buffers in use by tensors at a kernel boundary (each buffer once); else null */
  gpuPeakBytes: number | null;
  /** webgpu: GPU buffer bytes in use when f was called */
  gpuStartBytes: number | null;
  /** kernels run (every tfjs op, reshapes and clones included) */
  kernelCalls: number;
}

/**
 * Peak memory of `f` without tf.profile's per-kernel timing: on WebGPU with timestamp queries that timing reads
 * back every kernel, far too slow for the tens of thousands of kernels of a training step. The engine's profiler
 * is swapped for the duration (tfjs-core 4.x internals; for benchmarks only).
 */
export async function tensorMemoryProfile(f: () => Promise<unknown> | unknown): Promise<TensorMemoryProfile> {
  type ProfileKernel = (name: string, inputs: unknown, run: () => tf.Tensor[]) => unknown;
  const profiler = (tf.engine() as unknown as { profiler: { profileKernel: ProfileKernel } }).profiler;
  const gpu = tf.getBackend() === 'webgpu' ? (tf.backend() as unknown as { memory(): { numBytesInGPU: number } }) : null;
  const gpuStartBytes = gpu ? gpu.memory().numBytesInGPU : null;
  let gpuPeakBytes = gpuStartBytes;
  const timed = profiler.profileKernel;
  profiler.profileKernel = (kernelName, inputs, run) => {
    const outputs = run();
    if (gpu) gpuPeakBytes = Math.max(gpuPeakBytes!, gpu.memory().numBytesInGPU);
    return { kernelName, outputs, inputs, timeMs: Promise.resolve(0), extraInfo: Promise.resolve('') };
  };
  const startBytes = tf.memory().numBytes;
  try {
    const info = await tf.profile(async () => { await f(); return []; });
    return { peakBytes: Math.max(info.peakBytes, startBytes), startBytes, gpuPeakBytes, gpuStartBytes, kernelCalls: info.kernels.length };
  } finally {
    profiler.profileKernel = timed;
  }
}

function hasTimestampQuery(): boolean {
  const backend = tf.backend() as unknown as { device?: GPUDevice };
  return !!backend.device?.features.has('timestamp-query');
}

/** tfjs's webgpu `getExtraProfileInfo` is "Program: ms, Program: ms, …". */
function parsePrograms(extra: string): { name: string; ms: number }[] {
  if (!extra) return [];
  return extra.split(', ').map((part) => {
    const i = part.lastIndexOf(': ');
    return i < 0 ? { name: part, ms: 0 } : { name: part.slice(0, i), ms: Number(part.slice(i + 2)) || 0 };
  });
}

function collectTensors(c: tf.TensorContainer): tf.Tensor[] {
  if (c instanceof tf.Tensor) return [c];
  if (Array.isArray(c)) return c.flatMap((x) => collectTensors(x));
  if (c && typeof c === 'object' && !ArrayBuffer.isView(c)) return Object.values(c).flatMap((x) => collectTensors(x as tf.TensorContainer));
  return [];
}
