// The blockwise top-k epilogue of the ReLU read-out  topk(relu(h @ W^T + b))  (op relu_readout_topk).
//
// The GEMM runs tile by tile in the BLAS that torch links; topk_merge folds
// relu(tile + b) into a running per-row top-k, so the [B, n] matrix is never
// held whole.
#include "common.h"
#include "isa.h"

#include <algorithm>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace {

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
void topk_merge(const carray<T> &tile, const carray<T> &b, carray<T> &run_vals, carray<int64_t> &run_idx, int64_t r0,
                int64_t f0, int nthreads) {
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
  m.def("topk_merge", &topk_merge<T>, py::arg("tile").noconvert(), py::arg("b").noconvert(),
        py::arg("run_vals").noconvert(), py::arg("run_idx").noconvert(), py::arg("r0"), py::arg("f0"),
        py::arg("nthreads") = 0);
}

}  // namespace

void register_relu_readout_topk(py::module_ &m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
