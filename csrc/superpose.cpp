// superpose: the fused tied-weight toy-model forward  y = relu(W W^T x + b)
// for sparse x, i.e. relu_readout(sparse_encode(indices, values, W), W, b),
// in one pass per row without writing h to memory.
//
// Written for the toy-model regime (many instances, n up to a few thousand,
// d up to a few hundred), where launching a GEMM per instance costs more than
// the arithmetic. Per row: h = sum_j v_j W[idx_j] (d numbers, on the stack),
// then y = b + sum_t h_t * W^T[t, :] as d contiguous axpys over a
// per-instance transposed copy of W (vectorised over the n features), then
// ReLU.
#include "common.h"

#include <algorithm>
#include <vector>

namespace supcomp {
namespace {

template <typename T>
void forward(const carray<int64_t> &indices, const carray<T> &values, const carray<T> &W, const carray<T> &b,
             carray<T> &out, int nthreads) {
  check_shape(W, "W", {-1, -1, -1});
  const py::ssize_t I = W.shape(0), n = W.shape(1), d = W.shape(2);
  check_shape(indices, "indices", {I, -1, -1});
  const py::ssize_t B = indices.shape(1), k = indices.shape(2);
  check_shape(values, "values", {I, B, k});
  check_shape(b, "b", {I, n});
  check_shape(out, "out", {I, B, n});
  const int64_t *idx = indices.data();
  const T *val = values.data();
  const T *w = W.data();
  const T *bp = b.data();
  T *y = out.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_indices(idx, I * B * k, n, "indices");
  if (B == 0 || n == 0) return;
  // W^T per instance: [I, d, n]. Costs I*n*d, small next to I*B*n*d.
  std::vector<T> wt((size_t)I * d * n);
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t i = 0; i < I; ++i)
    for (int64_t f = 0; f < n; ++f)
      for (int64_t t = 0; t < d; ++t) wt[(i * d + t) * n + f] = w[(i * n + f) * d + t];
  // Work items: blocks of RB rows of one instance. The RB x CH output tile
  // stays in registers while the d hidden units stream through it, so each
  // W^T load feeds RB rows.
  constexpr int RB = 8;
  constexpr int CH = 128 / sizeof(T);  // 2 AVX-512 registers per row: an 8 x 2 tile of 16 accumulators (measured best of 4-16 rows x 2-4 registers)
  const int64_t nblk = (B + RB - 1) / RB;
  const int64_t items = I * nblk;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> hbuf((size_t)RB * d);
#pragma omp for schedule(static)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t i = it / nblk;
      const int64_t b0 = (it % nblk) * RB;
      const int64_t nr = std::min<int64_t>(RB, B - b0);
      const T *wi = w + i * n * d;
      T *hb = hbuf.data();
      std::fill(hbuf.begin(), hbuf.end(), T(0));  // rows past nr stay 0 (computed, not stored)
      for (int64_t rr = 0; rr < nr; ++rr) {
        const int64_t r = i * B + b0 + rr;
        for (int64_t j = 0; j < k; ++j) {
          const int64_t f = idx[r * k + j];
          if (f < 0) continue;
          const T v = val[r * k + j];
          const T *wr = wi + f * d;
#pragma omp simd
          for (int64_t t = 0; t < d; ++t) hb[rr * d + t] += v * wr[t];
        }
      }
      const T *wti = wt.data() + i * d * n;
      const T *bi = bp + i * n;
      T *yb = y + (i * B + b0) * n;
      int64_t f0 = 0;
      for (; f0 + CH <= n; f0 += CH) {
        T acc[RB][CH];
        for (int rr = 0; rr < RB; ++rr)
#pragma omp simd
          for (int u = 0; u < CH; ++u) acc[rr][u] = bi[f0 + u];
        for (int64_t t = 0; t < d; ++t) {
          const T *col = wti + t * n + f0;
          for (int rr = 0; rr < RB; ++rr) {
            const T ht = hb[rr * d + t];
#pragma omp simd
            for (int u = 0; u < CH; ++u) acc[rr][u] += ht * col[u];
          }
        }
        for (int64_t rr = 0; rr < nr; ++rr)
#pragma omp simd
          for (int u = 0; u < CH; ++u) yb[rr * n + f0 + u] = acc[rr][u] < T(0) ? T(0) : acc[rr][u];
      }
      for (int64_t rr = 0; rr < nr && f0 < n; ++rr) {  // tail features (n not a multiple of CH)
        T *yr = yb + rr * n;
        std::copy(bi + f0, bi + n, yr + f0);
        for (int64_t t = 0; t < d; ++t) {
          const T ht = hb[rr * d + t];
          const T *col = wti + t * n;
#pragma omp simd
          for (int64_t f = f0; f < n; ++f) yr[f] += ht * col[f];
        }
#pragma omp simd
        for (int64_t f = f0; f < n; ++f) yr[f] = yr[f] < T(0) ? T(0) : yr[f];
      }
    }
  }
}

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("superpose_forward", &forward<T>, py::arg("indices").noconvert(), py::arg("values").noconvert(),
        py::arg("W").noconvert(), py::arg("b").noconvert(), py::arg("out").noconvert(),
        py::arg("nthreads") = 0);
}

}  // namespace

void register_superpose(py::module_ &m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace supcomp
