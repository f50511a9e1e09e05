// Whether a model fits the memory of the backend it is about to run on. Only wasm has a hard ceiling: its
// 32-bit linear memory grows to at most 4 GiB (65,536 pages, the maximum declared in tfjs-backend-wasm's
// binary), and the weights, the activations and tfjs's bookkeeping all live in it. SD 1.5 as float32 is
// 4.27 GB of weights alone, so on wasm it would fail part-way through loading or drawing with an opaque
// "memory access out of bounds"; it is refused up front instead, naming the way out.
import type { ComponentWeights } from '../weights/component-weights.ts';
import { ModelLoadError } from './errors.ts';

export const WASM_MEMORY_LIMIT_BYTES = 4 * 2 ** 30;
/**
 * Memory an image takes beyond the weights: the VAE decode of a 512×512 image peaked 1.74 GiB above the
 * weights on WebGPU (docs/benchmarks.md); the UNet step of batch 2 needed 0.45 GiB.
 */
export const WORKING_MEMORY_BYTES = 1.75 * 2 ** 30;

export class ModelTooLargeError extends ModelLoadError {
  constructor(message: string) {
    super(message);
    this.name = 'ModelTooLargeError';
  }
}

/** Bytes the weights take once widened to float32, as the engine holds them. */
export function float32WeightBytes(components: readonly ComponentWeights[]): number {
  let elements = 0;
  for (const c of components) for (const key of c.keys()) elements += c.shape(key).reduce((a, b) => a * b, 1);
  return elements * 4;
}

/** The most memory a backend can hold, or null where only the machine limits it. */
export function backendMemoryLimit(backend: string): number | null {
  return backend === 'wasm' ? WASM_MEMORY_LIMIT_BYTES : null;
}

const gib = (bytes: number) => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(2)} GiB` : `${(bytes / 2 ** 20).toFixed(1)} MiB`);

/**
 * Throws a ModelTooLargeError when weights plus working memory exceed the backend's limit. `chosenByAuto`:
 * the backend was picked by `auto` because no GPU backend started, which the message then says.
 */
export function checkModelFitsBackend(opts: {
  modelName: string; weightBytes: number; backend: string; chosenByAuto: boolean; limitBytes?: number | null;
}): void {
  const limit = opts.limitBytes === undefined ? backendMemoryLimit(opts.backend) : opts.limitBytes;
  if (limit === null || opts.weightBytes + WORKING_MEMORY_BYTES <= limit) return;
  const auto = opts.chosenByAuto ? ` (no GPU backend could be started, so auto chose ${opts.backend})` : '';
  throw new ModelTooLargeError(
    `${opts.modelName} is too large for the ${opts.backend} backend: its weights take ${gib(opts.weightBytes)} as float32 ` +
      `and drawing needs about ${gib(WORKING_MEMORY_BYTES)} more, but ${opts.backend} holds at most ${gib(limit)}${auto}. ` +
      'Run it on a GPU: the webgpu backend (GPU_BACKEND=webgpu for the bot, --backend webgpu for npm run imagine / teach), ' +
      'or tensorflow after installing @tensorflow/tfjs-node-gpu (or @tensorflow/tfjs-node on a CPU); or choose a smaller model.');
}
