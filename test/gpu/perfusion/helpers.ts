// Shared helpers of the Perfusion tests: the wasm backend, fixtures, float64 reference math.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { SafetensorsFile } from '../../../gpu/weights/safetensors.ts';

export async function useWasm(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
}

export function fixturePath(name: string): string {
  return new URL(`../../fixtures/${name}`, import.meta.url).pathname;
}

/** Every tensor of a safetensors file as float32, with the file's metadata. */
export function readFixture(name: string): { tensors: Map<string, { data: Float32Array; shape: number[] }>; metadata: Record<string, string> } {
  const file = SafetensorsFile.open(fixturePath(name));
  try {
    const tensors = new Map<string, { data: Float32Array; shape: number[] }>();
    for (const key of file.keys()) tensors.set(key, { data: file.readFloat32(key), shape: [...file.info(key).shape] });
    return { tensors, metadata: { ...file.metadata } };
  } finally {
    file.close();
  }
}

/** ‖a − b‖ / ‖b‖ */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/** Deterministic pseudo-random numbers (mulberry32), normal by Box-Muller. */
export function randomNormal(seed: number): () => number {
  let state = seed >>> 0;
  const uniform = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

export function randomVector(n: number, next: () => number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => next() * scale);
}

/** A random symmetric positive-definite n×n matrix (float64, row-major): A Aᵀ/n + shift·I. */
export function randomSpd(n: number, next: () => number, shift = 0.1): Float64Array {
  const a = Float64Array.from({ length: n * n }, () => next());
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i * n + k]! * a[j * n + k]!;
      c[i * n + j] = s / n + (i === j ? shift : 0);
    }
  }
  return c;
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}
