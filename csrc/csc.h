// Feature-major order of padded sparse slots, for the sparse_encode kernels.
//
// Row-major sparse_encode gathers one W row per slot: at B*k = 262144 slots and
// n = 65536 features every W row is read ~4 times, from DRAM, at random
// addresses. Sorted by feature (a stable counting sort of the slots, CSC), the
// kernels instead walk W once in address order (the hardware prefetcher streams
// it) and scatter into / gather from the small per-row tensors (h, grad_h:
// B*d, which stay in cache). Stable: within a feature the slots keep their
// order, so every sum is taken in a fixed order whatever the thread count.
#pragma once

#include "isa.h"

#include "common.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace supcomp {
namespace SUPCOMP_ISA_NS {

struct Csc {
  std::vector<int64_t> start;  // [n + 1]: slots of feature f are slot[start[f] .. start[f+1])
  std::vector<int32_t> slot;   // [occupied slots]: flat slot index s = b * k + j within the block
};

// Slots [0, count) of one instance (idx already bounds-checked, -1 = empty).
// Parallel stable counting sort: thread t histograms its contiguous part of the
// slots; the prefix runs over (feature, thread), so thread t's slots of a
// feature land after those of threads < t, and the order is the serial one.
// Run body(t, s0, s1) on T threads, thread t owning the contiguous slots [s0, s1).
template <typename F>
inline void for_each_part(int T, int64_t count, F body) {
  const int64_t part = (count + T - 1) / T;
#pragma omp parallel num_threads(T)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
#else
    const int t = 0;
#endif
    const int64_t s0 = std::min<int64_t>(count, t * part);
    body(t, s0, std::min<int64_t>(count, s0 + part));
  }
}

inline void build_csc(const int64_t *idx, int64_t count, int64_t n, Csc &c, int nthreads = 1) {
  const int T = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, count / 16384));
  std::vector<int64_t> cnt((size_t)T * (size_t)n, 0);  // [T, n]
  for_each_part(T, count, [&](int t, int64_t s0, int64_t s1) {
    int64_t *ct = cnt.data() + (size_t)t * n;
    for (int64_t s = s0; s < s1; ++s)
      if (idx[s] >= 0) ++ct[idx[s]];
  });
  c.start.assign((size_t)n + 1, 0);
  int64_t run = 0;
  for (int64_t f = 0; f < n; ++f) {  // cnt becomes each (thread, feature)'s first position
    c.start[(size_t)f] = run;
    for (int t = 0; t < T; ++t) {
      const int64_t x = cnt[(size_t)t * n + f];
      cnt[(size_t)t * n + f] = run;
      run += x;
    }
  }
  c.start[(size_t)n] = run;
  c.slot.resize((size_t)run);
  for_each_part(T, count, [&](int t, int64_t s0, int64_t s1) {
    int64_t *pos = cnt.data() + (size_t)t * n;
    for (int64_t s = s0; s < s1; ++s)
      if (idx[s] >= 0) c.slot[(size_t)pos[idx[s]]++] = (int32_t)s;
  });
}

// Whether the feature-major kernels should run: enough slots to amortise the
// sort and to reuse W rows, per-row tensors small enough to stay in cache
// (B*d elements of h / grad_h within kCscRowBytes), slot ids fit int32.
constexpr int64_t kCscMinSlots = 4096;
constexpr int64_t kCscRowBytes = (int64_t)12 << 20;

// The kernels' `strategy` argument (tests and benchmarks force either layout; the results agree to
// rounding): 0 = automatic, 1 = always row-major, 2 = feature-major wherever it is valid.
inline void check_csc_strategy(int strategy) {
  if (strategy < 0 || strategy > 2)
    fail("strategy", "expected 0 (automatic), 1 (row-major) or 2 (feature-major), got " + std::to_string(strategy));
}

// Automatic choice: the backward only. The feature-major forward measured at parity with the row-major
// gathers in isolation (10.2 against 10.8 ms at B=8192, k=32, n=65536, d=256) but slower inside the full
// benchmark report (14.7 against 11.4 ms for embedding_bag), so the forward stays row-major unless forced;
// the feature-major backward measured 1.4x faster than the row-major one (60 against 86 ms fwd+bwd).
inline bool use_csc(int64_t B, int64_t k, int64_t d, int64_t n, int64_t elem_bytes, int strategy, bool forward) {
  const int64_t slots = B * k;
  if (strategy == 1) return false;
  if (strategy == 2) return slots > 0 && slots < ((int64_t)1 << 31);
  if (forward) return false;
  return slots >= kCscMinSlots && slots < ((int64_t)1 << 31) && B * d * elem_bytes <= kCscRowBytes && 4 * slots >= n &&
         d >= 16;
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
