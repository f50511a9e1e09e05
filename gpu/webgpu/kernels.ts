// Registers the project's WebGPU programs with TensorFlow.js's webgpu backend.
//
// Stock kernels replaced (each falls back to the stock kernel for problems outside its constraints):
//   BatchMatMul, _FusedMatMul        → MatMulTiledProgram      (matmul-program.ts)
//   Conv2D, FusedConv2D              → Conv2dTiledProgram      (conv2d-program.ts)
//   Conv2DBackpropInput (stride 1)   → Conv2dTiledProgram on the flipped filter
// New kernels (ops.ts defines them, their gradients, and the plain-tfjs path used on other backends):
//   PerfusionAttention               → FlashAttentionProgram   (attention-program.ts)
//   PerfusionAttentionGrad           → row statistics, dq and dk/dv programs (attention-grad-program.ts)
//   PerfusionGroupNorm               → GroupNorm programs      (groupnorm-program.ts)
//   PerfusionGroupNormGrad           → its input gradient      (groupnorm-grad-program.ts)
//   PerfusionLayerNorm(Grad)         → one row per workgroup   (layernorm-program.ts)
//   PerfusionGeglu(Grad)             → element-wise            (geglu-program.ts)
import '@tensorflow/tfjs-backend-webgpu';
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { runTiledMatMul } from './matmul-program.ts';
import { runTiledConv2d, runTiledConv2dBackpropInput, type ConvAttrs } from './conv2d-program.ts';
import { runFlashAttention } from './attention-program.ts';
import { runFlashAttentionGrad } from './attention-grad-program.ts';
import { runGroupNorm } from './groupnorm-program.ts';
import { runGroupNormGrad } from './groupnorm-grad-program.ts';
import { runLayerNorm, runLayerNormGrad } from './layernorm-program.ts';
import { runGeglu, runGegluGrad } from './geglu-program.ts';
import {
  FUSED_ATTENTION, FUSED_ATTENTION_GRAD, FUSED_GEGLU, FUSED_GEGLU_GRAD, FUSED_GROUP_NORM, FUSED_GROUP_NORM_GRAD, FUSED_LAYER_NORM,
  FUSED_LAYER_NORM_GRAD,
} from './ops.ts';
import type { WebGPUBackendLike } from './program-util.ts';

type KernelArgs = { inputs: Record<string, TensorInfo | undefined>; backend: WebGPUBackendLike; attrs: NamedAttrMap };
/** A custom kernel: its result, or null to hand the call to the stock kernel. */
type Override = (args: KernelArgs) => TensorInfo | null;

const overrides: Record<string, Override> = {
  BatchMatMul: ({ inputs, backend, attrs }) =>
    runTiledMatMul(backend, inputs.a!, inputs.b!, !!attrs.transposeA, !!attrs.transposeB, undefined, undefined),
  _FusedMatMul: ({ inputs, backend, attrs }) => inputs.preluActivationWeights ? null
    : runTiledMatMul(backend, inputs.a!, inputs.b!, !!attrs.transposeA, !!attrs.transposeB, inputs.bias, attrs.activation as string | undefined),
  Conv2D: ({ inputs, backend, attrs }) => runTiledConv2d(backend, inputs.x!, inputs.filter!, attrs as unknown as ConvAttrs),
  FusedConv2D: ({ inputs, backend, attrs }) => inputs.preluActivationWeights ? null
    : runTiledConv2d(backend, inputs.x!, inputs.filter!, attrs as unknown as ConvAttrs, inputs.bias, attrs.activation as string | undefined),
  Conv2DBackpropInput: ({ inputs, backend, attrs }) =>
    runTiledConv2dBackpropInput(backend, inputs.dy!, inputs.filter!, attrs as unknown as ConvAttrs & { inputShape: number[] }),
};

const newKernels: Record<string, (args: KernelArgs) => TensorInfo | TensorInfo[]> = {
  [FUSED_ATTENTION]: ({ inputs, backend, attrs }) => {
    const y = runFlashAttention(backend, inputs.q!, inputs.k!, inputs.v!, attrs.heads as number);
    if (!y) throw new Error(`${FUSED_ATTENTION}: shapes ${inputs.q!.shape} / ${inputs.k!.shape} are outside the fused program (check canFuseAttention first)`);
    return y;
  },
  [FUSED_ATTENTION_GRAD]: ({ inputs, backend, attrs }) =>
    runFlashAttentionGrad(backend, inputs.q!, inputs.k!, inputs.v!, inputs.o!, inputs.dy!, attrs.heads as number),
  [FUSED_GROUP_NORM]: ({ inputs, backend, attrs }) =>
    runGroupNorm(backend, inputs.x!, inputs.gamma!, inputs.beta!, attrs.groups as number, attrs.eps as number, !!attrs.silu),
  [FUSED_GROUP_NORM_GRAD]: ({ inputs, backend, attrs }) =>
    runGroupNormGrad(backend, inputs.x!, inputs.gamma!, inputs.beta!, inputs.dz!, attrs.groups as number, attrs.eps as number, !!attrs.silu),
  [FUSED_LAYER_NORM]: ({ inputs, backend, attrs }) => runLayerNorm(backend, inputs.x!, inputs.gamma!, inputs.beta!, attrs.eps as number),
  [FUSED_LAYER_NORM_GRAD]: ({ inputs, backend, attrs }) => runLayerNormGrad(backend, inputs.x!, inputs.gamma!, inputs.dy!, attrs.eps as number),
  [FUSED_GEGLU]: ({ inputs, backend }) => runGeglu(backend, inputs.x!),
  [FUSED_GEGLU_GRAD]: ({ inputs, backend }) => runGegluGrad(backend, inputs.x!, inputs.dy!),
};

let stock: Map<string, KernelConfig> | undefined;

/** Whether the custom kernels are registered for the webgpu backend now. */
export function customKernelsActive(): boolean {
  return stock !== undefined;
}

/**
 * Registers (true) or removes (false) the custom kernels; removing restores tfjs's stock kernels. Benchmarks
 * flip this to compare both on the same device.
 */
export function setCustomKernels(enabled: boolean): void {
  if (enabled === customKernelsActive()) return;
  if (enabled) {
    stock = new Map();
    for (const [name, override] of Object.entries(overrides)) {
      const original = tf.getKernel(name, 'webgpu');
      if (!original) throw new Error(`tfjs webgpu kernel ${name} is not registered`);
      stock.set(name, original);
      const fallback = original.kernelFunc;
      tf.unregisterKernel(name, 'webgpu');
      const kernelFunc = ((args: KernelArgs) => override(args) ?? fallback(args as never)) as unknown as KernelFunc;
      tf.registerKernel({ kernelName: name, backendName: 'webgpu', kernelFunc });
    }
    for (const [name, fn] of Object.entries(newKernels)) {
      tf.registerKernel({ kernelName: name, backendName: 'webgpu', kernelFunc: fn as unknown as KernelFunc });
    }
  } else {
    for (const [name, original] of stock!) {
      tf.unregisterKernel(name, 'webgpu');
      tf.registerKernel(original);
    }
    for (const name of Object.keys(newKernels)) tf.unregisterKernel(name, 'webgpu');
    stock = undefined;
  }
}
