// The register- and shared-memory-tiled fp32 GEMM body shared by the matmul and convolution programs.
//
// C[batch, M, N] = A[batch, M, K] · B[batch, K, N] (+ bias[N]), computed per workgroup as a BM×BN output tile:
// WX×WY threads (16×16), each holding TM×TN outputs in registers; K advances BK at a time through two
// workgroup-memory tiles, with the next tile's global loads issued before the current tile's arithmetic
// (register prefetch). Loads and stores are vec4 along the operand's contiguous axis; the thread's rows and
// columns are interleaved by 4·WY / 4·WX so that workgroup-memory reads of one warp fall on distinct banks.
// performance.md: this scheme (128×128 tile, 8×8 per thread, BK 16) ran 4096³ at 30 TFLOP/s on an H200.
//
// How an operand element is addressed is the program's business (plain matrix, transposed matrix, implicit
// im2col of a convolution input, flipped filter): it supplies WGSL functions the body calls, see `Operand`.

export interface GemmTile {
  /** output tile rows (M) and columns (N) per workgroup */
  bm: number;
  bn: number;
  /** K per step */
  bk: number;
  /** outputs per thread along M and N (multiples of 4) */
  tm: number;
  tn: number;
}

export const GEMM_TILES = {
  large: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8 },
  small: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4 },
} satisfies Record<string, GemmTile>;

export function gemmWorkgroupSize(t: GemmTile): [number, number, number] {
  return [t.bn / t.tn, t.bm / t.tm, 1];
}

export function gemmSharedBytes(t: GemmTile): number {
  return t.bk * (t.bm + t.bn) * 4;
}

/**
 * One operand's access pattern. `k4`: four consecutive k at a fixed row/column `o`; the program defines
 * `fn <name>Ctx(o: i32) -> <name>Ctx_t` (per-row setup, run once per thread) and
 * `fn <name>Load(c: <name>Ctx_t, k: i32) -> vec4<f32>` (zero outside the matrix).
 * `o4`: four consecutive rows/columns at a fixed k; the program defines `fn <name>Load4(k: i32, o: i32) -> vec4<f32>`.
 */
export type Operand = 'k4' | 'o4';

export interface GemmSpec {
  tile: GemmTile;
  /** WGSL expressions of the problem size (uniforms, so one pipeline serves many shapes) */
  m: string;
  n: string;
  k: string;
  a: Operand;
  b: Operand;
  /** WGSL added before `main` (the operand functions and anything they need) */
  helpers: string;
  /** bias[N] added in the epilogue (bound as `bias`, vec4) */
  bias: boolean;
  activation: 'linear' | 'relu';
}

/** Bounds a problem must meet for the vec4 paths: N%4 for the output, and the contiguous axis of each operand. */
export function gemmAligned(m: number, n: number, k: number, a: Operand, b: Operand): boolean {
  return n % 4 === 0 && (a === 'k4' ? k % 4 === 0 : m % 4 === 0) && (b === 'k4' ? k % 4 === 0 : n % 4 === 0);
}

/**
 * tfjs always binds its uniform block after the inputs; a shader that bakes every size as a constant must still
 * touch it, or the pipeline's automatic layout drops the binding and the bind group no longer matches.
 */
export const USE_UNIFORMS = '_ = uniforms.NAN;';

