// The dense read-out of a block of RB rows against a transposed weight matrix,
//   y[rr, f] = bias[f] + sum_t h[rr, t] * wt[t, f]        (then ReLU if RELU)
// shared by the fused kernels (superpose, the toy-model step). The RB x CH
// output tile stays in vector registers while the d hidden units stream
// through it, so each load of a W^T row feeds RB rows. RB = 8 rows x 2 AVX-512
// registers (16 accumulators) measured best of 4-16 rows x 2-4 registers.
#pragma once

#include "isa.h"

#include <algorithm>
#include <cstdint>

namespace supcomp {
namespace SUPCOMP_ISA_NS {

constexpr int kTileRows = 8;
template <typename T>
constexpr int64_t kReadoutChunk = 128 / sizeof(T);  // features per register chunk (2 AVX-512 registers)

// One chunk of C features at f0 for RB rows: the RB x C accumulators stay in registers.
template <typename T, bool RELU, int RB, int C>
inline void readout_chunk(const T *h, int64_t hstride, const T *wt, const T *bias, int64_t n, int64_t d, T *y,
                          int64_t ystride, int64_t nr, int64_t f0) {
  T acc[RB][C];
  for (int rr = 0; rr < RB; ++rr)
#pragma omp simd
    for (int u = 0; u < C; ++u) acc[rr][u] = bias[f0 + u];
  for (int64_t t = 0; t < d; ++t) {
    const T *col = wt + t * n + f0;
    for (int rr = 0; rr < RB; ++rr) {
      const T ht = h[rr * hstride + t];
#pragma omp simd
      for (int u = 0; u < C; ++u) acc[rr][u] += ht * col[u];
    }
  }
  for (int64_t rr = 0; rr < nr; ++rr) {
    T *yr = y + rr * ystride + f0;
    if constexpr (RELU) {
#pragma omp simd
      for (int u = 0; u < C; ++u) yr[u] = acc[rr][u] < T(0) ? T(0) : acc[rr][u];  // a NaN stays NaN
    } else {
#pragma omp simd
      for (int u = 0; u < C; ++u) yr[u] = acc[rr][u];
    }
  }
}

// h: RB rows of stride hstride (rows past nr must be readable; they are
// computed but not stored); wt: [d, n]; y: nr rows of stride ystride.
template <typename T, bool RELU, int RB = kTileRows>
inline void readout_tile(const T *h, int64_t hstride, const T *wt, const T *bias, int64_t n, int64_t d, T *y,
                         int64_t ystride, int64_t nr) {
  constexpr int CH = (int)kReadoutChunk<T>, V = 64 / (int)sizeof(T);  // V: one AVX-512 register
  int64_t f0 = 0;
  for (; f0 + CH <= n; f0 += CH) readout_chunk<T, RELU, RB, CH>(h, hstride, wt, bias, n, d, y, ystride, nr, f0);
  // then one-register chunks: n a multiple of V need not be padded to CH
  for (; f0 + V <= n; f0 += V) readout_chunk<T, RELU, RB, V>(h, hstride, wt, bias, n, d, y, ystride, nr, f0);
  for (int64_t rr = 0; rr < nr && f0 < n; ++rr) {  // tail features (n not a multiple of V)
    T *yr = y + rr * ystride;
    std::copy(bias + f0, bias + n, yr + f0);
    for (int64_t t = 0; t < d; ++t) {
      const T ht = h[rr * hstride + t];
      const T *col = wt + t * n;
#pragma omp simd
      for (int64_t f = f0; f < n; ++f) yr[f] += ht * col[f];
    }
    if constexpr (RELU)
#pragma omp simd
      for (int64_t f = f0; f < n; ++f) yr[f] = yr[f] < T(0) ? T(0) : yr[f];
  }
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
