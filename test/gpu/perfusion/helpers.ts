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

/** A random orthogonal n×n matrix (float64, row-major), by Gram-Schmidt of a random one. */
export function randomOrthogonal(n: number, next: () => number): Float64Array {
  const q = Float64Array.from({ length: n * n }, () => next());
  for (let i = 0; i < n; i++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let j = 0; j < i; j++) {
        let d = 0;
        for (let k = 0; k < n; k++) d += q[i * n + k]! * q[j * n + k]!;
        for (let k = 0; k < n; k++) q[i * n + k]! -= d * q[j * n + k]!;
      }
    }
    let norm = 0;
    for (let k = 0; k < n; k++) norm += q[i * n + k]! ** 2;
    for (let k = 0; k < n; k++) q[i * n + k]! /= Math.sqrt(norm);
  }
  return q;
}

/**
 * C = Q diag(λ) Qᵀ with λ log-spaced over [1, condition] (the shipped SD 1.5 C has a condition number ≈ 3.9e3),
 * and C⁻¹ = Q diag(1/λ) Qᵀ computed independently of any Cholesky code. Both float64, row-major.
 */
export function conditionedCovariance(n: number, next: () => number, condition = 4000): { c: Float64Array; cInv: Float64Array } {
  const q = randomOrthogonal(n, next);
  const lambda = Array.from({ length: n }, (_, i) => condition ** (i / (n - 1)));
  const c = new Float64Array(n * n);
  const cInv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let t = 0;
      for (let k = 0; k < n; k++) {
        s += q[k * n + i]! * lambda[k]! * q[k * n + j]!;
        t += (q[k * n + i]! * q[k * n + j]!) / lambda[k]!;
      }
      c[i * n + j] = s;
      cInv[i * n + j] = t;
    }
  }
  return { c, cInv };
}

export interface ReferenceConcept {
  iStar: ArrayLike<number>;
  oStar: ArrayLike<number>;
  beta: number;
  tau: number;
}

/**
 * The spec's edit for one token in float64, written independently of gpu/perfusion: α_c by its definition,
 * and for several concepts the exact projection I(IᵀC⁻¹I)⁻¹IᵀC⁻¹e (by Gaussian elimination) or Σ_c α_c i*_c.
 */
export function referenceEdit(
  e: ArrayLike<number>, w: ArrayLike<number>, out: number, cInv: ArrayLike<number>, concepts: ReferenceConcept[],
  projection: 'exact' | 'approx',
): { h: Float64Array; alpha: number[] } {
  const n = e.length;
  const cInvTimes = (x: ArrayLike<number>) => Array.from({ length: n }, (_, i) => {
    let s = 0;
    for (let j = 0; j < n; j++) s += cInv[i * n + j]! * x[j]!;
    return s;
  });
  const dotp = (a: ArrayLike<number>, b: ArrayLike<number>) => {
    let s = 0;
    for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
    return s;
  };
  const cInvE = cInvTimes(e);
  const alpha = concepts.map((c) => dotp(c.iStar, cInvE) / dotp(c.iStar, cInvTimes(c.iStar)));
  let coefficients: number[];
  if (projection === 'approx' || concepts.length === 1) {
    coefficients = alpha;
  } else {
    // solve G a = IᵀC⁻¹e with G = IᵀC⁻¹I
    const m = concepts.length;
    const g = concepts.map((a) => [...concepts.map((b) => dotp(a.iStar, cInvTimes(b.iStar))), dotp(a.iStar, cInvE)]);
    for (let col = 0; col < m; col++) {
      for (let row = col + 1; row < m; row++) {
        const f = g[row]![col]! / g[col]![col]!;
        for (let k = col; k <= m; k++) g[row]![k]! -= f * g[col]![k]!;
      }
    }
    coefficients = new Array(m).fill(0);
    for (let row = m - 1; row >= 0; row--) {
      let s = g[row]![m]!;
      for (let k = row + 1; k < m; k++) s -= g[row]![k]! * coefficients[k]!;
      coefficients[row] = s / g[row]![row]!;
    }
  }
  const residual = Float64Array.from(e);
  concepts.forEach((c, k) => {
    for (let i = 0; i < n; i++) residual[i]! -= coefficients[k]! * c.iStar[i]!;
  });
  const h = new Float64Array(out);
  for (let o = 0; o < out; o++) {
    let s = 0;
    for (let i = 0; i < n; i++) s += w[o * n + i]! * residual[i]!;
    concepts.forEach((c, k) => {
      s += sigmoid((alpha[k]! - c.beta) / c.tau) * c.oStar[o]!;
    });
    h[o] = s;
  }
  return { h, alpha };
}

/**
 * The calibration pattern of the fixture README: a red disc on vertical blue/white stripes, the disc shifted
 * by (dx, dy) pixels from the centre; 8-bit RGB, HWC.
 */
export function discOnStripes(dx: number, dy: number, size = 128): { width: number; height: number; rgb: Uint8Array } {
  const rgb = new Uint8Array(size * size * 3);
  const radius = (28 / 128) * size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const stripe = Math.floor((x / size) * 8) % 2 === 0;
      let colour = stripe ? [30, 60, 200] : [240, 240, 240];
      if ((x - size / 2 - dx) ** 2 + (y - size / 2 - dy) ** 2 < radius ** 2) colour = [220, 30, 30];
      rgb.set(colour, (y * size + x) * 3);
    }
  }
  return { width: size, height: size, rgb };
}
