// Correctness on a real device: the whole tiny-model pipeline (test/fixtures/sd-tiny-a) on the chosen backend
// against diffusers' reference runs (ddim, pndm, euler, dpmpp-2m with a negative prompt, ddim without guidance),
// final image and latents after every step. The wasm backend matches these references within ~2e-6 (the test
// suite checks it), so a pass here within 1e-3 also bounds the distance between this backend and wasm.
//
//   tsx gpu/bench.ts verify [--backend webgpu] [--model test/fixtures/sd-tiny-a/model] [--json FILE]
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadPipeline } from '../index.ts';
import { backendInfo } from '../backend.ts';
import type { BackendName, SchedulerName } from '../types.ts';
import { SafetensorsFile } from '../weights/safetensors.ts';

const TOLERANCE = 1e-3;

const RUNS: Array<{ prefix: string; scheduler: SchedulerName; steps: number; prompt: string; negativePrompt?: string; guidance: number }> = [
  { prefix: 'ddim', scheduler: 'ddim', steps: 10, prompt: 'a photo of a dog', guidance: 7.5 },
  { prefix: 'pndm', scheduler: 'pndm', steps: 10, prompt: 'a photo of a dog', guidance: 7.5 },
  { prefix: 'euler', scheduler: 'euler', steps: 10, prompt: 'a photo of a dog', guidance: 7.5 },
  { prefix: 'dpmpp2m', scheduler: 'dpmpp-2m', steps: 12, prompt: 'a photo of a dog', negativePrompt: 'blurry', guidance: 7.5 },
  { prefix: 'ddim_nocfg', scheduler: 'ddim', steps: 5, prompt: 'a painting of a cat', guidance: 1 },
];

function relativeError(out: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (out.length !== ref.length) return Number.POSITIVE_INFINITY;
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ref.length; i++) {
    diff += (out[i]! - ref[i]!) ** 2;
    norm += ref[i]! ** 2;
  }
  return Math.sqrt(diff / norm);
}

function option(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

export async function run(argv: readonly string[]): Promise<number> {
  const backend = (option(argv, '--backend') ?? 'webgpu') as BackendName;
  const fixtures = option(argv, '--fixtures') ?? 'test/fixtures/sd-tiny-a';
  const modelDir = option(argv, '--model') ?? join(fixtures, 'model');
  const reference = SafetensorsFile.open(join(fixtures, 'reference.safetensors'));
  const pipeline = await loadPipeline(modelDir, { backend });
  const info = backendInfo();
  console.log(`verify: backend ${pipeline.backend}${info.adapter ? ` (${info.adapter})` : ''}, model ${modelDir}`);
  const rows: Array<{ run: string; image: number; worstStep: number; seconds: number; leaked: number; pass: boolean }> = [];
  try {
    for (const r of RUNS) {
      const before = tf.memory().numTensors;
      const perStep: Float32Array[] = [];
      const started = performance.now();
      const result = await pipeline.generate({
        prompt: r.prompt, negativePrompt: r.negativePrompt, steps: r.steps, guidance: r.guidance, scheduler: r.scheduler,
        latents: reference.readFloat32(`${r.prefix}.latents_init`),
      }, { onLatents: (_step, latents) => perStep.push(Float32Array.from(latents)) });
      const seconds = (performance.now() - started) / 1000;
      const image = relativeError(result.pixels, reference.readFloat32(`${r.prefix}.image`));
      let worstStep = 0;
      const stepsKey = `${r.prefix}.latents_per_step`;
      if (reference.has(stepsKey)) {
        const all = reference.readFloat32(stepsKey);
        const size = all.length / perStep.length;
        perStep.forEach((latents, i) => {
          worstStep = Math.max(worstStep, relativeError(latents, all.subarray(i * size, (i + 1) * size)));
        });
        if (size * perStep.length !== all.length) worstStep = Number.POSITIVE_INFINITY;
      }
      const leaked = tf.memory().numTensors - before;
      rows.push({ run: r.prefix, image, worstStep, seconds, leaked, pass: image <= TOLERANCE && worstStep <= TOLERANCE && leaked === 0 });
    }
  } finally {
    pipeline.dispose();
    reference.close();
  }
  console.log('| run | image rel. error | worst step rel. error | time (s) | leaked tensors | within 1e-3 |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    console.log(`| ${r.run} | ${r.image.toExponential(2)} | ${r.worstStep.toExponential(2)} | ${r.seconds.toFixed(2)} | ${r.leaked} | ${r.pass ? 'yes' : 'NO'} |`);
  }
  const json = option(argv, '--json');
  if (json) writeFileSync(json, JSON.stringify({ backend: pipeline.backend, adapter: info.adapter, rows }, null, 2));
  return rows.every((r) => r.pass) ? 0 : 1;
}
