// Gradients with the memory of a training step bounded by what the backward pass still needs.
//
// TensorFlow.js's own tf.grads / tf.variableGrads (tfjs-core 4.x engine.gradients) keep, until the whole
// backward pass has finished, every tensor any recorded kernel saved for its gradient and every intermediate
// gradient it computed. For the SD UNet that is the forward's saved activations plus a gradient for every edge
// of the graph: about 15 GiB per 512² sample, where the activations alone need a fraction of that.
//
// `gradients` here runs the same tape (the same kernels, gradient functions and results) and differs only in
// when tensors are freed:
// - while f runs, a kernel none of whose inputs depends on the xs is not recorded and what it saved is freed
//   at once (the text encoder's and the time embedding's frozen parts, the UNet's layers before the first
//   cross-attention);
// - kernels whose outputs do not lead to y free what they saved as soon as f has returned;
// - walking the tape backwards, each node's saved tensors and the gradients of its outputs are freed as soon as
//   the node's input gradients exist, and a gradient that arrives in several parts is summed as it arrives.
// So the backward pass holds the saved tensors of the nodes not yet visited plus the gradients in flight.
//
// It reaches into the engine's tape (tfjs-core 4.22: state.activeTape, addTapeNode, startTape/endTape), which is
// why it lives in one module with its own tests against tf.grads; nested gradients (a tape already recording)
// are handed to tfjs unchanged.
import * as tf from '@tensorflow/tfjs-core';

interface TapeNode {
  id: number;
  kernelName: string;
  inputs: Record<string, tf.Tensor>;
  outputs: tf.Tensor[];
  saved: tf.Tensor[];
  gradient?: (dys: (tf.Tensor | null)[]) => Record<string, () => tf.Tensor>;
}

type AddTapeNode = (kernelName: string, inputs: Record<string, tf.Tensor | null | undefined>, outputs: tf.Tensor[],
  gradientsFunc: unknown, saved: tf.Tensor[], attrs: unknown) => void;

interface EngineInternals {
  state: { gradientDepth: number; activeTape: TapeNode[] | null };
  addTapeNode: AddTapeNode;
  startTape(): void;
  endTape(): void;
  scopedRun<T>(start: () => void, end: () => void, f: () => T): T;
  tidy<T extends tf.TensorContainer>(name: string, f: () => T): T;
  gradients<T extends tf.Tensor>(f: () => T, xs: tf.Tensor[], dy?: T, allowNoGradients?: boolean): { value: T; grads: tf.Tensor[] };
}

function engineInternals(): EngineInternals {
  return tf.engine() as unknown as EngineInternals;
}

/**
 * The value of `f()` and its gradients with respect to `xs` (null where y does not depend on an x), like
 * tfjs's engine.gradients with allowNoGradients, freeing what the backward pass no longer needs as it goes.
 */
export function gradients<T extends tf.Tensor>(f: () => T, xs: readonly tf.Tensor[]): { value: T; grads: (tf.Tensor | null)[] } {
  if (xs.length === 0) throw new Error('gradients() needs at least one x');
  const engine = engineInternals();
  if (engine.state.gradientDepth > 0) {
    // a higher-order gradient: the outer tape must keep everything, as tfjs does
    const r = engine.gradients(f, [...xs], undefined, true);
    return { value: r.value, grads: r.grads.map((g) => g ?? null) };
  }
  const dependsOnX = new Set<number>(xs.map((x) => x.id));
  const addTapeNode = engine.addTapeNode;
  engine.addTapeNode = function recordIfDependent(kernelName, inputs, outputs, gradientsFunc, saved, attrs) {
    if (!Object.values(inputs).some((t) => t != null && dependsOnX.has(t.id))) {
      for (const s of saved) s.dispose();
      return;
    }
    for (const o of outputs) dependsOnX.add(o.id);
    addTapeNode.call(this, kernelName, inputs, outputs, gradientsFunc, saved, attrs);
  };
  let y: T;
  try {
    y = engine.scopedRun(() => engine.startTape(), () => engine.endTape(), () => engine.tidy('forward', f));
  } catch (err) {
    disposeTape(engine);
    throw err;
  } finally {
    engine.addTapeNode = addTapeNode;
  }
  const tape = engine.state.activeTape ?? [];
  if (!(y instanceof tf.Tensor)) {
    disposeTape(engine);
    throw new Error('The result y returned by f() must be a tensor.');
  }
  try {
    const path = nodesLeadingTo(tape, y);
    for (const node of tape) if (!path.has(node)) disposeAll(node.saved);
    // (tidy keeps tensors in arrays and plain objects, not in Maps)
    const grads = engine.tidy('backward', () => {
      const byId = backpropagate(tape.filter((n) => path.has(n)), y, xs, dependsOnX);
      return xs.map((x) => byId.get(x.id) ?? null) as tf.TensorContainer;
    }) as (tf.Tensor | null)[];
    return { value: y, grads };
  } catch (err) {
    y.dispose();
    throw err;
  } finally {
    disposeTape(engine);
  }
}

