// Small float64 linear algebra on the JS side: the covariance, its inverse and the per-concept geometry are
// tiny (hidden ≤ 1024, a handful of concepts), so they are computed exactly here and only the results go to
// the device as float32 (perfusion-spec.md §2.4, §11).

/** A square matrix stored row-major. */
export type Matrix = Float32Array | Float64Array;

export class NotPositiveDefiniteError extends Error {
  constructor(readonly pivot: number) {
    super(`the matrix is not positive definite (pivot ${pivot} is not positive)`);
    this.name = 'NotPositiveDefiniteError';
  }
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

/** y = A x for a row-major n×n matrix, accumulated in float64. */
export function matVec(a: Matrix, n: number, x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    const row = i * n;
    for (let j = 0; j < n; j++) s += a[row + j]! * x[j]!;
    y[i] = s;
  }
  return y;
}

/** The lower Cholesky factor L (A = L Lᵀ) of a symmetric positive-definite matrix, in float64. */
export function cholesky(a: Matrix, n: number): Float64Array {
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const rowJ = j * n;
    let d = a[rowJ + j]!;
    for (let k = 0; k < j; k++) d -= l[rowJ + k]! * l[rowJ + k]!;
    if (!(d > 0)) throw new NotPositiveDefiniteError(j);
    const ljj = Math.sqrt(d);
    l[rowJ + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const rowI = i * n;
      let s = a[rowI + j]!;
      for (let k = 0; k < j; k++) s -= l[rowI + k]! * l[rowJ + k]!;
      l[rowI + j] = s / ljj;
    }
  }
  return l;
}

/** A⁻¹ of a symmetric positive-definite matrix through its Cholesky factor, in float64 (exactly symmetric). */
export function invertSpd(a: Matrix, n: number): Float64Array {
  const l = cholesky(a, n);
  // L⁻¹ (lower triangular), row by row: L⁻¹[i, j] = −(Σ_{j≤k<i} L[i,k] L⁻¹[k,j]) / L[i,i]; rows are read contiguously
  const lInv = new Float64Array(n * n);
  const accumulated = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const rowI = i * n;
    accumulated.fill(0, 0, i);
    for (let k = 0; k < i; k++) {
      const lik = l[rowI + k]!;
      const rowK = k * n;
      for (let j = 0; j <= k; j++) accumulated[j]! += lik * lInv[rowK + j]!;
    }
    const diagonal = l[rowI + i]!;
    for (let j = 0; j < i; j++) lInv[rowI + j] = -accumulated[j]! / diagonal;
    lInv[rowI + i] = 1 / diagonal;
  }
  // A⁻¹ = L⁻ᵀ L⁻¹ = Σ_k (row k of L⁻¹)ᵀ (row k of L⁻¹): the lower triangle, then mirrored
  const inv = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const rowK = k * n;
    for (let i = 0; i <= k; i++) {
      const lki = lInv[rowK + i]!;
      if (lki === 0) continue;
      const rowI = i * n;
      for (let j = 0; j <= i; j++) inv[rowI + j]! += lki * lInv[rowK + j]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) inv[j * n + i] = inv[i * n + j]!;
  return inv;
}
