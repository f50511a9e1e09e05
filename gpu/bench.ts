// Benchmarks, one module per subject under gpu/bench/: `tsx gpu/bench.ts <name> [options]`
// (npm run bench:engine -- [options]). Each prints a table; none asserts a speed.
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

const BENCHMARKS: Record<string, { describe: string; load: () => Promise<{ run(argv: readonly string[]): Promise<number> }> }> = {
  engine: {
    describe: 'text encoding, one UNet step, VAE decode and a whole image; [--model DIR] [--backend B] [--steps N] [--size S] [--scheduler S] [--architecture sd15|demo] [--repeat N] [--json FILE]',
    load: () => import('./bench/engine.ts'),
  },
  kernels: {
    describe: 'stock vs custom WebGPU kernels (matmul, conv, attention, GroupNorm, their gradients); [--repeat N] [--only SUBSTR] [--sweep] [--toggles T1,T2] [--small] [--json FILE]',
    load: () => import('./bench/kernels.ts'),
  },
  profile: {
    describe: 'per-kernel profile (GPU ms and dispatches by op) of an SD 1.5 UNet step and a training step, stock vs custom WebGPU kernels; [--size 512] [--repeat N] [--rows N] [--no-train] [--toggles T1,T2] [--json FILE]',
    load: () => import('./bench/profile.ts'),
  },
  train: {
    describe: 'one UNet training step (forward + backward to the conditioning) on any backend, tfjs\'s gradient tape vs the engine\'s: time, peak tensor memory, saved tensors, kernel calls; [--backend B] [--channels 320,640,1280,1280] [--size 512] [--batch 1] [--grad tfjs,lean] [--repeat N] [--detail] [--json FILE]',
    load: () => import('./bench/train-step.ts'),
  },
  teach: {
    describe: 'Perfusion teaching at SD 1.5 shapes: per-step time and projected 400-step time at batch 1 and 4 (effective 16), peak memory, vs PyTorch; [--backend B] [--batches 1,4] [--steps N] [--effective N] [--images N] [--model DIR] [--architecture sd15|demo] [--corpus N] [--no-memory] [--json FILE]',
    load: () => import('./perfusion/teach-bench.ts'),
  },
  verify: {
    describe: 'the tiny fixture pipeline on a backend against diffusers (5 sampler runs, every step) within 1e-3; [--backend webgpu] [--fixtures DIR] [--json FILE]',
    load: () => import('./bench/verify.ts'),
  },
  perfusion: {
    describe: "Perfusion's edit at SD 1.5 sizes: C inverse, concept geometry, edited K/V projections, covariance accumulation; [--backend B]",
    load: () => import('./perfusion/bench.ts'),
  },
};

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  const bench = name === undefined ? undefined : BENCHMARKS[name];
  if (!bench) {
    console.error(`${name === undefined ? '' : `bench: no benchmark named "${name}"\n`}usage: tsx gpu/bench.ts <benchmark> [options]\n` +
      Object.entries(BENCHMARKS).map(([n, b]) => `  ${n}: ${b.describe}`).join('\n'));
    return 2;
  }
  try {
    return await (await bench.load()).run(rest);
  } catch (err) {
    console.error(`bench ${name}: ${(err as Error).message}`);
    return 1;
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await main(process.argv.slice(2));
}
