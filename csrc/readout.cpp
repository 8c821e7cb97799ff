// Epilogues of the dense ReLU readout  y = relu(h @ W^T + b).
//
// On CPU the GEMM itself runs in the BLAS that torch links (MKL / oneDNN /
// OpenBLAS): a hand-written SGEMM would not beat it. Everything around the
// GEMM is fused here, in one pass over the [rows, n] tile each:
//   relu_            y = relu(y) in place (after a GEMM that already added the bias)
//   relu_grad        g = grad_y * (y > 0) and grad_b = sum_rows g (backward prologue)
//   topk_merge       relu(tile + b) folded into a running per-row top-k
//                    (blockwise top-k readout: the [B, n] matrix is never held whole)
#include "common.h"

#include <algorithm>
#include <limits>

namespace supcomp {
namespace {

// y <- relu(y) in place, any shape (flat).
template <typename T>
void relu_(carray<T> &y, int nthreads) {
  T *yp = y.mutable_data();
  const int64_t size = (int64_t)y.size();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t t = 0; t < size; ++t) yp[t] = yp[t] < T(0) ? T(0) : yp[t];  // a NaN stays NaN
}

// g [I, B, n] = grad_y * (y > 0);  grad_b [I, n] = sum over B of g.
// Parallel over (instance, column block) so the column sums need no atomics
// and are summed in row order (deterministic).
template <typename T>
void relu_grad(const carray<T> &grad_y, const carray<T> &y, carray<T> &g, carray<T> &grad_b, int nthreads) {
  check_shape(y, "y", {-1, -1, -1});
  const py::ssize_t I = y.shape(0), B = y.shape(1), n = y.shape(2);
  check_shape(grad_y, "grad_y", {I, B, n});
  check_shape(g, "g", {I, B, n});
  check_shape(grad_b, "grad_b", {I, n});
  const T *gy = grad_y.data();
  const T *yp = y.data();
  T *gp = g.mutable_data();
  T *gb = grad_b.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  const int64_t cb = 256;  // columns per item: a few KB of running sums stay in L1
  const int64_t nblk = (n + cb - 1) / cb;
  const int64_t items = I * nblk;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t i = it / nblk;
    const int64_t c0 = (it % nblk) * cb, c1 = std::min<int64_t>(n, c0 + cb);
    T *gbi = gb + i * n;
    std::fill(gbi + c0, gbi + c1, T(0));
    for (int64_t bb = 0; bb < B; ++bb) {
      const int64_t off = (i * B + bb) * n;
#pragma omp simd
      for (int64_t t = c0; t < c1; ++t) {
        const T v = yp[off + t] > T(0) ? gy[off + t] : T(0);
        gp[off + t] = v;
        gbi[t] += v;
      }
    }
  }
}

// Fold one tile of pre-activations into the running top-k of each row.
//   tile      [I, Bt, nt]  raw GEMM output for rows r0..r0+Bt and features f0..f0+nt
//   b         [I, n]       bias (the full vector; the tile uses b[:, f0:f0+nt])
//   run_vals  [I, B, k]    running top-k values, sorted descending, initialised to 0
//   run_idx   [I, B, k]    their feature ids, initialised to -1
// Only strictly positive relu(tile + b) values enter, and only when strictly
// larger than the current k-th value: features arrive in increasing order, so
// among equal values the lower feature id is kept first (a stable sort's
// order), and slots never filled keep (0, -1) -- the documented fill rule.
template <typename T>
void topk_merge(const carray<T> &tile, const carray<T> &b, carray<T> &run_vals, carray<int64_t> &run_idx,
                int64_t r0, int64_t f0, int nthreads) {
  check_shape(tile, "tile", {-1, -1, -1});
  const py::ssize_t I = tile.shape(0), Bt = tile.shape(1), nt = tile.shape(2);
  check_shape(b, "b", {I, -1});
  const py::ssize_t n = b.shape(1);
  check_shape(run_vals, "run_vals", {I, -1, -1});
  const py::ssize_t B = run_vals.shape(1), k = run_vals.shape(2);
  check_shape(run_idx, "run_idx", {I, B, k});
  if (r0 < 0 || r0 + Bt > B) fail("r0", "row block out of range");
  if (f0 < 0 || f0 + nt > n) fail("f0", "feature block out of range");
  if (k <= 0) return;
  const T *tp = tile.data();
  const T *bp = b.data();
  T *rv = run_vals.mutable_data();
  int64_t *ri = run_idx.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  const int64_t rows = I * Bt;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r / Bt, bb = r0 + r % Bt;
    const T *x = tp + r * nt;
    const T *bi = bp + i * n + f0;
    T *vals = rv + (i * B + bb) * k;
    int64_t *ids = ri + (i * B + bb) * k;
    T thr = vals[k - 1];  // an entry must beat this to get in
    constexpr int64_t CH = 32;
    int64_t t = 0;
    while (t < nt) {
      const int64_t t1 = std::min<int64_t>(nt, t + CH);
      // Cheap vectorised test first: most chunks hold nothing above thr.
      bool any = false;
#pragma omp simd reduction(| : any)
      for (int64_t u = t; u < t1; ++u) any |= (x[u] + bi[u] > thr);
      if (any) {
        for (int64_t u = t; u < t1; ++u) {
          const T v = x[u] + bi[u];
          if (!(v > thr)) continue;
          // insertion: first slot holding a strictly smaller value
          int64_t p = k - 1;
          while (p > 0 && vals[p - 1] < v) {
            vals[p] = vals[p - 1];
            ids[p] = ids[p - 1];
            --p;
          }
          vals[p] = v;
          ids[p] = f0 + u;
          thr = vals[k - 1];
        }
      }
      t = t1;
    }
  }
}

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("relu_", &relu_<T>, py::arg("y").noconvert(), py::arg("nthreads") = 0);
  m.def("relu_grad", &relu_grad<T>, py::arg("grad_y").noconvert(), py::arg("y").noconvert(),
        py::arg("g").noconvert(), py::arg("grad_b").noconvert(), py::arg("nthreads").noconvert() = 0);
  m.def("topk_merge", &topk_merge<T>, py::arg("tile").noconvert(), py::arg("b").noconvert(),
        py::arg("run_vals").noconvert(), py::arg("run_idx").noconvert(), py::arg("r0"), py::arg("f0"),
        py::arg("nthreads") = 0);
}

}  // namespace

void register_readout(py::module_ &m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace supcomp
