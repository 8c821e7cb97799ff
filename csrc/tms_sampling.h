// The numbers of the TMS data sampler, shared by the sampler (tms_sample.cpp) and the training step
// that draws its own rows (tms_step.cpp): which features of a row are on, and their values, come from
// counter-based hashes keyed by (seed, step, instance, row, feature), so a batch does not depend on
// the thread count or on how its rows are split between passes and tiles.
#pragma once

#include "isa.h"

#include "common.h"

#include <cstdint>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace tms_detail {
// Internal linkage in each file that includes this header, as code in a .cpp file has: GCC
// inlines a function called once (InstanceStep::run into its OpenMP loop) only when it is internal.
namespace {

inline uint64_t splitmix64(uint64_t &s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// The part of a row's key that depends only on (seed, step, instance): computed once per instance
// rather than once per row (the same numbers; for small n the per-row hashing is most of the sampler).
inline uint64_t instance_base(uint64_t seed, uint64_t step, uint64_t inst) {
  uint64_t s = seed;
  uint64_t t = splitmix64(s) ^ (step * 0xD1B54A32D192ED03ULL);
  s = t;
  return splitmix64(s) ^ (inst * 0x8CB92BA72F3D8DD7ULL);
}

struct Rng {
  uint64_t s;
  Rng(uint64_t seed, uint64_t step, uint64_t inst, uint64_t row) : Rng(instance_base(seed, step, inst), row) {}
  Rng(uint64_t base, uint64_t row) {
    s = base;
    const uint64_t t = splitmix64(s) ^ (row * 0xABC98388FB8FAC03ULL);
    s = t;
  }
  // uniform on [0, 1)
  double uniform() { return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0); }
};

// p [I, n] feature probabilities.
// Features 0..2*corr-1 form correlated pairs (one draw decides both), the next
// 2*anti form anticorrelated pairs (on with probability min(1, p_a + p_b), then
// exactly one member, chosen in proportion to p), the rest are independent.
struct SampleSpec {
  const double *p;
  int64_t I, n, batch, corr, anti;
  std::vector<uint32_t> thr;  // [I, n]: feature f is on when hash <= thr (probability (thr + 1) / 2^32)
};

// murmur3's 32-bit finaliser: a counter-based hash that vectorises (AVX-512 vpmulld). U is uint32_t,
// or a vector of uint32 lanes (LaneStep).
template <typename U>
inline U mix32(U x) {
  x ^= x >> 16;
  x *= 0x85EBCA6BU;
  x ^= x >> 13;
  x *= 0xC2B2AE35U;
  x ^= x >> 16;
  return x;
}

// Row r's keys: one for which features are on, one for their values.
// bases [I]: instance_base of each instance (see instance_bases).
inline void row_keys(const std::vector<uint64_t> &bases, int64_t i, int64_t b, uint32_t &kon, uint32_t &kval,
                     Rng &pairs) {
  pairs = Rng(bases[(size_t)i], (uint64_t)b);
  const uint64_t k = splitmix64(pairs.s);
  kon = (uint32_t)k;
  kval = (uint32_t)(k >> 32);
}

// The pairs of row r: on[f] for f < first_free = 2 * (corr + anti), drawn from the row's Rng (scalar,
// few); returns first_free.
inline int64_t pair_mask(const SampleSpec &sp, int64_t i, Rng &pairs, uint8_t *on) {
  const int64_t first_free = 2 * (sp.corr + sp.anti);
  const double *pi = sp.p + i * sp.n;
  for (int64_t f = 0; f < first_free; ++f) on[f] = 0;
  for (int64_t q = 0; q < sp.corr; ++q) {
    const uint8_t o = pairs.uniform() < pi[2 * q];
    on[2 * q] = on[2 * q + 1] = o;
  }
  for (int64_t q = 0; q < sp.anti; ++q) {
    const int64_t f = 2 * sp.corr + 2 * q;
    const double pa = pi[f], s2 = pa + pi[f + 1];
    if (pairs.uniform() < s2) on[pairs.uniform() * s2 < pa ? f : f + 1] = 1;  // member a with probability pa / s2
  }
  return first_free;
}

// Row r's on[f] (0/1) for every feature: the pairs, then one vectorised hash per independent feature;
// returns the count.
inline int64_t row_mask(const SampleSpec &sp, int64_t i, uint32_t kon, Rng &pairs, uint8_t *on) {
  const int64_t n = sp.n, first_free = pair_mask(sp, i, pairs, on);
  const uint32_t *thr = sp.thr.data() + i * n;
  int64_t cnt = 0;
#pragma omp simd reduction(+ : cnt)
  for (int64_t f = first_free; f < n; ++f) {
    const uint8_t o = mix32(kon + (uint32_t)f * 0x9E3779B9U) <= thr[f];
    on[f] = o;
    cnt += o;
  }
  for (int64_t f = 0; f < first_free; ++f) cnt += on[f];
  return cnt;
}

// instance_seeds: None (instance i keyed by (seed, i)) or a uint64 array [I].
inline std::vector<uint64_t> instance_keys(const py::object &seeds, int64_t I) {
  std::vector<uint64_t> keys;
  if (seeds.is_none()) return keys;
  if (!py::isinstance<carray<uint64_t>>(seeds)) fail("instance_seeds", "expected None or a uint64 array [n_instances]");
  const auto a = seeds.cast<carray<uint64_t>>();
  check_shape(a, "instance_seeds", {I});
  keys.assign(a.data(), a.data() + I);
  return keys;
}

// Per-instance key bases. With per-instance seeds (keys non-empty), instance i is keyed by (keys[i], step,
// 0, row): the numbers that instance 0 of a run with seed keys[i] gets, wherever i sits in the batch (so
// a sweep can pack points into one run and get what each point gets alone).
inline std::vector<uint64_t> instance_bases(uint64_t seed, const std::vector<uint64_t> &keys, int64_t step, int64_t I) {
  std::vector<uint64_t> bases((size_t)I);
  for (int64_t i = 0; i < I; ++i)
    bases[(size_t)i] = keys.empty() ? instance_base(seed, (uint64_t)step, (uint64_t)i)
                                    : instance_base(keys[(size_t)i], (uint64_t)step, 0);
  return bases;
}

inline SampleSpec make_spec(const carray<double> &p, int64_t batch, int64_t corr, int64_t anti) {
  check_shape(p, "p", {-1, -1});
  const py::ssize_t I = p.shape(0), n = p.shape(1);
  if (batch < 0) fail("batch_size", "must be >= 0");
  // 2 * (corr + anti) <= n, without computing a sum that a hostile count could overflow
  if (corr < 0 || anti < 0 || corr > n / 2 || anti > n / 2 - corr)
    fail("correlated_pairs", "correlated and anticorrelated pairs need 2*(correlated+anticorrelated) <= n_features");
  SampleSpec sp{p.data(), I, n, batch, corr, anti, std::vector<uint32_t>((size_t)(I * n))};
  for (int64_t t = 0; t < I * n; ++t)  // a NaN would turn into an undefined integer threshold
    if (!(sp.p[t] >= 0.0 && sp.p[t] <= 1.0))
      fail("p", "probabilities must lie in [0, 1], got " + std::to_string(sp.p[t]) + " at flat position " +
                    std::to_string(t));
  for (int64_t t = 0; t < I * n; ++t) {
    const double q = sp.p[t] * 4294967296.0;
    sp.thr[t] = q >= 4294967296.0 ? 0xFFFFFFFFU : (q < 1.0 ? 0U : (uint32_t)(q - 1.0));
  }
  return sp;
}

}  // namespace
}  // namespace tms_detail
}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
