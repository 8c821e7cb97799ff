// LaneStep: the training step of a small toy model with batch rows in SIMD lanes (tms_sample_step),
// and use_lanes, the choice between it and InstanceStep.
#pragma once

#include "isa.h"

#include "tms_sampling.h"
#include "tms_step_flags.h"
#include "vec.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace tms_detail {
// Internal linkage in each file that includes this header, as code in a .cpp file has: GCC
// inlines a function called once (InstanceStep::run into its OpenMP loop) only when it is internal.
namespace {

constexpr int64_t kLaneMaxWeights = 512;  // see use_lanes

// Small models without feature pairs (n and m small, see use_lanes): SIMD lanes are batch rows.
// With n = 20, m = 5 a row is ~100 multiply-adds per product, too little to amortise the per-row
// loops of InstanceStep (hashing, compaction, tile lists: ~475 cycles a row). Here L rows at once
// (one register: 16 float / 8 double with AVX-512, 8 / 4 with AVX2) run every loop over features and
// hidden units as one vector operation: the batch is drawn densely (the same hashes as row_mask /
// sample_fill, so the same numbers), and the read-in, read-out and both backward products are dense
// over the n x m weights. Gradients are summed per lane and the lanes added at the end
// (deterministic; a different order than InstanceStep, so equal to it to rounding, not bitwise).
// 32-bit lanes to go with L lanes of T (a vector_size that depends on a template argument is not
// accepted by GCC, hence one specialisation per lane count).
template <int L>
struct LaneWords;
template <>
struct LaneWords<16> {
  typedef uint32_t u __attribute__((vector_size(64)));
  typedef float f __attribute__((vector_size(64)));
};
template <>
struct LaneWords<8> {
  typedef uint32_t u __attribute__((vector_size(32)));
  typedef float f __attribute__((vector_size(32)));
};
template <>
struct LaneWords<4> {
  typedef uint32_t u __attribute__((vector_size(16)));
  typedef float f __attribute__((vector_size(16)));
};
template <>
struct LaneWords<2> {
  typedef uint32_t u __attribute__((vector_size(8)));
  typedef float f __attribute__((vector_size(8)));
};

template <typename T>
struct LaneStep {
  using VT = Vec<T>;
  using v_t = typename VT::v;
  static constexpr int L = VT::W;
  using u_t = typename LaneWords<L>::u;  // L uint32 lanes (the hashes)
  using f_t = typename LaneWords<L>::f;  // L float lanes (the drawn values, before conversion to T)
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> I;
  typedef I i_t __attribute__((vector_size(kVecBytes)));  // L lanes, as v_t
  int64_t n, m;
  avector<T> x, h, gh, dy, aE, aD, ab;  // per feature / hidden unit / weight: L lanes each

  LaneStep(int64_t n_, int64_t m_)
      : n(n_),
        m(m_),
        x((size_t)(n_ * L)),
        h((size_t)(m_ * L)),
        gh((size_t)(m_ * L)),
        dy((size_t)(n_ * L)),
        aE((size_t)(n_ * m_ * L)),
        aD((size_t)(n_ * m_ * L)),
        ab((size_t)(n_ * L)) {}

  static inline v_t ld(const T *a, int64_t k) { return VT::load(a + k * L); }
  static inline void st(T *a, int64_t k, v_t v) { VT::store(a + k * L, v); }
  static inline T hsum(v_t v) {
    T s = 0;
    for (int l = 0; l < L; ++l) s += v[l];
    return s;
  }

