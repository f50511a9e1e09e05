// AdamW as torch.optim.AdamW computes it (decoupled weight decay, bias-corrected moments), written with tfjs
// ops because TensorFlow.js has no AdamW. Parameters come in groups with their own learning rate, like torch's
// param_groups (Perfusion: the embedding at 0.006, the value targets at 0.03; spec §6.2).
//
//   p ← p·(1 − lr·λ);  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²
//   p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
import * as tf from '@tensorflow/tfjs-core';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

export interface ParameterGroup {
  learningRate: number;
  params: readonly tf.Variable[];
}

/** torch's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.01. */
export const ADAMW_DEFAULTS: Required<AdamWOptions> = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };

/** The optimiser's state, as plain arrays (for checkpoints): the step count and each parameter's two moments. */
export interface AdamWState {
  step: number;
  /** in parameter order (groups in order, params in order) */
  firstMoments: Float32Array[];
  secondMoments: Float32Array[];
}

/** Owns its moment tensors: dispose() when done. Only the parameters given get state. */
export class AdamW {
  readonly options: Required<AdamWOptions>;
  private readonly first: tf.Tensor[];
  private readonly second: tf.Tensor[];
  private stepCount = 0;

  constructor(readonly groups: readonly ParameterGroup[], options: AdamWOptions = {}) {
    this.options = { ...ADAMW_DEFAULTS, ...options };
    const params = this.params;
    if (new Set(params).size !== params.length) throw new Error('a parameter is listed twice');
    this.first = params.map((p) => tf.zerosLike(p));
    this.second = params.map((p) => tf.zerosLike(p));
  }

  get params(): tf.Variable[] {
    return this.groups.flatMap((g) => [...g.params]);
  }

  get step(): number {
    return this.stepCount;
  }

  /** One update; `grads[i]` belongs to `params[i]`. The gradients stay the caller's. */
  apply(grads: readonly tf.Tensor[]): void {
    const params = this.params;
    if (grads.length !== params.length) throw new Error(`${grads.length} gradients for ${params.length} parameters`);
    this.stepCount++;
    const { beta1, beta2, eps, weightDecay } = this.options;
    const correction1 = 1 - beta1 ** this.stepCount;
    const correction2Root = Math.sqrt(1 - beta2 ** this.stepCount);
    let i = 0;
    for (const group of this.groups) {
      const lr = group.learningRate;
      for (const p of group.params) {
        const g = grads[i]!;
        const [m, v, updated] = tf.tidy(() => {
          const m = tf.add(tf.mul(this.first[i]!, beta1), tf.mul(g, 1 - beta1));
          const v = tf.add(tf.mul(this.second[i]!, beta2), tf.mul(tf.square(g), 1 - beta2));
          const decayed = tf.mul(p, 1 - lr * weightDecay);
          const denominator = tf.add(tf.div(tf.sqrt(v), correction2Root), eps);
          return [m, v, tf.sub(decayed, tf.mul(tf.div(m, denominator), lr / correction1))];
        });
        p.assign(updated);
        updated.dispose();
        this.first[i]!.dispose();
        this.second[i]!.dispose();
        this.first[i] = m;
        this.second[i] = v;
        i++;
      }
    }
  }

  async state(): Promise<AdamWState> {
    const read = async (t: tf.Tensor) => Float32Array.from(await t.data());
    return { step: this.stepCount, firstMoments: await Promise.all(this.first.map(read)), secondMoments: await Promise.all(this.second.map(read)) };
  }

  /** Continues from a saved state (same parameters, same order). */
  restore(state: AdamWState): void {
    const params = this.params;
    if (state.firstMoments.length !== params.length || state.secondMoments.length !== params.length) {
      throw new Error(`the saved optimiser state has ${state.firstMoments.length} moments for ${params.length} parameters`);
    }
    params.forEach((p, i) => {
      for (const saved of [state.firstMoments[i]!, state.secondMoments[i]!]) {
        if (saved.length !== p.size) throw new Error(`saved moment ${i} has ${saved.length} values; the parameter has ${p.size}`);
      }
      this.first[i]!.dispose();
      this.second[i]!.dispose();
      this.first[i] = tf.tensor(state.firstMoments[i]!, p.shape);
      this.second[i] = tf.tensor(state.secondMoments[i]!, p.shape);
    });
    this.stepCount = state.step;
  }

  dispose(): void {
    tf.dispose([...this.first, ...this.second]);
  }
}
