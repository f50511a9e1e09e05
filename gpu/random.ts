// Seeded standard-normal numbers computed in plain JavaScript, so the same seed gives the same initial
// latents on every TensorFlow.js backend (device random generators differ between backends and versions).
// Generator: xoshiro128** seeded through splitmix32; normals by the Box–Muller transform, both values of
// each pair used. Values are produced in NCHW order, the layout of GenerateRequest.latents.

/** The largest seed accepted (seeds are unsigned 32-bit integers, so they fit every chat UI and JSON). */
export const MAX_SEED = 0xffffffff;

export class SeededRandom {
  private readonly s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
      throw new RangeError(`seed must be a whole number from 0 to ${MAX_SEED}; got ${seed}`);
    }
    let x = seed >>> 0;
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
  }

  /** uniform 32-bit unsigned integer (xoshiro128**) */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2] ^= s[0]!;
    s[3] ^= s[1]!;
    s[1] ^= s[2]!;
    s[0] ^= s[3]!;
    s[2] ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** uniform in (0, 1), never 0 (Box–Muller takes its logarithm) */
  nextUniform(): number {
    return (this.nextUint32() + 0.5) / 4294967296;
  }

  nextNormal(): number {
    if (this.spare !== null) {
      const v = this.spare;
      this.spare = null;
      return v;
    }
    const radius = Math.sqrt(-2 * Math.log(this.nextUniform()));
    const angle = 2 * Math.PI * this.nextUniform();
    this.spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }

  /** `count` standard-normal values as float32 */
  normals(count: number): Float32Array {
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = this.nextNormal();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Initial latents NCHW [1, channels, height/8, width/8] for a seed: the same numbers on every backend. */
export function seededLatents(seed: number, channels: number, latentHeight: number, latentWidth: number): Float32Array {
  return new SeededRandom(seed).normals(channels * latentHeight * latentWidth);
}

/** A fresh seed for a request that did not give one. */
export function randomSeed(): number {
  return Math.floor(Math.random() * (MAX_SEED + 1));
}