/** Nodes with an output from which y is reachable. */
function nodesLeadingTo(tape: readonly TapeNode[], y: tf.Tensor): Set<TapeNode> {
  const leadsToY = new Set<number>([y.id]);
  const nodes = new Set<TapeNode>();
  for (let i = tape.length - 1; i >= 0; i--) {
    const node = tape[i]!;
    if (!node.outputs.some((o) => leadsToY.has(o.id))) continue;
    nodes.add(node);
    for (const input of Object.values(node.inputs)) if (input) leadsToY.add(input.id);
  }
  return nodes;
}

/**
 * Walks `path` backwards from y: returns the gradients of the xs (tensor id → gradient); every other gradient
 * and every saved tensor is disposed once used.
 */
function backpropagate(path: readonly TapeNode[], y: tf.Tensor, xs: readonly tf.Tensor[], dependsOnX: ReadonlySet<number>): Map<number, tf.Tensor> {
  const xIds = new Set(xs.map((x) => x.id));
  const grads = new Map<number, tf.Tensor>([[y.id, tf.onesLike(y)]]);
  const held = new Set<tf.Tensor>(grads.values());
  try {
    for (let i = path.length - 1; i >= 0; i--) {
      const node = path[i]!;
      if (!node.gradient) throw new Error(`Cannot compute gradient: gradient function not found for ${node.kernelName}.`);
      const dys = node.outputs.map((o) => grads.get(o.id) ?? null);
      const names = Object.keys(node.inputs).filter((name) => { const t = node.inputs[name]; return t != null && dependsOnX.has(t.id); });
      // one scope per node: what its gradient function computes eagerly is freed with it
      const dxs = tf.tidy(() => {
        const fns = node.gradient!(dys);
        const out: Record<string, tf.Tensor> = {};
        for (const name of names) {
          if (!(name in fns)) throw new Error(`Cannot backprop through input ${name}. Available gradients found: ${Object.keys(fns)}.`);
          out[name] = fns[name]!();
        }
        return out;
      });
      for (const name of names) {
        let dx = dxs[name]!;
        const x = node.inputs[name]!;
        if (dx.dtype !== 'float32') throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input ${name} must have 'float32' dtype, but has '${dx.dtype}'`);
        if (!tf.util.arraysEqual(dx.shape, x.shape)) {
          throw new Error(`Error in gradient for op ${node.kernelName}. The gradient of input '${name}' has shape '${dx.shape}', which does not match the shape of the input '${x.shape}'`);
        }
        // a gradient function may hand back a tensor it was given or already returned: own a distinct one
        if (held.has(dx) || dys.includes(dx)) dx = dx.clone();
        const current = grads.get(x.id);
        if (current) {
          const sum = tf.add(current, dx);
          held.delete(current);
          current.dispose();
          dx.dispose();
          dx = sum;
        }
        grads.set(x.id, dx);
        held.add(dx);
      }
      disposeAll(node.saved);
      for (const o of node.outputs) {
        const dy = grads.get(o.id);
        if (dy && !xIds.has(o.id)) {
          grads.delete(o.id);
          held.delete(dy);
          dy.dispose();
        }
      }
    }
  } catch (err) {
    disposeAll([...held]);
    throw err;
  }
  for (const [id, g] of grads) {
    if (!xIds.has(id)) {
      g.dispose();
      grads.delete(id);
    }
  }
  return grads;
}

function disposeAll(tensors: readonly tf.Tensor[]): void {
  for (const t of tensors) t.dispose();
}

/** Frees what the recorded kernels saved and drops the tape (as tfjs does after a backward pass). */
function disposeTape(engine: EngineInternals): void {
  for (const node of engine.state.activeTape ?? []) disposeAll(node.saved);
  engine.state.activeTape = null;
}

/** tf.variableGrads (trainable variables only; f returns a scalar) through `gradients`. */
export function variableGrads(f: () => tf.Scalar, varList: readonly tf.Variable[]): { value: tf.Scalar; grads: tf.NamedTensorMap } {
  const trainable = varList.filter((v) => v.trainable);
  if (trainable.length === 0) throw new Error(`variableGrads() expects at least one of the ${varList.length} variables to be trainable`);
  const { value, grads } = gradients(f, trainable);
  if (value.rank !== 0) {
    tf.dispose([value, ...grads.filter((g): g is tf.Tensor => g !== null)]);
    throw new Error(`The f passed in variableGrads(f) must return a scalar, but it returned a rank-${value.rank} tensor`);
  }
  if (grads.every((g) => g === null)) {
    value.dispose();
    throw new Error('Cannot find a connection between any variable and the result of the loss function y=f(x).');
  }
  const named: tf.NamedTensorMap = {};
  trainable.forEach((v, i) => { if (grads[i]) named[v.name] = grads[i]!; });
  return { value, grads: named };
}

/** tf.grads: the gradients of f(...xs) with respect to each x (an error if y does not depend on one). */
export function grads(f: (...xs: tf.Tensor[]) => tf.Tensor): (xs: readonly tf.Tensor[]) => tf.Tensor[] {
  return (xs) => {
    const { value, grads: g } = gradients(() => f(...xs), xs);
    value.dispose();
    if (g.some((x) => x === null)) {
      tf.dispose(g.filter((x): x is tf.Tensor => x !== null));
      throw new Error('Cannot compute gradient of y=f(x) with respect to x. Make sure that the f you passed encloses all operations that lead from x to y.');
    }
    return g as tf.Tensor[];
  };
}
