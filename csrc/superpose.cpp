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
#include "isa.h"
#include "readout_tile.h"

#include <algorithm>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
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
  // Nothing to write; and d is then not backed by memory (W is empty), so no scratch of size d.
  if (I == 0 || B == 0 || n == 0) return;
  // W^T per instance: [I, d, n]. Costs I*n*d, small next to I*B*n*d.
  std::vector<T> wt((size_t)I * d * n);
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t i = 0; i < I; ++i)
    for (int64_t f = 0; f < n; ++f)
      for (int64_t t = 0; t < d; ++t) wt[(i * d + t) * n + f] = w[(i * n + f) * d + t];
  // Work items: blocks of RB rows of one instance, read out by readout_tile.
  constexpr int RB = kTileRows;
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
      readout_tile<T, true>(hb, d, wt.data() + i * d * n, bp + i * n, n, d, y + (i * B + b0) * n, n, nr);
    }
  }
}

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("superpose_forward", &forward<T>, py::arg("indices").noconvert(), py::arg("values").noconvert(),
        py::arg("W").noconvert(), py::arg("b").noconvert(), py::arg("out").noconvert(), py::arg("nthreads") = 0);
}

}  // namespace

void register_superpose(py::module_ &m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