/** WGSL of the whole `main`; `batchIdx` (workgroup z) is a private the helpers may read. */
export function gemmShader(s: GemmSpec): string {
  const { bm, bn, bk, tm, tn } = s.tile;
  const [wx, wy] = gemmWorkgroupSize(s.tile);
  const threads = wx * wy;
  const lines: string[] = [];
  const emit = (l: string) => lines.push(l);

  const operand = (name: 'A' | 'B', kind: Operand, outer: number, base: string) => {
    const perThread = (outer * bk) / 4 / threads;
    if (!Number.isInteger(perThread) || perThread < 1) throw new Error(`GEMM tile ${outer}×${bk} does not split over ${threads} threads`);
    const setup: string[] = [];
    const load: string[] = [];
    const store: string[] = [];
    for (let l = 0; l < perThread; l++) {
      const i = `(tid + ${threads * l})`;
      if (kind === 'k4') {
        setup.push(`let ${name}o${l} = ${i} / ${bk / 4}; let ${name}kc${l} = (${i} % ${bk / 4}) * 4;`);
        setup.push(`let ${name}ctx${l} = ${name}Ctx(${base} + ${name}o${l});`);
        load.push(`r${name}${l} = ${name}Load(${name}ctx${l}, k0 + ${name}kc${l});`);
        for (let c = 0; c < 4; c++) {
          const comp = 'xyzw'[c];
          store.push(`s${name}[(${name}kc${l} + ${c}) * ${outer / 4} + ${name}o${l} / 4][${name}o${l} % 4] = r${name}${l}.${comp};`);
        }
      } else {
        setup.push(`let ${name}k${l} = ${i} / ${outer / 4}; let ${name}oc${l} = ${i} % ${outer / 4};`);
        load.push(`r${name}${l} = ${name}Load4(k0 + ${name}k${l}, ${base} + ${name}oc${l} * 4);`);
        store.push(`s${name}[${name}k${l} * ${outer / 4} + ${name}oc${l}] = r${name}${l};`);
      }
    }
    return { perThread, setup, load, store };
  };

  const A = operand('A', s.a, bm, 'm0');
  const B = operand('B', s.b, bn, 'n0');

  emit(`var<workgroup> sA : array<vec4<f32>, ${(bk * bm) / 4}>;`);
  emit(`var<workgroup> sB : array<vec4<f32>, ${(bk * bn) / 4}>;`);
  emit(`var<private> batchIdx : i32;`);
  emit(s.helpers);
  emit(`fn main() {`);
  emit(`  let tx = i32(localId.x); let ty = i32(localId.y); let tid = i32(localIndex);`);
  emit(`  batchIdx = i32(workgroupId.z);`);
  emit(`  ${USE_UNIFORMS}`);
  emit(`  let m0 = i32(workgroupId.y) * ${bm}; let n0 = i32(workgroupId.x) * ${bn};`);
  for (const l of [...A.setup, ...B.setup]) emit(`  ${l}`);
  for (let l = 0; l < A.perThread; l++) emit(`  var rA${l} : vec4<f32>;`);
  for (let l = 0; l < B.perThread; l++) emit(`  var rB${l} : vec4<f32>;`);
  const gm = tm / 4;
  const gn = tn / 4;
  for (let g = 0; g < gm; g++) for (let r = 0; r < 4; r++) for (let h = 0; h < gn; h++) emit(`  var acc${g}_${r}_${h} = vec4<f32>(0.0);`);
  emit(`  let numTiles = (${s.k} + ${bk - 1}) / ${bk};`);
  emit(`  var k0 = 0;`);
  for (const l of [...A.load, ...B.load]) emit(`  ${l}`);
  for (const l of [...A.store, ...B.store]) emit(`  ${l}`);
  emit(`  workgroupBarrier();`);
  emit(`  for (var t = 0; t < numTiles; t++) {`);
  emit(`    k0 = (t + 1) * ${bk};`);
  emit(`    if (t + 1 < numTiles) {`);
  for (const l of [...A.load, ...B.load]) emit(`      ${l}`);
  emit(`    }`);
  for (let kk = 0; kk < bk; kk++) {
    for (let g = 0; g < gm; g++) emit(`    let a${kk}_${g} = sA[${kk * (bm / 4) + g * wy} + ty];`);
    for (let h = 0; h < gn; h++) emit(`    let b${kk}_${h} = sB[${kk * (bn / 4) + h * wx} + tx];`);
    for (let g = 0; g < gm; g++) for (let r = 0; r < 4; r++) for (let h = 0; h < gn; h++) {
      emit(`    acc${g}_${r}_${h} = fma(vec4<f32>(a${kk}_${g}.${'xyzw'[r]}), b${kk}_${h}, acc${g}_${r}_${h});`);
    }
  }
  emit(`    workgroupBarrier();`);
  emit(`    if (t + 1 < numTiles) {`);
  for (const l of [...A.store, ...B.store]) emit(`      ${l}`);
  emit(`    }`);
  emit(`    workgroupBarrier();`);
  emit(`  }`);
  // Epilogue: bias, activation, vec4 stores.
  for (let g = 0; g < gm; g++) for (let r = 0; r < 4; r++) {
    emit(`  {`);
    emit(`    let row = m0 + ${g * 4 * wy} + ty * 4 + ${r};`);
    emit(`    if (row < ${s.m}) {`);
    for (let h = 0; h < gn; h++) {
      emit(`      {`);
      emit(`        let col = n0 + (${h * wx} + tx) * 4;`);
      emit(`        if (col < ${s.n}) {`);
      let v = `acc${g}_${r}_${h}`;
      if (s.bias) v = `(${v} + bias[col / 4])`;
      if (s.activation === 'relu') v = `max(${v}, vec4<f32>(0.0))`;
      emit(`          result[((batchIdx * ${s.m} + row) * ${s.n} + col) / 4] = ${v};`);
      emit(`        }`);
      emit(`      }`);
    }
    emit(`    }`);
    emit(`  }`);
  }
  emit(`}`);
  return lines.join('\n');
}
