// The row sources that InstanceStep::run reads, one instance at a time: CsrRows (a batch already
// drawn, tms_step) and SampledRows (rows drawn tile by tile inside the step, tms_sample_step), and
// use_dense_tiles, which of the two read-in layouts an instance takes.
#pragma once

#include "isa.h"

#include "readout_tile.h"
#include "tms_sampling.h"
#include "tms_sparse_rows.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace tms_detail {
// Internal linkage in each file that includes this header, as code in a .cpp file has: GCC
// inlines a function called once (InstanceStep::run into its OpenMP loop) only when it is internal.
namespace {

// Dense tiles (InstanceStep::readin_dense / gE_dense) for an instance whose batch has at least
// kDenseMinDensity of its entries nonzero: the sparse read-in and its gradient cost ~8 cycles a
// nonzero (a random E row read and a random gE row read-modify-written, from L2), the dense pair 2 x 8
// FMAs a feature (rows streamed). Measured crossover (whole step, 20 instances of one density, forced
// either way, sparse / dense time): n=400 m=30: 0.98 at p=0.3, 1.01 at 0.35, 1.12 at 0.45;
// n=200 m=20: 0.97 at 0.3, 1.03 at 0.35; n=1000 m=64: 0.96 at 0.3, 1.02 at 0.35.
// dense_strategy (the steps' `dense` argument, for tests and benchmarks): 0 automatic (by density),
// 1 sparse rows, 2 dense tiles.
constexpr double kDenseMinDensity = 0.3;
inline bool use_dense_tiles(double nonzeros, double entries, int dense_strategy) {
  if (dense_strategy != 0) return dense_strategy == 2;
  return entries > 0 && nonzeros >= kDenseMinDensity * entries;
}

// Rows of one instance from a CSR batch (off: the instance's B + 1 offsets, absolute positions).
template <typename T>
struct CsrRows {
  static constexpr bool kUniqueIds = false;  // a hand-built batch may repeat a feature in a row (they add up)
  const int64_t *offsets, *idx;
  const T *val;
  int64_t B;
  const int64_t *off = nullptr;
  int64_t n = 0;
  int dense_strategy = 0;  // see use_dense_tiles
  bool dense_ = false;
  void select(int64_t i) {
    off = offsets + i * B;
    dense_ = use_dense_tiles((double)(off[B] - off[0]), (double)B * (double)n, dense_strategy);
  }
  bool dense() const { return dense_; }
  void tile(int64_t b0, int64_t, const int64_t *&o, const int64_t *&ix, const T *&v) const {
    o = off + b0;
    ix = idx;
    v = val;
  }
  // rows [b0, b0 + nr) as dense rows of xv (stride ld; duplicates add up), rows nr .. kTileRows - 1 zero
  void dense_tile(int64_t b0, int64_t nr, T *xv, int64_t ld) const {
    std::fill(xv, xv + kTileRows * ld, T(0));
    scatter_rows(xv, ld, off + b0, idx, val, nr, false);
  }
};

// Rows of one instance drawn on the fly, tile by tile: the numbers of sample_fill (the same
// row_keys / row_mask / value hashes, ids ascending), never written to a batch in memory.
template <typename T>
struct SampledRows {
  static constexpr bool kUniqueIds = true;  // a row's ids are distinct (and ascending)
  const SampleSpec *sp;
  const std::vector<uint64_t> *bases;
  bool signed_values;
  int64_t i = 0;
  std::vector<uint8_t> on;
  std::vector<int64_t> ids;
  std::vector<T> vals;
  int64_t o[kTileRows + 1];
  int dense_strategy;  // see use_dense_tiles
  SampledRows(const SampleSpec &s, const std::vector<uint64_t> &b, bool sv, int dense)
      : sp(&s),
        bases(&b),
        signed_values(sv),
        on((size_t)s.n),
        ids((size_t)(kTileRows * s.n + 8)),
        vals((size_t)(kTileRows * s.n + 8)),
        dense_strategy(dense) {}
  static inline T value_of(uint32_t kval, int64_t f, bool sv) {  // sample_fill's value of feature f
    const float u = (float)(mix32(kval + (uint32_t)f * 0x9E3779B9U) >> 8) * (1.0f / 16777216.0f);
    return (T)(sv ? 2.0f * u - 1.0f : u);
  }
  bool dense_ = false;
  void select(int64_t inst) {
    i = inst;
    double expect = 0.0;  // expected entries per row
    for (int64_t f = 0; f < sp->n; ++f) expect += sp->p[i * sp->n + f];
    dense_ = use_dense_tiles(expect, (double)sp->n, dense_strategy);
  }
  bool dense() const { return dense_; }
  // rows [b0, b0 + nr) drawn straight into dense rows of xv (stride ld): a value hash for every
  // feature and a select, no compaction (the same numbers as tile()); rows nr .. kTileRows - 1 zero
  void dense_tile(int64_t b0, int64_t nr, T *xv, int64_t ld) {
    const int64_t n = sp->n;
    Rng pairs(0, 0, 0, 0);
    for (int64_t rr = 0; rr < nr; ++rr) {
      uint32_t kon, kval;
      row_keys(*bases, i, b0 + rr, kon, kval, pairs);
      T *xr = xv + rr * ld;
      const bool sv = signed_values;
      // the pairs as row_mask draws them; the independent features in one pass with their values
      // (row_mask's on-hash and sample_fill's value hash, without the flag bytes in between)
      const int64_t first_free = pair_mask(*sp, i, pairs, on.data());
      for (int64_t f = 0; f < first_free; ++f) xr[f] = on[f] ? value_of(kval, f, sv) : T(0);
      const uint32_t *thr = sp->thr.data() + i * n;
#pragma omp simd
      for (int64_t f = first_free; f < n; ++f) {
        const bool o = mix32(kon + (uint32_t)f * 0x9E3779B9U) <= thr[f];
        const T v = value_of(kval, f, sv);
        xr[f] = o ? v : T(0);
      }
    }
    std::fill(xv + nr * ld, xv + kTileRows * ld, T(0));
  }
  void tile(int64_t b0, int64_t nr, const int64_t *&oo, const int64_t *&ix, const T *&v) {
    Rng pairs(0, 0, 0, 0);
    o[0] = 0;
    for (int64_t rr = 0; rr < nr; ++rr) {
      uint32_t kon, kval;
      row_keys(*bases, i, b0 + rr, kon, kval, pairs);
      int64_t *id = ids.data() + o[rr];  // branch-free compaction (one spare slot past the row)
      T *va = vals.data() + o[rr];
      const int64_t cnt = row_ids(*sp, i, kon, pairs, on.data(), id);
      const bool sv = signed_values;
#pragma omp simd
      for (int64_t q = 0; q < cnt; ++q) va[q] = value_of(kval, id[q], sv);  // the entries' values only
      o[rr + 1] = o[rr] + cnt;
    }
    oo = o;
    ix = ids.data();
    v = vals.data();
  }
};

}  // namespace
}  // namespace tms_detail
}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
