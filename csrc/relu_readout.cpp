// The ReLU epilogues of the dense read-out  y = relu(h @ W^T + b)  (op relu_readout).
//
// On CPU the GEMM itself runs in the BLAS that torch links (MKL / oneDNN /
// OpenBLAS): a hand-written SGEMM would not beat it. The passes around the
// GEMM run here, one pass over the [rows, n] tile each:
//   relu_            y = relu(y) in place (after a GEMM that already added the bias)
//   relu_grad        g = grad_y * (y > 0) and grad_b = sum_rows g (backward prologue)
#include "common.h"
#include "isa.h"

#include <algorithm>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace {

// y <- relu(y) in place, any shape (flat).
template <typename T>
void relu_(carray<T> &y, int nthreads) {
  check_aligned(y, "y");
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

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("relu_", &relu_<T>, py::arg("y").noconvert(), py::arg("nthreads") = 0);
  m.def("relu_grad", &relu_grad<T>, py::arg("grad_y").noconvert(), py::arg("y").noconvert(), py::arg("g").noconvert(),
        py::arg("grad_b").noconvert(), py::arg("nthreads").noconvert() = 0);
}

}  // namespace

void register_relu_readout(py::module_ &m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
