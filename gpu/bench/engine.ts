// The engine benchmark: `npm run bench:engine -- [--model DIR] [--backend B] [--steps N] [--size S]
// [--scheduler S] [--architecture sd15|demo] [--repeat N] [--json FILE]`.
//
// Without --model it builds the real SD 1.5 architecture (CLIP ViT-L/14 text encoder, the 860M-parameter
// UNet, the VAE) with random weights made on the device (RandomWeights), so it runs anywhere the backend
// does, without a download; --architecture demo uses the tiny demo model's shapes instead. It times text
// encoding (batch 2), one UNet step (batch 2, as with guidance), one VAE decode and a whole image, and
// prints a table with the backend, the device and the memory in use and at its peak.
import { cpus } from 'node:os';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { backendInfo, gpuMemory, initBackend, releaseFreeGpuMemory, releaseWebGPU } from '../backend.ts';
import { parseClipTextConfig, parseSchedulerConfig, parseUNetConfig, parseVaeConfig } from '../model/configs.ts';
import { demoConfigs } from '../model/demo-model.ts';
import { DEMO_WORDS, learnBpe } from '../model/demo-bpe.ts';
import { StableDiffusionPipeline, type PipelineParts } from '../pipeline.ts';
import { defaultSchedulerName, isSchedulerName, SCHEDULER_NAMES } from '../schedulers/index.ts';
import { ClipTextEncoder, textEncoderParameterShapes } from '../sd/text-encoder.ts';
import { UNet2DConditionModel, unetParameterShapes } from '../sd/unet.ts';
import { AutoencoderKL, vaeParameterShapes } from '../sd/vae.ts';
import { ClipTokenizer } from '../text/tokenizer.ts';
import type { BackendName, SchedulerName } from '../types.ts';
import { tensorMemoryProfile } from '../webgpu/profile.ts';
import { RandomWeights } from './random-weights.ts';
import { SD15_CONFIGS } from '../model/sd15-configs.ts';

const PROMPT = 'a photo of a teddy bear wearing sunglasses on the beach, golden hour, highly detailed';

interface Row { phase: string; time: string; notes: string }

