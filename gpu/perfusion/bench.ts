// `npx tsx gpu/perfusion/bench.ts [--backend B]` (or as a gpu/bench.ts module: `run(argv)`): what Perfusion costs at SD 1.5's sizes (hidden 768, the 16 attn2
// layers), printed as a table. Random weights and concepts; the numbers are times, not outputs.
//
//   JS float64: inverting C, a concept set's geometry (one concept; three, exact)
//   device:     the 32 K/V projections of one UNet step for a CFG batch [2, 77, 768], plain and edited with
//               1 and 3 concepts; a training step's i* refresh (r and W i* for 32 matrices)
//   covariance: tokens per second folded into C (device products, float64 sums)
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, releaseWebGPU } from '../backend.ts';
import type { BackendName } from '../types.ts';
import { CovarianceAccumulator } from './covariance.ts';
import { PreparedConcepts, type PreparedProjection } from './edit.ts';
import { invertSpd } from './linalg.ts';

const HIDDEN = 768;
const OUT_DIMS = [320, 320, 640, 640, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320, 320];

function random(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/** Median milliseconds of `runs` calls after `warmup` ones. */
async function time(fn: () => Promise<void> | void, runs = 5, warmup = 2): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
  }
  return times.sort((a, b) => a - b)[Math.floor(runs / 2)]!;
}

/** An SPD matrix with a spread of eigenvalues like CLIP's: A Aᵀ/n + I. */
function covariance(n: number): Float64Array {
  const a = random(n * n, 7);
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i * n + k]! * a[j * n + k]!;
      c[i * n + j] = c[j * n + i] = s / n + (i === j ? 1 : 0);
    }
  }
  return c;
}

export async function runBenchmark(backend: BackendName): Promise<void> {
  const used = await initBackend(backend);
  const rows: [string, string][] = [];
  const c = covariance(HIDDEN);
  let cInv: Float64Array = new Float64Array(0);
  rows.push(['invert C (768×768, Cholesky, float64 JS)', `${(await time(() => { cInv = invertSpd(c, HIDDEN); }, 3, 1)).toFixed(1)} ms`]);
  const cInv32 = Float32Array.from(cInv);
  const gates = [0, 1, 2].map((k) => ({ iStar: random(HIDDEN, 100 + k), beta: 0.7, tau: 0.15 }));
  rows.push(['concept geometry, 1 concept (float64 JS)', `${(await time(() => PreparedConcepts.create(cInv32, HIDDEN, gates.slice(0, 1), 'exact').dispose())).toFixed(2)} ms`]);
  rows.push(['concept geometry, 3 concepts exact (float64 JS)', `${(await time(() => PreparedConcepts.create(cInv32, HIDDEN, gates, 'exact').dispose())).toFixed(2)} ms`]);

  const weights = OUT_DIMS.flatMap((d, l) => [tf.tensor2d(random(d * HIDDEN, 2 * l), [d, HIDDEN]), tf.tensor2d(random(d * HIDDEN, 2 * l + 1), [d, HIDDEN])]);
  const context = tf.tensor3d(random(2 * 77 * HIDDEN, 9), [2, 77, HIDDEN]);
  const sync = async (ts: tf.Tensor[]) => {
    await Promise.all(ts.map((t) => t.data()));
    tf.dispose(ts);
  };
  const plain = await time(() => sync(weights.map((w) => tf.tidy(() =>
    tf.reshape(tf.matMul(tf.reshape(context, [2 * 77, HIDDEN]), w, false, true), [2, 77, w.shape[0]])))));
  rows.push([`32 K/V projections, plain [2,77,768] (${used})`, `${plain.toFixed(2)} ms`]);
  for (const m of [1, 3]) {
    const prepared = PreparedConcepts.create(cInv32, HIDDEN, gates.slice(0, m), 'exact');
    const layers: PreparedProjection[] = weights.map((w) => prepared.forWeight(w));
    const targets = weights.map((w) => tf.tensor2d(random(m * w.shape[0], 3), [m, w.shape[0]]));
    const edited = await time(() => sync(layers.map((layer, i) => layer.apply(context, targets[i]!))));
    rows.push([`32 K/V projections, edited, ${m} concept${m > 1 ? 's' : ''} (${used})`, `${edited.toFixed(2)} ms (+${(edited - plain).toFixed(2)})`]);
    layers.forEach((l) => l.dispose());
    tf.dispose(targets);
    prepared.dispose();
  }
  rows.push([`training i* refresh: r and W i* for 32 matrices (${used})`, `${(await time(async () => {
    const prepared = PreparedConcepts.create(cInv32, HIDDEN, gates.slice(0, 1), 'exact');
    const layers = weights.map((w) => prepared.forWeight(w));
    await Promise.all(layers.map((l) => l.projectedBasis.data()));
    layers.forEach((l) => l.dispose());
    prepared.dispose();
  })).toFixed(2)} ms`]);
  tf.dispose([...weights, context]);

  const prompts = 64;
  const eos = Array.from({ length: prompts }, (_, i) => 8 + (i % 20));
  const encodings = random(prompts * 77 * HIDDEN, 11);
  const tokens = eos.reduce((a, e) => a + e + 1, 0);
  const accumulate = await time(async () => {
    const acc = new CovarianceAccumulator(HIDDEN);
    await acc.add({ encodings, eosPositions: eos });
    await acc.covariance();
  }, 3, 1);
  rows.push([`covariance: ${tokens} tokens of 64 prompts into C (${used})`, `${accumulate.toFixed(1)} ms (${Math.round((tokens / accumulate) * 1000)} tokens/s)`]);

  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`Perfusion at SD 1.5 sizes — backend ${used}`);
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
  releaseWebGPU();
}

/** The gpu/bench.ts entry: `[--backend B]` (default wasm). */
export async function run(argv: readonly string[]): Promise<number> {
  const { values } = parseArgs({ args: [...argv], options: { backend: { type: 'string', default: 'wasm' } } });
  await runBenchmark(values.backend as BackendName);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await run(process.argv.slice(2));
}
