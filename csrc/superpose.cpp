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
  const int64_t rows = I * B;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> h(d);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r / B;
      const T *wi = w + i * n * d;
      std::fill(h.begin(), h.end(), T(0));
      for (int64_t j = 0; j < k; ++j) {
        const int64_t f = idx[r * k + j];
        if (f < 0) continue;
        const T v = val[r * k + j];
        const T *wr = wi + f * d;
        T *hp = h.data();
#pragma omp simd
        for (int64_t t = 0; t < d; ++t) hp[t] += v * wr[t];
      }
      T *yr = y + r * n;
      const T *bi = bp + i * n;
      std::copy(bi, bi + n, yr);
      const T *wti = wt.data() + i * d * n;
      for (int64_t t = 0; t < d; ++t) {
        const T ht = h[t];
        const T *col = wti + t * n;
#pragma omp simd
        for (int64_t f = 0; f < n; ++f) yr[f] += ht * col[f];
      }
#pragma omp simd
      for (int64_t f = 0; f < n; ++f) yr[f] = yr[f] < T(0) ? T(0) : yr[f];
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