export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      model: { type: 'string' }, backend: { type: 'string', default: 'auto' }, steps: { type: 'string', default: '50' },
      size: { type: 'string' }, scheduler: { type: 'string' }, architecture: { type: 'string', default: 'sd15' },
      repeat: { type: 'string', default: '3' }, json: { type: 'string' },
    },
    strict: true,
  });
  const steps = Number(values.steps);
  const repeat = Number(values.repeat);
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`--steps must be a whole number ≥ 1; got ${values.steps}`);
  if (!Number.isInteger(repeat) || repeat < 1) throw new Error(`--repeat must be a whole number ≥ 1; got ${values.repeat}`);
  if (values.architecture !== 'sd15' && values.architecture !== 'demo') throw new Error(`--architecture must be sd15 or demo; got ${values.architecture}`);
  if (values.scheduler !== undefined && !isSchedulerName(values.scheduler)) {
    throw new Error(`--scheduler must be one of ${SCHEDULER_NAMES.join(', ')}; got ${values.scheduler}`);
  }

  const rows: Row[] = [];
  const results: Record<string, unknown> = {};
  const loadStart = performance.now();
  let pipeline: StableDiffusionPipeline;
  let modelLabel: string;
  let parameters: number | undefined;
  if (values.model) {
    pipeline = await StableDiffusionPipeline.load(values.model, { backend: values.backend as BackendName });
    modelLabel = `${pipeline.model.name} (${pipeline.model.dir})`;
  } else {
    const backend = await initBackend(values.backend as BackendName);
    const built = buildRandomParts(values.architecture);
    pipeline = new StableDiffusionPipeline(built.parts, { backend });
    parameters = built.parameters;
    modelLabel = `random weights, ${values.architecture === 'sd15' ? 'SD 1.5' : 'demo'} architecture`;
  }
  try {
    // weights are made or uploaded asynchronously on GPU backends: wait for them
    await syncDevice();
    const poolAfterBuild = gpuMemory();
    const releasedAfterLoad = await releaseFreeGpuMemory();
    const loadMs = performance.now() - loadStart;
    rows.push({ phase: 'load weights', time: ms(loadMs), notes: parameters ? `${parameters.toLocaleString('en-US')} parameters` : modelLabel });
    results.loadMs = loadMs;
    const memoryAfterLoad = memory();

    const size = values.size ? Number(values.size) : pipeline.model.resolution;
    const latentSide = size / 8;
    const uncondIds = pipeline.tokenize('');
    const condIds = pipeline.tokenize(PROMPT);

    const textTimes = await timeRepeated(repeat, () => pipeline.encodePrompt([uncondIds, condIds]));
    rows.push({ phase: 'text encoding (batch 2)', time: ms(median(textTimes)), notes: timesNote(textTimes) });
    results.textEncodeMs = textTimes;

    const context = pipeline.encodePrompt([uncondIds, condIds]);
    const sample = tf.randomNormal([2, latentSide, latentSide, 4], 0, 1, 'float32', 1) as tf.Tensor4D;
    const unetStep = () => pipeline.unet.forward(sample, 500, context);
    const unetTimes = await timeRepeated(repeat, unetStep);
    const peakOf = async (f: () => tf.Tensor) => {
      const m = await tensorMemoryProfile(async () => { const out = f(); await out.data(); out.dispose(); });
      return m.gpuPeakBytes ?? m.peakBytes;
    };
    const unetPeak = await peakOf(unetStep);
    rows.push({ phase: `UNet step (batch 2, ${latentSide}×${latentSide} latents)`, time: ms(median(unetTimes)), notes: timesNote(unetTimes) });
    results.unetStepMs = unetTimes;
    results.unetStepPeakBytes = unetPeak;

    const latent = tf.randomNormal([1, latentSide, latentSide, 4], 0, 1, 'float32', 2) as tf.Tensor4D;
    const decodeTimes = await timeRepeated(repeat, () => pipeline.vae.decode(latent));
    const decodePeak = await peakOf(() => pipeline.vae.decode(latent));
    rows.push({ phase: `VAE decode (${latentSide}×${latentSide} → ${size}×${size})`, time: ms(median(decodeTimes)), notes: timesNote(decodeTimes) });
    results.vaeDecodeMs = decodeTimes;
    results.vaeDecodePeakBytes = decodePeak;
    tf.dispose([context, sample, latent]);

    const scheduler = (values.scheduler as SchedulerName | undefined) ?? defaultSchedulerName(pipeline.schedulerConfig);
    const stepTimes: number[] = [];
    let last = performance.now();
    const genStart = last;
    const image = await pipeline.generate({
      prompt: PROMPT, steps, scheduler, width: size, height: size, seed: 1234,
      onStep: () => { const now = performance.now(); stepTimes.push(now - last); last = now; },
    });
    const genMs = performance.now() - genStart;
    const loopMs = stepTimes.reduce((a, b) => a + b, 0);
    rows.push({
      phase: `image ${image.width}×${image.height}, ${steps} steps (${scheduler})`, time: ms(genMs),
      notes: `${stepTimes.length} UNet calls, median ${ms(median(stepTimes))}/call; text + decode + PNG ${ms(genMs - loopMs)}`,
    });
    results.imageMs = genMs;
    results.imageStepMs = stepTimes;

    const info = backendInfo();
    const now = memory();
    const peakSource = now.numBytesInGPU !== undefined ? 'GPU buffers in use' : 'tf.profile peakBytes';
    const device = info.adapter ?? `${cpus()[0]?.model ?? 'CPU'} (${cpus().length} threads)`;
    const peakRss = process.resourceUsage().maxRSS * 1024;
    const memoryRows: Row[] = [
      { phase: 'tensors after loading', time: bytes(memoryAfterLoad.numBytes), notes: `${memoryAfterLoad.numTensors} tensors (tf.memory)` },
      { phase: 'tensors after the image', time: bytes(now.numBytes), notes: `${now.numTensors} tensors (tf.memory)` },
      { phase: 'peak during one UNet step', time: bytes(unetPeak), notes: `${peakSource}, weights included` },
      { phase: 'peak during one VAE decode', time: bytes(decodePeak), notes: `${peakSource}, weights included` },
      ...(poolAfterBuild
        ? [{
          phase: 'GPU buffers after loading', time: bytes(memoryAfterLoad.numBytesAllocatedInGPU ?? 0),
          notes: `${bytes(poolAfterBuild.allocatedBytes)} before the free pool (${bytes(releasedAfterLoad)}) was given back`,
        }]
        : []),
      ...(now.numBytesAllocatedInGPU !== undefined
        ? [{ phase: 'GPU buffers after the image', time: bytes(now.numBytesAllocatedInGPU), notes: `in use ${bytes(now.numBytesInGPU ?? 0)}; the rest is tfjs's pool of freed buffers (the working set)` }]
        : []),
      { phase: 'process RSS', time: bytes(process.memoryUsage().rss), notes: `peak ${bytes(peakRss)}` },
    ];
    results.memory = { afterBuild: poolAfterBuild, releasedAfterLoad, afterLoad: memoryAfterLoad, afterImage: now, rss: process.memoryUsage().rss, peakRss };
    results.backend = info;
    results.model = modelLabel;

    const out = [
      `engine benchmark: backend ${pipeline.backend}, device ${device}`,
      `model: ${modelLabel}; ${size}×${size}; times are medians of ${repeat} after one warm-up`,
      '',
      table(['phase', 'time', 'notes'], rows),
      '',
      table(['memory', 'bytes', 'notes'], memoryRows),
    ].join('\n');
    console.log(out);
    if (values.json) writeFileSync(values.json, `${JSON.stringify(results, null, 1)}\n`);
    return 0;
  } finally {
    pipeline.dispose();
    releaseWebGPU();
  }
}

