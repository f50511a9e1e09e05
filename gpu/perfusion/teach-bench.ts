// `npm run bench:teach -- [--backend B] [--batches 1,4] [--steps N] [--effective N] [--images N] [--model DIR]
// [--architecture sd15|demo] [--corpus N] [--no-memory] [--json FILE]`: what teaching a concept costs.
//
// Without --model it builds SD 1.5's architecture with random weights made on the device (bench/engine.ts),
// estimates C from a short corpus through that text encoder (written to a temporary cache), and runs the real
// teachConcept on synthetic 512×512 pictures, at each micro-batch size with the accumulation that keeps the
// effective batch (16 by default). Per batch size it reports the median optimiser-step time after a warm-up
// step, the projected time of Perfusion's 400 steps, and the peak tensor memory of one micro-batch step
// (tf.profile); then compares with the PyTorch anchor of performance.md (H200, bf16 autocast: 132 ms per
// batch-16 step, ≈ 53 s for 400). If memory runs short, teachConcept lowers the batch itself; the table says
// which batch actually ran.
import { cpus, tmpdir } from 'node:os';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { backendInfo, gpuMemory, initBackend, releaseFreeGpuMemory, releaseWebGPU } from '../backend.ts';
import { buildRandomParts } from '../bench/engine.ts';
import { StableDiffusionPipeline } from '../pipeline.ts';
import { tensorMemoryProfile } from '../webgpu/profile.ts';
import type { BackendName } from '../types.ts';
import { modelCovariance } from './conditioner.ts';
import { DEFAULT_EFFECTIVE_BATCH, DEFAULT_TEACH_STEPS, teachConcept, type TeachImage } from './teach.ts';

/** performance.md: PyTorch on one H200, a concept-training-like step at batch 16 (forward + backward to the conditioning). */
const PYTORCH_STEP_MS = 132;
const PYTORCH_BATCH4_MS = 63.9;

/** A synthetic picture: a disc on stripes, its colours and place varied by `k`. */
function picture(side: number, k: number): TeachImage {
  const rgb = new Uint8Array(side * side * 3);
  const [cx, cy, r] = [side * (0.45 + 0.03 * k), side * (0.5 - 0.02 * k), side * 0.22];
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      const stripe = Math.floor((x / side) * 8 + k) % 2 === 0;
      const colour = (x - cx) ** 2 + (y - cy) ** 2 < r * r ? [220, 30 + 20 * k, 30] : stripe ? [30, 60, 200] : [240, 240, 240];
      rgb.set(colour, (y * side + x) * 3);
    }
  }
  return { width: side, height: side, rgb };
}

interface Measurement {
  requestedBatch: number;
  batch: number;
  accumulation: number;
  firstStepMs: number;
  stepMs: number[];
  peakBytes: number | null;
  /** the most GPU buffer memory allocated (tensors and tfjs's pool) seen at the end of a step; null off webgpu */
  gpuAllocatedBytes: number | null;
}

