// The weights of one model component (text_encoder, unet, vae), read from its safetensors file.
// A model part asks for each weight by its diffusers name and the shape its config implies; a
// disagreement is an error that names the key, so it can be found in the file.
import * as tf from '@tensorflow/tfjs-core';
import { SafetensorsFile } from './safetensors.ts';

export class WeightError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WeightError';
  }
}

/**
 * Where a model part gets its weights: a safetensors file (ComponentWeights), or random values of the right
 * shapes (benchmarks). Model parts depend on this interface only.
 */
export interface WeightSource {
  readonly component: string;
  has(key: string): boolean;
  /** one weight as float32, shape-checked; trailing 1s in the stored shape are tolerated */
  float32(key: string, expectedShape: readonly number[]): Float32Array;
  /** one weight as a float32 tensor of `expectedShape` */
  tensor(key: string, expectedShape: readonly number[]): tf.Tensor;
}

export class ComponentWeights implements WeightSource {
  private readonly used = new Set<string>();

  constructor(readonly component: string, private readonly file: SafetensorsFile) {}

  static open(component: string, path: string): ComponentWeights {
    return new ComponentWeights(component, SafetensorsFile.open(path));
  }

  get path(): string {
    return this.file.path;
  }

  has(key: string): boolean {
    return this.file.has(key);
  }

  keys(): string[] {
    return this.file.keys();
  }

  shape(key: string): readonly number[] {
    return this.require(key).shape;
  }

  /**
   * Reads one weight as float32 and checks its shape. `expectedShape` may omit trailing 1s that the file
   * has (conv-shaped [C,C,1,1] linear weights of old VAE files read as [C,C]).
   */
  float32(key: string, expectedShape: readonly number[]): Float32Array {
    const info = this.require(key);
    if (!sameShape(info.shape, expectedShape)) {
      throw new WeightError(
        `${this.component} weight "${key}" has shape [${info.shape.join(', ')}] but the config implies [${expectedShape.join(', ')}] (${this.file.path})`,
      );
    }
    this.used.add(key);
    return this.file.readFloat32(key);
  }

  /** Reads one weight into a float32 tensor of `expectedShape`. */
  tensor(key: string, expectedShape: readonly number[]): tf.Tensor {
    return tf.tensor(this.float32(key, expectedShape), [...expectedShape], 'float32');
  }

  /** Keys of the file that no model part asked for (reported by loaders to catch wiring mistakes). */
  unusedKeys(ignore: (key: string) => boolean = () => false): string[] {
    return this.file.keys().filter((k) => !this.used.has(k) && !ignore(k));
  }

  close(): void {
    this.file.close();
  }

  private require(key: string) {
    if (!this.file.has(key)) {
      throw new WeightError(`${this.component} weight "${key}" is missing from ${this.file.path}`);
    }
    return this.file.info(key);
  }
}

function sameShape(actual: readonly number[], expected: readonly number[]): boolean {
  const strip = (s: readonly number[], keep: number) => {
    const out = [...s];
    while (out.length > keep && out[out.length - 1] === 1) out.pop();
    return out;
  };
  const a = strip(actual, expected.length);
  return a.length === expected.length && a.every((d, i) => d === expected[i]);
}