/** The pipeline parts with random weights: SD 1.5's shapes, or the demo model's (also used by bench:teach). */
export function buildRandomParts(architecture: 'sd15' | 'demo'): { parts: PipelineParts; parameters: number } {
  const { vocab, merges } = learnBpe(DEMO_WORDS);
  const tokenizer = new ClipTokenizer({
    vocab, merges, bosToken: '<|startoftext|>', eosToken: '<|endoftext|>', padToken: '<|endoftext|>', unkToken: '<|endoftext|>', maxLength: 77,
  });
  const demo = demoConfigs(vocab.size, tokenizer.bosId, tokenizer.eosId);
  const raw = architecture === 'sd15' ? SD15_CONFIGS : demo;
  const textConfig = parseClipTextConfig(raw.textEncoder);
  const unetConfig = parseUNetConfig(raw.unet);
  const vaeConfig = parseVaeConfig(raw.vae);
  const schedulerConfig = parseSchedulerConfig(raw.scheduler);
  const textWeights = new RandomWeights('text_encoder', textEncoderParameterShapes(textConfig));
  const unetWeights = new RandomWeights('unet', unetParameterShapes(unetConfig));
  const vaeWeights = new RandomWeights('vae', vaeParameterShapes(vaeConfig));
  const textEncoder = new ClipTextEncoder(textConfig, textWeights);
  const unet = new UNet2DConditionModel(unetConfig, unetWeights);
  const vae = new AutoencoderKL(vaeConfig, vaeWeights);
  const vaeScale = 2 ** (vaeConfig.blockOutChannels.length - 1);
  return {
    parts: {
      tokenizer, textEncoder, unet, vae, schedulerConfig,
      model: {
        dir: '(in memory)', name: `random ${architecture} weights`, isDemo: false, hash: `random-${architecture}`,
        resolution: (unetConfig.sampleSize ?? 64) * vaeScale, defaultScheduler: defaultSchedulerName(schedulerConfig),
        hiddenSize: textConfig.hiddenSize,
      },
    },
    parameters: textWeights.parameterCount + unetWeights.parameterCount + vaeWeights.parameterCount,
  };
}

/** Runs `f` once to warm up (shader compilation, buffer pools), then `n` timed times, each read back. */
async function timeRepeated(n: number, f: () => tf.Tensor): Promise<number[]> {
  const warm = f();
  await warm.data();
  warm.dispose();
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    const out = f();
    await out.data();
    times.push(performance.now() - start);
    out.dispose();
  }
  return times;
}

async function syncDevice(): Promise<void> {
  const probe = tf.zeros([1]);
  await probe.data();
  probe.dispose();
}

function memory(): { numTensors: number; numBytes: number; numBytesInGPU?: number; numBytesAllocatedInGPU?: number } {
  const m = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number; numBytesAllocatedInGPU?: number };
  return { numTensors: m.numTensors, numBytes: m.numBytes, numBytesInGPU: m.numBytesInGPU, numBytesAllocatedInGPU: m.numBytesAllocatedInGPU };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function timesNote(times: readonly number[]): string {
  return `min ${ms(Math.min(...times))}, max ${ms(Math.max(...times))}`;
}

function ms(value: number): string {
  return value >= 10_000 ? `${(value / 1000).toFixed(1)} s` : value >= 1000 ? `${(value / 1000).toFixed(2)} s` : `${value.toFixed(1)} ms`;
}

function bytes(value: number): string {
  return value >= 2 ** 30 ? `${(value / 2 ** 30).toFixed(2)} GiB` : `${(value / 2 ** 20).toFixed(1)} MiB`;
}

function table(header: [string, string, string], rows: readonly Row[]): string {
  const cells = [header, ...rows.map((r) => [r.phase, r.time, r.notes])];
  const widths = [0, 1].map((c) => Math.max(...cells.map((row) => row[c]!.length)));
  const line = (row: readonly string[]) => `${row[0]!.padEnd(widths[0]!)}  ${row[1]!.padStart(widths[1]!)}  ${row[2]}`;
  return [line(cells[0]!), line(['-'.repeat(widths[0]!), '-'.repeat(widths[1]!), '-'.repeat(5)]), ...cells.slice(1).map(line)].join('\n');
}