  __attribute__((noinline)) double run(const SampleSpec &sp, const std::vector<uint64_t> &bases, bool signed_values,
                                       int64_t i, int64_t B, const T *Ei, const T *Di, const T *bi, const T *ii, T *gEi,
                                       T *gDi, T *gbi, double scale, StepFlags fl) {
    std::fill(aE.begin(), aE.end(), T(0));
    std::fill(aD.begin(), aD.end(), T(0));
    std::fill(ab.begin(), ab.end(), T(0));
    // The buffers as local pointers (shadowing the members): the vector stores (memcpy) may alias
    // anything, so through the members GCC reloads every data pointer from *this in the inner loops.
    T *const x = this->x.data(), *const h = this->h.data(), *const gh = this->gh.data(), *const dy = this->dy.data(),
             *const aE = this->aE.data(), *const aD = this->aD.data(), *const ab = this->ab.data();
    const int64_t n = this->n, m = this->m;
    const uint32_t *thr = sp.thr.data() + i * n;
    const v_t zero = VT::splat(T(0));
    i_t lane;
    for (int l = 0; l < L; ++l) lane[l] = (I)l;
    const T c2 = (T)(2.0 * scale);
    double loss = 0.0;
    for (int64_t b0 = 0; b0 < B; b0 += L) {
      const int64_t nl = std::min<int64_t>(L, B - b0);
      const i_t valid = lane < (I)nl;
      u_t kon = {}, kval = {};
      Rng pairs(0, 0, 0, 0);
      for (int64_t l = 0; l < nl; ++l) {
        uint32_t a, c;
        row_keys(bases, i, b0 + l, a, c, pairs);
        kon[l] = a;
        kval[l] = c;
      }
      // ---- draw: x[f] = value if on else 0 (row_mask and sample_fill's hashes)
      for (int64_t f = 0; f < n; ++f) {
        const uint32_t fo = (uint32_t)f * 0x9E3779B9U;
        const auto on = mix32(kon + fo) <= thr[f];
        const f_t u = __builtin_convertvector(mix32(kval + fo) >> 8, f_t) * (1.0f / 16777216.0f);
        const v_t v = __builtin_convertvector(signed_values ? 2.0f * u - 1.0f : u, v_t);
        const i_t keep = __builtin_convertvector(on, i_t) & valid;
        st(x, f, keep ? v : zero);
      }
      // ---- forward: h = relu?(x E), y = relu?(D h + b); loss; dy
      for (int64_t t = 0; t < m; ++t) {
        v_t a = zero;
        for (int64_t f = 0; f < n; ++f) a += ld(x, f) * Ei[f * m + t];
        if (fl.hidden_relu) a = a > zero ? a : zero;
        st(h, t, a);
      }
      v_t lsum = zero;
      for (int64_t f = 0; f < n; ++f) {
        v_t y = VT::splat(bi[f]);
        for (int64_t t = 0; t < m; ++t) y += ld(h, t) * Di[f * m + t];
        i_t live = valid;
        if (fl.output_relu) live &= (y > zero);
        const v_t yv = fl.output_relu ? (live ? y : zero) : y;
        v_t tg = ld(x, f);
        if (fl.abs_target) tg = tg < zero ? -tg : tg;
        const v_t diff = yv - tg;
        const v_t sq = ii[f] * diff * diff;
        lsum += valid ? sq : zero;
        const v_t g = live ? (c2 * ii[f]) * diff : zero;
        st(dy, f, g);
        st(ab, f, ld(ab, f) + g);
      }
      for (int64_t l = 0; l < nl; ++l) loss += (double)lsum[l];
      // ---- backward: gh = relu'(h) * (dy D); gD += dy h^T, gE += x gh^T (per lane)
      for (int64_t t = 0; t < m; ++t) {
        v_t g = zero;
        for (int64_t f = 0; f < n; ++f) g += ld(dy, f) * Di[f * m + t];
        if (fl.hidden_relu) g = ld(h, t) > zero ? g : zero;
        st(gh, t, g);
      }
      for (int64_t f = 0; f < n; ++f) {
        const v_t d = ld(dy, f), xf = ld(x, f);
        for (int64_t t = 0; t < m; ++t) {
          st(aD, f * m + t, ld(aD, f * m + t) + d * ld(h, t));
          st(aE, f * m + t, ld(aE, f * m + t) + xf * ld(gh, t));
        }
      }
    }
    for (int64_t f = 0; f < n; ++f) {
      gbi[f] = hsum(ld(ab, f));
      for (int64_t t = 0; t < m; ++t) {
        const int64_t k = f * m + t;
        if (fl.tied) {
          gEi[k] = hsum(ld(aE, k) + ld(aD, k));
        } else {
          gEi[k] = hsum(ld(aE, k));
          gDi[k] = hsum(ld(aD, k));
        }
      }
    }
    return loss * scale;
  }
};

// Whether sample_step runs LaneStep: no feature pairs (their draws are sequential per row), and a
// model small enough that dense per-lane products beat InstanceStep's per-row work. Measured at
// B=1024 (ms/step, lanes against rows): n=2 m=1 9 vs 173; n=20 m=5 18 vs 86; n=400 m=1 16 vs 58;
// n=64 m=8 19 vs 24; n=128 m=4 12 vs 19; but n=64 m=16 18 vs 12 and n=40 m=40 13 vs 11: n*m <= 512.
// lane_strategy (the `lanes` argument of tms_sample_step, for tests and benchmarks): 0 automatic,
// 1 never (row tiles), 2 always when there are no feature pairs.
inline bool use_lanes(int64_t n, int64_t m, int64_t corr, int64_t anti, int lane_strategy) {
  if (lane_strategy != 0) return lane_strategy == 2 && corr == 0 && anti == 0;
  return corr == 0 && anti == 0 && n * m <= kLaneMaxWeights;
}

}  // namespace
}  // namespace tms_detail
}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