export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      backend: { type: 'string', default: 'auto' }, batches: { type: 'string', default: '1,4' }, steps: { type: 'string', default: '2' },
      effective: { type: 'string', default: String(DEFAULT_EFFECTIVE_BATCH) }, images: { type: 'string', default: '4' },
      model: { type: 'string' }, architecture: { type: 'string', default: 'sd15' }, corpus: { type: 'string', default: '256' },
      'no-memory': { type: 'boolean', default: false }, json: { type: 'string' },
    },
    strict: true,
  });
  const whole = (name: string, text: string, min = 1) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}; got ${text}`);
    return n;
  };
  const batches = values.batches.split(',').map((b) => whole('batches', b.trim()));
  const timedSteps = whole('steps', values.steps);
  const effective = whole('effective', values.effective);
  const imageCount = whole('images', values.images);
  const corpus = whole('corpus', values.corpus, 16);
  if (values.architecture !== 'sd15' && values.architecture !== 'demo') throw new Error(`--architecture must be sd15 or demo; got ${values.architecture}`);

  const loadStart = performance.now();
  let pipeline: StableDiffusionPipeline;
  let modelLabel: string;
  if (values.model) {
    pipeline = await StableDiffusionPipeline.load(values.model, { backend: values.backend as BackendName });
    modelLabel = `${pipeline.model.name} (${pipeline.model.dir})`;
  } else {
    const backend = await initBackend(values.backend as BackendName);
    pipeline = new StableDiffusionPipeline(buildRandomParts(values.architecture).parts, { backend });
    modelLabel = `random weights, ${values.architecture === 'sd15' ? 'SD 1.5' : 'demo'} architecture`;
    // making random weights leaves their temporaries in tfjs's GPU pool (loading a model folder releases them itself)
    await releaseFreeGpuMemory();
  }
  const cacheDir = mkdtempSync(join(tmpdir(), 'bench-teach-'));
  try {
    const loadMs = performance.now() - loadStart;
    const covStart = performance.now();
    await modelCovariance(pipeline, { cacheDir, corpusPrompts: corpus });
    const covarianceMs = performance.now() - covStart;
    const category = ['teddy', 'dog', 'cat', 'car'].find((w) => {
      try {
        pipeline.tokenizer.categoryTokenId(w);
        return true;
      } catch {
        return false;
      }
    }) ?? 'dog';
    const side = pipeline.model.resolution;
    const images = Array.from({ length: imageCount }, (_, k) => picture(side, k));
    const measurements: Measurement[] = [];
    for (const requested of batches) {
      const batchSize = Math.min(requested, effective);
      const gradientAccumulation = Math.ceil(effective / batchSize);
      const stamps: number[] = [];
      let gpuAllocatedBytes: number | null = null;
      let used = { batch: batchSize, accumulation: gradientAccumulation };
      const start = performance.now();
      await teachConcept(pipeline, {
        name: 'bench', category, images, steps: 1 + timedSteps, batchSize, gradientAccumulation, seed: 1, cacheDir,
        onProgress: (p) => {
          stamps.push(performance.now());
          const gpu = gpuMemory();
          if (gpu) gpuAllocatedBytes = Math.max(gpuAllocatedBytes ?? 0, gpu.allocatedBytes);
          used = { batch: p.batchSize ?? batchSize, accumulation: p.gradientAccumulation ?? gradientAccumulation };
          if (p.notice) console.error(`batch ${requested}: ${p.notice}`);
        },
      });
      const stepMs = stamps.slice(1).map((t, i) => t - stamps[i]!);
      let peakBytes: number | null = null;
      if (!values['no-memory']) {
        // one optimiser step of one micro-batch: the peak of a micro-batch's forward and backward, weights included
        // (GPU buffers in use where the backend has them: tfjs's own count includes every saved clone of a weight)
        const memory = await tensorMemoryProfile(async () => {
          await teachConcept(pipeline, { name: 'bench', category, images, steps: 1, batchSize: used.batch, gradientAccumulation: 1, seed: 1, cacheDir });
        });
        peakBytes = memory.gpuPeakBytes ?? memory.peakBytes;
      }
      measurements.push({ requestedBatch: requested, batch: used.batch, accumulation: used.accumulation, firstStepMs: stamps[0]! - start, stepMs, peakBytes, gpuAllocatedBytes });
      console.error(`batch ${used.batch} × ${used.accumulation}: steps ${stepMs.map((m) => m.toFixed(0)).join(', ')} ms`);
    }

    const info = backendInfo();
    const device = info.adapter ?? `${cpus()[0]?.model ?? 'CPU'} (${cpus().length} threads)`;
    const rows = measurements.map((m) => {
      const step = median(m.stepMs);
      const projected = (step * DEFAULT_TEACH_STEPS) / 1000;
      return [
        `${m.batch} × ${m.accumulation}${m.batch !== m.requestedBatch ? ` (asked ${m.requestedBatch})` : ''}`,
        // per sample, so that an effective batch other than 16 compares too
        ms(step), ms(step / m.accumulation), `${projected.toFixed(0)} s`, `${((step / effective) / (PYTORCH_STEP_MS / 16)).toFixed(1)}×`,
        m.peakBytes === null ? '–' : bytes(m.peakBytes), m.gpuAllocatedBytes === null ? '–' : bytes(m.gpuAllocatedBytes), ms(m.firstStepMs),
      ];
    });
    const m = tf.memory() as tf.MemoryInfo & { numBytesAllocatedInGPU?: number };
    console.log([
      `teach benchmark: backend ${pipeline.backend}, device ${device}`,
      `model: ${modelLabel} (${pipeline.model.resolution}×${pipeline.model.resolution}), loaded in ${ms(loadMs)}; C from ${corpus} corpus prompts in ${ms(covarianceMs)}`,
      `${imageCount} pictures, effective batch ${effective}; step times are medians of ${timedSteps} after one warm-up step`,
      '',
      table(['batch × accumulation', 'per step', 'per micro-batch', `${DEFAULT_TEACH_STEPS} steps`, 'vs PyTorch/sample', 'peak tensors', 'GPU allocated', 'first step (setup, compile)'], rows),
      '',
      `PyTorch anchor (performance.md, H200, bf16 autocast): ${PYTORCH_STEP_MS} ms per batch-16 step (${PYTORCH_BATCH4_MS} ms at batch 4), ` +
        `≈ ${((PYTORCH_STEP_MS * DEFAULT_TEACH_STEPS) / 1000).toFixed(0)} s for ${DEFAULT_TEACH_STEPS} steps; the issue's target: ${DEFAULT_TEACH_STEPS} steps within 300 s on an H200.`,
      'peak tensors: the most memory tensors held during one micro-batch step, weights included (webgpu: GPU buffers in use; '
        + 'elsewhere tf.profile\'s count); GPU allocated: the most GPU buffer memory (tensors and tfjs\'s pool of freed buffers) seen after a step.',
      `process RSS peak ${bytes(process.resourceUsage().maxRSS * 1024)}` +
        (m.numBytesAllocatedInGPU !== undefined ? `; GPU buffers allocated after the runs ${bytes(m.numBytesAllocatedInGPU)}` : ''),
    ].join('\n'));
    if (values.json) {
      writeFileSync(values.json, `${JSON.stringify({ backend: info, model: modelLabel, effective, measurements, loadMs, covarianceMs }, null, 1)}\n`);
    }
    return 0;
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
    pipeline.dispose();
    releaseWebGPU();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor(sorted.length / 2)]! : Number.NaN;
}

function ms(value: number): string {
  return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(1)} ms`;
}

function bytes(value: number): string {
  return value >= 2 ** 30 ? `${(value / 2 ** 30).toFixed(2)} GiB` : `${(value / 2 ** 20).toFixed(1)} MiB`;
}

function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const cells = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...cells.map((row) => row[c]!.length)));
  const line = (row: readonly string[]) => row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
