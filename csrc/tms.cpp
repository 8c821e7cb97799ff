// Toy models of superposition: the data sampler and the fused training step.
//
// tms_sample_count / tms_sample_fill: a batch of sparse TMS inputs for every instance, in CSR
//   form, from counter-based hashes keyed by (seed, step, instance, row, feature), so
//   the batch does not depend on the thread count (one vectorised hash per
//   (row, feature) pair).
//
// tms_step: forward, importance-weighted MSE and backward of all instances in
//   one call, for the four model kinds (see supcomp/tms/model.py):
//     h = E-gather of the sparse x          (encoder rows E[f], one per input feature)
//     h = relu(h)                           if hidden_relu
//     y = D h + b                           (decoder rows D[f], one per output feature)
//     y = relu(y)                           if output_relu
//     loss_i = sum_{b,f} imp_f (y_f - t_f)^2 / (B n),  t = x (or |x| if abs_target)
//   Tied models pass the same array as E and D (and as gE and gD).
//   Work is split by instance (each instance's gradients belong to one
//   thread: no atomics, deterministic). Inside an instance, RB rows share
//   each load of the transposed decoder; the backward skips the features
//   whose output gradient is zero (a dead ReLU with a zero target), which is
//   most of them once the bias has learned to filter interference.
#include "common.h"
#include "readout_tile.h"
#include "vec.h"

#include <algorithm>
#include <atomic>
#include <immintrin.h>
#include <cstring>
#include <cmath>
#include <type_traits>
#include <vector>

namespace supcomp {
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

// Sampling one batch in CSR form (rows = (instance, batch row), instance-major)
// takes two passes over the same random numbers, so that the result is written
// straight into caller-owned buffers (no per-thread buffers, no page faults on
// fresh memory every step):
//   tms_sample_count  -> offsets [I*B + 1]
//   tms_sample_fill   -> indices [nnz], values [nnz] at those offsets
// Which features are on, and their values, come from counter-based hashes of
// (row key, feature) with a key derived from (seed, step, instance, row), so
// the counting pass draws no values. Results do not depend on the thread count; the ids of
// a row are ascending.
//
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

// Rows [r0, r1) of thread t of T (static, contiguous), walked as (instance, batch row) without a
// division per row (two integer divisions per row were a third of the sampler's time at n = 2).
template <typename F>
inline void for_rows(int64_t rows, int64_t batch, int nthreads, F body) {
#pragma omp parallel num_threads(nthreads)
  {
#ifdef _OPENMP
    const int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
#else
    const int64_t t = 0, T = 1;
#endif
    const int64_t r0 = rows * t / T, r1 = rows * (t + 1) / T;
    body(r0, r1, r0 / batch, r0 % batch);
  }
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
inline std::vector<uint64_t> instance_bases(uint64_t seed, const std::vector<uint64_t> &keys, int64_t step,
                                            int64_t I) {
  std::vector<uint64_t> bases((size_t)I);
  for (int64_t i = 0; i < I; ++i)
    bases[(size_t)i] = keys.empty() ? instance_base(seed, (uint64_t)step, (uint64_t)i)
                                    : instance_base(keys[(size_t)i], (uint64_t)step, 0);
  return bases;
}

inline SampleSpec make_spec(const carray<double> &p, int64_t batch,
                            int64_t corr, int64_t anti) {
  check_shape(p, "p", {-1, -1});
  const py::ssize_t I = p.shape(0), n = p.shape(1);
  if (batch < 0) fail("batch_size", "must be >= 0");
  if (corr < 0 || anti < 0 || 2 * (corr + anti) > n)
    fail("correlated_pairs", "correlated and anticorrelated pairs need 2*(correlated+anticorrelated) <= n_features");
  SampleSpec sp{p.data(), I, n, batch, corr, anti, std::vector<uint32_t>((size_t)(I * n))};
  for (int64_t t = 0; t < I * n; ++t) {
    const double q = sp.p[t] * 4294967296.0;
    sp.thr[t] = q >= 4294967296.0 ? 0xFFFFFFFFU : (q < 1.0 ? 0U : (uint32_t)(q - 1.0));
  }
  return sp;
}

// Pass 1: offsets [I*B + 1]. Returns nnz.
int64_t sample_count(uint64_t seed, int64_t step, const carray<double> &p,
                     int64_t batch, int64_t corr, int64_t anti, carray<int64_t> &offsets, int nthreads,
                     const py::object &instance_seeds) {
  const SampleSpec sp = make_spec(p, batch, corr, anti);
  const std::vector<uint64_t> bases = instance_bases(seed, instance_keys(instance_seeds, sp.I), step, sp.I);
  const int64_t rows = sp.I * batch;
  check_shape(offsets, "offsets", {rows + 1});
  int64_t *off = offsets.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  off[0] = 0;
  if (batch > 0)
    for_rows(rows, batch, nthreads, [&](int64_t r0, int64_t r1, int64_t i, int64_t b) {
      std::vector<uint8_t> on((size_t)sp.n);
      Rng pairs(0, 0, 0, 0);
      for (int64_t r = r0; r < r1; ++r) {
        uint32_t kon, kval;
        row_keys(bases, i, b, kon, kval, pairs);
        off[r + 1] = row_mask(sp, i, kon, pairs, on.data());
        if (++b == batch) b = 0, ++i;
      }
    });
  for (int64_t r = 0; r < rows; ++r) off[r + 1] += off[r];
  return off[rows];
}

// Pass 2: indices and values at the offsets of pass 1 (same arguments).
template <typename T>
void sample_fill(uint64_t seed, int64_t step, const carray<double> &p,
                 int64_t batch, int64_t corr, int64_t anti, bool signed_values, const carray<int64_t> &offsets,
                 carray<int64_t> &indices, carray<T> &values, int nthreads, const py::object &instance_seeds) {
  const SampleSpec sp = make_spec(p, batch, corr, anti);
  const std::vector<uint64_t> bases = instance_bases(seed, instance_keys(instance_seeds, sp.I), step, sp.I);
  const int64_t rows = sp.I * batch, n = sp.n;
  check_shape(offsets, "offsets", {rows + 1});
  const int64_t *off = offsets.data();
  const int64_t nnz = off[rows];
  if (indices.ndim() != 1 || indices.shape(0) < nnz) fail("indices", "buffer shorter than offsets[-1]");
  if (values.ndim() != 1 || values.shape(0) < nnz) fail("values", "buffer shorter than offsets[-1]");
  int64_t *oi = indices.mutable_data();
  T *ov = values.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  if (batch > 0)
  for_rows(rows, batch, nthreads, [&](int64_t r0, int64_t r1, int64_t i, int64_t b) {
    std::vector<uint8_t> on((size_t)n);
    std::vector<int64_t> ids((size_t)n + 1);
    std::vector<T> vals((size_t)n + 1);
    Rng pairs(0, 0, 0, 0);
    for (int64_t r = r0; r < r1; ++r, (++b == batch ? (b = 0, ++i) : 0)) {
      uint32_t kon, kval;
      row_keys(bases, i, b, kon, kval, pairs);
      row_mask(sp, i, kon, pairs, on.data());
      // Compact branch-free into row scratch (one spare slot), then copy out.
      int64_t cnt = 0;
      for (int64_t f = 0; f < n; ++f) {
        const float u = (float)(mix32(kval + (uint32_t)f * 0x9E3779B9U) >> 8) * (1.0f / 16777216.0f);
        ids[cnt] = f;
        vals[cnt] = (T)(signed_values ? 2.0f * u - 1.0f : u);
        cnt += on[f];
      }
      const int64_t j0 = off[r], len = std::min<int64_t>(cnt, off[r + 1] - j0);
      std::copy(ids.data(), ids.data() + len, oi + j0);
      std::copy(vals.data(), vals.data() + len, ov + j0);
      for (int64_t j = j0 + len; j < off[r + 1]; ++j) { oi[j] = -1; ov[j] = T(0); }  // offsets not from pass 1
    }
  });
}

// Both passes in one, for small batches (the caller gives buffers of rows * n entries): every row
// writes its entries at r * n, then the rows are packed to the front. One hash pass instead of two;
// the same numbers as sample_count + sample_fill. Returns nnz.
template <typename T>
int64_t sample_onepass(uint64_t seed, int64_t step, const carray<double> &p, int64_t batch, int64_t corr,
                       int64_t anti, bool signed_values, carray<int64_t> &offsets, carray<int64_t> &indices,
                       carray<T> &values, int nthreads, const py::object &instance_seeds) {
  const SampleSpec sp = make_spec(p, batch, corr, anti);
  const std::vector<uint64_t> bases = instance_bases(seed, instance_keys(instance_seeds, sp.I), step, sp.I);
  const int64_t rows = sp.I * batch, n = sp.n;
  check_shape(offsets, "offsets", {rows + 1});
  if (indices.ndim() != 1 || indices.shape(0) < rows * n) fail("indices", "buffer shorter than rows * n_features");
  if (values.ndim() != 1 || values.shape(0) < rows * n) fail("values", "buffer shorter than rows * n_features");
  int64_t *off = offsets.mutable_data();
  int64_t *oi = indices.mutable_data();
  T *ov = values.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  off[0] = 0;
  if (batch > 0)
    for_rows(rows, batch, nthreads, [&](int64_t r0, int64_t r1, int64_t i, int64_t b) {
      std::vector<uint8_t> on((size_t)n);
      Rng pairs(0, 0, 0, 0);
      for (int64_t r = r0; r < r1; ++r, (++b == batch ? (b = 0, ++i) : 0)) {
        uint32_t kon, kval;
        row_keys(bases, i, b, kon, kval, pairs);
        row_mask(sp, i, kon, pairs, on.data());
        int64_t *ids = oi + r * n;
        T *vals = ov + r * n;
        int64_t cnt = 0;
        for (int64_t f = 0; f < n; ++f) {
          if (!on[f]) continue;
          const float u = (float)(mix32(kval + (uint32_t)f * 0x9E3779B9U) >> 8) * (1.0f / 16777216.0f);
          ids[cnt] = f;
          vals[cnt] = (T)(signed_values ? 2.0f * u - 1.0f : u);
          ++cnt;
        }
        off[r + 1] = cnt;
      }
    });
  for (int64_t r = 0; r < rows; ++r) {  // pack: row r moves from r * n down to off[r] (never forward)
    const int64_t cnt = off[r + 1], dst = off[r];
    if (dst != r * n) {
      std::memmove(oi + dst, oi + r * n, (size_t)cnt * sizeof(int64_t));
      std::memmove(ov + dst, ov + r * n, (size_t)cnt * sizeof(T));
    }
    off[r + 1] = dst + cnt;
  }
  return off[rows];
}

// Check a CSR batch: offsets [rows + 1] non-decreasing from 0 to nnz.
inline void check_offsets(const int64_t *off, int64_t rows, int64_t nnz) {
  if (off[0] != 0) fail("offsets", "must start at 0");
  for (int64_t r = 0; r < rows; ++r)
    if (off[r + 1] < off[r]) fail("offsets", "must be non-decreasing");
  if (off[rows] != nnz) fail("offsets", "must end at the number of entries (len(indices))");
}

constexpr int64_t kLaneMaxWeights = 512;  // see use_lanes

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
// Append the ids f .. f + 15 selected by mask k to ids[cnt ..] (two whole 8-id stores; room for 8 past
// the last id kept); returns the new count. Compressed in a register, then a plain store: a
// compressing store to memory is microcoded on Zen 4.
inline int64_t append_ids16(__mmask16 k, int64_t f, int64_t *ids, int64_t cnt) {
  const __m512i lo = _mm512_add_epi64(_mm512_set1_epi64(f), _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
  const __m512i hi = _mm512_add_epi64(lo, _mm512_set1_epi64(8));
  _mm512_storeu_si512(ids + cnt, _mm512_maskz_compress_epi64((__mmask8)(k & 0xFF), lo));
  cnt += __builtin_popcount((unsigned)(k & 0xFF));
  _mm512_storeu_si512(ids + cnt, _mm512_maskz_compress_epi64((__mmask8)(k >> 8), hi));
  return cnt + __builtin_popcount((unsigned)(k >> 8));
}
#endif

// ids[0 .. count) = the f in [0, n) with on[f] != 0, ascending; returns count. ids needs room for
// n + 8 entries (whole 8-id stores, and the scalar loop's one spare id past the last). With AVX-512, 16 features per step
// (a byte-mask test and append_ids16): the scalar loop was ~8% of a step.
inline int64_t compact_on(const uint8_t *on, int64_t n, int64_t *ids) {
  int64_t cnt = 0, f = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  for (; f + 16 <= n; f += 16)
    cnt = append_ids16(_mm_test_epi8_mask(_mm_loadu_si128(reinterpret_cast<const __m128i *>(on + f)),
                                          _mm_set1_epi8((char)0xFF)),
                       f, ids, cnt);
#endif
  for (; f < n; ++f) {
    ids[cnt] = f;
    cnt += on[f];
  }
  return cnt;
}

// Rows of a CSR tile into dense rows of x (stride ld): x[rr, idx[j]] += val[j] for the entries
// off[rr] .. off[rr + 1] of rows rr < nr (repeats add up), or, with clear, those slots set to 0.
template <typename T>
inline void scatter_rows(T *x, int64_t ld, const int64_t *off, const int64_t *idx, const T *val, int64_t nr,
                         bool clear) {
  for (int64_t rr = 0; rr < nr; ++rr) {
    T *xr = x + rr * ld;
    for (int64_t j = off[rr]; j < off[rr + 1]; ++j) {
      xr[idx[j]] = clear ? T(0) : xr[idx[j]] + val[j];
      asm("" : "+r"(j));  // keep this loop scalar: GCC made it a (slow, microcoded) AVX-512 scatter
    }
  }
}

struct StepFlags {
  bool hidden_relu, output_relu, abs_target, tied;
};

// One instance's forward, loss and backward over its B rows. Rows of E and D
// are copied into zero-padded rows of MP columns (MP a multiple of the vector
// width, fixed at compile time: the m-long loops unroll and the running sums
// h and gh live in registers instead of round-tripping through memory).
// Gradients accumulate into padded buffers and are copied out at the end.
// Rows go in tiles of RB = 8. Per tile: the inputs (sparse rows, or a dense tile for dense
// batches, see use_dense_tiles), the read-in h, the read-out fused with the loss (readout_loss),
// then three register-tiled backward products (gh, gD over the live features, gE).
template <typename T, int MP>
struct InstanceStep {
  static constexpr int RB = kTileRows;          // rows that share each load of a decoder row
  using VT = Vec<T>;
  using v_t = typename VT::v;
  static constexpr int W = VT::W, NV = MP / W;  // MP is a whole number of vectors
  static constexpr int G = NV == 1 ? 1 : 2;     // vectors per column group in the backward tiles
  // The read-out runs over NP >= n features, n rounded up to a whole register (zero
  // weights and bias past n): no scalar tail loop, which at n = 20 was the read-out's whole cost.
  static int64_t padded(int64_t n) { return (n + W - 1) / W * W; }
  int64_t n, m, NP;
  avector<T> E, D, gE, gD, dt, bpad, ipad, gbpad, hbuf, ghbuf, yblk, xv, dyblk;  // rows of MP / NP: whole lines
  std::vector<int64_t> nz;
  std::vector<uint8_t> live;
  InstanceStep(int64_t n_, int64_t m_)
      : n(n_), m(m_), NP(padded(n_)), E((size_t)n_ * MP), D((size_t)n_ * MP), gE((size_t)n_ * MP),
        gD((size_t)n_ * MP), dt((size_t)(MP * NP)), bpad((size_t)NP), ipad((size_t)NP), gbpad((size_t)NP),
        hbuf((size_t)RB * MP), ghbuf((size_t)RB * MP), yblk((size_t)(RB * NP)), xv((size_t)(RB * NP), T(0)), dyblk((size_t)(RB * NP)),
        nz((size_t)NP + 8), live((size_t)NP) {}

  // Dense-tile read-in and read-in gradient, for instances whose batch is dense enough that a
  // register-tiled product over all n features (each E / gE row loaded once per tile, sequentially)
  // beats one random E / gE row access per nonzero (see kDenseMinDensity). Over the features in
  // ascending order, so bit for bit the sparse loops' sums: a zero input adds an exact 0 (with finite
  // weights; an inf weight times a zero input gives NaN here where the sparse loop skips it).
  //   h[rr] = relu?(sum_f xv[rr, f] E[f])            gE[f] += sum_rr xv[rr, f] gh[rr]
  void readin_dense(bool hidden_relu) {
    rows_to_tile(E.data(), xv.data(), [](int64_t q) { return q; }, n, hidden_relu, hbuf.data());
  }
  void gE_dense(bool hidden_relu) {
    tile_to_rows(ghbuf.data(), hidden_relu ? hbuf.data() : nullptr, xv.data(), [](int64_t q) { return q; }, n,
                 gE.data());
  }

  // The two register-tiled product shapes of the step, over the features f = id(0) .. id(count - 1) in
  // that order (all n, or the tile's live ones), with the coefficients coef[rr * NP + f] of the tile's
  // RB rows; each src / dst row is loaded once per tile for all RB rows:
  //   rows_to_tile:  out[rr] = relu?(sum_q coef[rr, f_q] src[f_q])     (read-in h, read-out backward gh)
  //   tile_to_rows:  dst[f_q] += sum_rr coef[rr, f_q] t[rr]            (gE, gD; t[rr] kept where mask[rr] > 0)
  template <typename Id>
  void rows_to_tile(const T *src, const T *coef, Id id, int64_t count, bool relu, T *out) {
    const v_t zero = VT::splat(T(0));
    for (int cg = 0; cg < NV; cg += G) {
      v_t acc[RB][G];
      for (int rr = 0; rr < RB; ++rr)
        for (int c = 0; c < G; ++c) acc[rr][c] = zero;
      for (int64_t q = 0; q < count; ++q) {
        const int64_t f = id(q);
        v_t sr[G];
        for (int c = 0; c < G; ++c) sr[c] = VT::load(src + f * MP + (cg + c) * W);
        for (int rr = 0; rr < RB; ++rr) {
          const T x = coef[rr * NP + f];
          for (int c = 0; c < G; ++c) acc[rr][c] += x * sr[c];
        }
      }
      for (int rr = 0; rr < RB; ++rr)
        for (int c = 0; c < G; ++c) {
          v_t h = acc[rr][c];
          if (relu) h = h > zero ? h : zero;
          VT::store(out + rr * MP + (cg + c) * W, h);
        }
    }
  }
  template <typename Id>
  void tile_to_rows(const T *t, const T *mask, const T *coef, Id id, int64_t count, T *dst) {
    const v_t zero = VT::splat(T(0));
    for (int cg = 0; cg < NV; cg += G) {
      v_t tv[RB][G];
      for (int rr = 0; rr < RB; ++rr)
        for (int c = 0; c < G; ++c) {
          tv[rr][c] = VT::load(t + rr * MP + (cg + c) * W);
          if (mask) tv[rr][c] = VT::load(mask + rr * MP + (cg + c) * W) > zero ? tv[rr][c] : zero;
        }
      for (int64_t q = 0; q < count; ++q) {
        T *dr = dst + id(q) * MP + cg * W;
        const T *cf = coef + id(q);
        v_t a[G];
        for (int c = 0; c < G; ++c) a[c] = VT::load(dr + c * W);
        for (int rr = 0; rr < RB; ++rr) {
          const T x = cf[rr * NP];
          for (int c = 0; c < G; ++c) a[c] += x * tv[rr][c];
        }
        for (int c = 0; c < G; ++c) VT::store(dr + c * W, a[c]);
      }
    }
  }

  // The read-out of the tile (readout_tile.h, into yblk) and, per vector of features over all RB
  // rows, the loss and its gradient: y = relu?(out), loss += imp (y - x)^2, dy = 2 scale imp (y - x)
  // where the output is live (0 past a dead ReLU, and in rows past nr), the bias gradient summed over
  // the tile's rows, and live[f] = 1 when dy[., f] != 0 in some row. A pass per row over stored
  // outputs (the bias gradient and flags written once per row) was 15-17% of the step; with the
  // epilogue inside the read-out's register tile GCC spilled the tile's weights to the stack.
  // xv: the tile's inputs, dense, stride NP (the target is xv, or |xv| for the abs model).
  // Returns the tile's loss (unscaled: the sum of imp (y - x)^2 over its rows).
  template <bool ORELU, bool ABS>
  double readout_loss(int64_t nr, T c2) {
    using m_t = decltype(v_t{} != v_t{});  // lane masks (integer lanes, -1 / 0)
    typedef uint8_t b_t __attribute__((vector_size(W)));
    const v_t zero = VT::splat(T(0));
    v_t lsum = zero;
    readout_tile<T, false, RB>(hbuf.data(), MP, dt.data(), bpad.data(), NP, m, yblk.data(), NP, RB);
    for (int64_t f0 = 0; f0 < NP; f0 += W) {  // NP: a whole number of vectors
      const v_t im = VT::load(ipad.data() + f0), ci = c2 * im;
      v_t gs = zero;
      m_t any = zero != zero;
      for (int rr = 0; rr < RB; ++rr) {
        T *dyr = dyblk.data() + rr * NP + f0;
        if (rr >= nr) {
          VT::store(dyr, zero);
          continue;
        }
        const v_t out = VT::load(yblk.data() + rr * NP + f0);
        v_t y = out;
        if constexpr (ORELU) y = y > zero ? y : zero;  // a dead ReLU: output 0, gradient 0
        v_t x = VT::load(xv.data() + rr * NP + f0);
        if constexpr (ABS) x = x < zero ? -x : x;
        const v_t diff = y - x;
        lsum += im * diff * diff;
        v_t g = ci * diff;
        if constexpr (ORELU) g = out > zero ? g : zero;
        VT::store(dyr, g);
        gs += g;
        any |= g != zero;
      }
      VT::store(gbpad.data() + f0, VT::load(gbpad.data() + f0) + gs);
      const b_t flags = __builtin_convertvector(any, b_t) & (uint8_t)1;
      __builtin_memcpy(live.data() + f0, &flags, sizeof(b_t));
    }
    double l = 0.0;
    for (int u = 0; u < W; ++u) l += (double)lsum[u];
    return l;
  }

  // src.tile(b0, nr, off, idx, val) gives rows [b0, b0 + nr) of the instance: row b0 + rr has the
  // entries off[rr] .. off[rr + 1] of idx / val (CsrRows: a sampled batch; SampledRows: drawn here).
  template <typename Src>
  double run(Src &src, int64_t B, const T *Ei, const T *Di, const T *bi, const T *ii, T *gEi, T *gDi, T *gbi,
             double scale, StepFlags fl) {
    for (int64_t f = 0; f < n; ++f) {  // rows of m, zero-padded to MP
      std::copy(Ei + f * m, Ei + f * m + m, E.data() + f * MP);
      std::fill(E.data() + f * MP + m, E.data() + (f + 1) * MP, T(0));
      std::copy(Di + f * m, Di + f * m + m, D.data() + f * MP);
      std::fill(D.data() + f * MP + m, D.data() + (f + 1) * MP, T(0));
    }
    std::fill(gE.begin(), gE.end(), T(0));
    if (!fl.tied) std::fill(gD.begin(), gD.end(), T(0));
    // dt = D^T [MP, NP]: rows t < m from the padded D (contiguous writes), the rest stay 0
    for (int64_t t = 0; t < m; ++t) {
      T *dr = dt.data() + t * NP;
      for (int64_t f = 0; f < n; ++f) dr[f] = D[f * MP + t];
      std::fill(dr + n, dr + NP, T(0));
    }
    std::fill(dt.begin() + m * NP, dt.end(), T(0));
    std::fill(bpad.begin(), bpad.end(), T(0));
    std::copy(bi, bi + n, bpad.begin());
    std::fill(ipad.begin(), ipad.end(), T(0));  // padded features: no loss, no gradient
    std::copy(ii, ii + n, ipad.begin());
    std::fill(gbpad.begin(), gbpad.end(), T(0));
    std::fill(xv.begin(), xv.end(), T(0));  // the sparse path clears only what it set (a dense instance may precede)
    T *gDp = fl.tied ? gE.data() : gD.data();  // tied: one gradient buffer
    const v_t zero = VT::splat(T(0));
    double loss = 0.0;
    const bool dense = src.dense();
    for (int64_t b0 = 0; b0 < B; b0 += RB) {
      const int64_t nr = std::min<int64_t>(RB, B - b0);
      const int64_t *off = nullptr, *idx = nullptr;
      const T *val = nullptr;
      if (dense) {
        src.dense_tile(b0, nr, xv.data(), NP);
      } else {
        src.tile(b0, nr, off, idx, val);
        if constexpr (Src::kUniqueIds) {  // drawn rows: ascending, distinct ids, so a plain store each
          for (int64_t rr = 0; rr < nr; ++rr) {
            T *xr = xv.data() + rr * NP;
            for (int64_t j = off[rr]; j < off[rr + 1]; ++j) {
              xr[idx[j]] = val[j];
              asm("" : "+r"(j));  // scalar (see scatter_rows)
            }
          }
        } else {
          scatter_rows(xv.data(), NP, off, idx, val, nr, false);  // the tile's inputs, dense, for the loss
        }
      }
      // ---- forward: h for RB rows (padded to MP; rows past nr stay 0), then the read-out with the loss.
      if (dense) {
        readin_dense(fl.hidden_relu);
      } else {
        // The running sums are explicit vectors: with a plain T[MP] array GCC kept them on the stack
        // and built every second row of E with gathers.
        for (int64_t rr = 0; rr < RB; ++rr) {
          v_t h[NV];
          for (int c = 0; c < NV; ++c) h[c] = zero;
          if (rr < nr) {
            for (int64_t j = off[rr]; j < off[rr + 1]; ++j) {
              const T v = val[j];
              const T *er = E.data() + idx[j] * MP;
              for (int c = 0; c < NV; ++c) h[c] += v * VT::load(er + c * W);
            }
            if (fl.hidden_relu)
              for (int c = 0; c < NV; ++c) h[c] = h[c] > zero ? h[c] : zero;
          }
          for (int c = 0; c < NV; ++c) VT::store(hbuf.data() + rr * MP + c * W, h[c]);
        }
      }
      const T c2 = (T)(2.0 * scale);
      loss += fl.output_relu ? (fl.abs_target ? readout_loss<true, true>(nr, c2) : readout_loss<true, false>(nr, c2))
                             : (fl.abs_target ? readout_loss<false, true>(nr, c2) : readout_loss<false, false>(nr, c2));
      // ---- backward of the read-out for the whole tile, as two register-tiled products over the
      // features whose output gradient is nonzero in some row of the tile (a dead ReLU with a zero
      // target has none):
      //   gh[rr] = sum_f dy[rr, f] D[f]          gD[f] += sum_rr dy[rr, f] h[rr]
      // Each D row and each gD row is loaded once per tile instead of once per row.
      const int64_t nnz = compact_on(live.data(), NP, nz.data());
      const int64_t *live_ids = nz.data();
      const auto live_id = [live_ids](int64_t q) { return live_ids[q]; };
      rows_to_tile(D.data(), dyblk.data(), live_id, nnz, false, ghbuf.data());
      tile_to_rows(hbuf.data(), nullptr, dyblk.data(), live_id, nnz, gDp);
      // ---- back through the hidden ReLU and the read-in
      if (dense) {
        gE_dense(fl.hidden_relu);
      } else {
        for (int64_t rr = 0; rr < nr; ++rr) {
          v_t gh[NV];
          for (int c = 0; c < NV; ++c) {
            gh[c] = VT::load(ghbuf.data() + rr * MP + c * W);
            if (fl.hidden_relu) {
              const v_t h = VT::load(hbuf.data() + rr * MP + c * W);
              gh[c] = h > zero ? gh[c] : zero;
            }
          }
          for (int64_t j = off[rr]; j < off[rr + 1]; ++j) {
            const T v = val[j];
            T *ger = gE.data() + idx[j] * MP;
            for (int c = 0; c < NV; ++c) VT::store(ger + c * W, VT::load(ger + c * W) + v * gh[c]);
          }
        }
        // clear what was set: whole rows when that is fewer stores (16 entries a vector store)
        if ((off[nr] - off[0]) * 16 > nr * NP)
          std::fill(xv.begin(), xv.begin() + nr * NP, T(0));
        else
          scatter_rows(xv.data(), NP, off, idx, val, nr, true);
      }
    }
    std::copy(gbpad.begin(), gbpad.begin() + n, gbi);
    for (int64_t f = 0; f < n; ++f) {
      std::copy(gE.data() + f * MP, gE.data() + f * MP + m, gEi + f * m);
      if (!fl.tied) std::copy(gD.data() + f * MP, gD.data() + f * MP + m, gDi + f * m);
    }
    return loss * scale;
  }
};

// Small models without feature pairs (n and m small, see use_lanes): SIMD lanes are batch rows.
// With n = 20, m = 5 a row is ~100 multiply-adds per product, too little to amortise the per-row
// loops of InstanceStep (hashing, compaction, tile lists: ~475 cycles a row). Here L rows at once
// (16 float / 8 double) run every loop over features and hidden units as one vector operation:
// the batch is drawn densely (the same hashes as row_mask / sample_fill, so the same numbers), and
// the read-in, read-out and both backward products are dense over the n x m weights. Gradients
// are summed per lane and the lanes added at the end (deterministic; a different order than
// InstanceStep, so equal to it to rounding, not bitwise).
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

template <typename T>
struct LaneStep {
  using VT = Vec<T>;
  using v_t = typename VT::v;
  static constexpr int L = VT::W;
  using u_t = typename LaneWords<L>::u;  // L uint32 lanes (the hashes)
  using f_t = typename LaneWords<L>::f;  // L float lanes (the drawn values, before conversion to T)
  typedef std::conditional_t<sizeof(T) == 4, int32_t, int64_t> I;
  typedef I i_t __attribute__((vector_size(64)));
  int64_t n, m;
  avector<T> x, h, gh, dy, aE, aD, ab;  // per feature / hidden unit / weight: L lanes each

  LaneStep(int64_t n_, int64_t m_)
      : n(n_), m(m_), x((size_t)(n_ * L)), h((size_t)(m_ * L)), gh((size_t)(m_ * L)), dy((size_t)(n_ * L)),
        aE((size_t)(n_ * m_ * L)), aD((size_t)(n_ * m_ * L)), ab((size_t)(n_ * L)) {}

  static inline v_t ld(const T *a, int64_t k) { return VT::load(a + k * L); }
  static inline void st(T *a, int64_t k, v_t v) { VT::store(a + k * L, v); }
  static inline T hsum(v_t v) {
    T s = 0;
    for (int l = 0; l < L; ++l) s += v[l];
    return s;
  }

  __attribute__((noinline)) double run(const SampleSpec &sp, const std::vector<uint64_t> &bases, bool signed_values,
                                       int64_t i, int64_t B,
             const T *Ei, const T *Di, const T *bi, const T *ii, T *gEi, T *gDi, T *gbi, double scale,
             StepFlags fl) {
    std::fill(aE.begin(), aE.end(), T(0));
    std::fill(aD.begin(), aD.end(), T(0));
    std::fill(ab.begin(), ab.end(), T(0));
    // The buffers as local pointers (shadowing the members): the vector stores (memcpy) may alias
    // anything, so through the members GCC reloaded every data pointer from *this in the inner loops.
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
// lane_strategy() (tests, _C.tms_lane_strategy): 0 automatic, 1 never, 2 always (without pairs).
inline std::atomic<int> &lane_strategy() {
  static std::atomic<int> s{0};
  return s;
}
// Dense tiles (InstanceStep::readin_dense / gE_dense) for an instance whose batch has at least
// kDenseMinDensity of its entries nonzero: the sparse read-in and its gradient cost ~8 cycles a
// nonzero (a random E row read and a random gE row read-modify-written, from L2), the dense pair 2 x 8
// FMAs a feature (rows streamed). Measured crossover (whole step, 20 instances of one density, forced
// either way, sparse / dense time; 64-byte aligned buffers): n=400 m=30: 0.98 at p=0.3, 1.01 at 0.35,
// 1.12 at 0.45; n=200 m=20: 0.97 at 0.3, 1.03 at 0.35; n=1000 m=64: 0.96 at 0.3, 1.02 at 0.35.
// (Before the buffers were aligned every row access split two cache lines and the crossover was 0.25.)
// dense_strategy() (tests, _C.tms_dense_strategy): 0 automatic, 1 never, 2 always.
constexpr double kDenseMinDensity = 0.3;
inline std::atomic<int> &dense_strategy() {
  static std::atomic<int> s{0};
  return s;
}
inline bool use_dense_tiles(double nonzeros, double entries) {
  const int forced = dense_strategy().load(std::memory_order_relaxed);
  if (forced != 0) return forced == 2;
  return entries > 0 && nonzeros >= kDenseMinDensity * entries;
}
inline bool use_lanes(int64_t n, int64_t m, int64_t corr, int64_t anti) {
  const int forced = lane_strategy().load(std::memory_order_relaxed);
  if (forced != 0) return forced == 2 && corr == 0 && anti == 0;
  return corr == 0 && anti == 0 && n * m <= kLaneMaxWeights;
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
  bool dense_ = false;
  void select(int64_t i) {
    off = offsets + i * B;
    dense_ = use_dense_tiles((double)(off[B] - off[0]), (double)B * (double)n);
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

// The ids of row r's nonzeros, ascending, into ids (room for n + 8, as compact_on): row_mask then compact_on, the
// same ids; with AVX-512 the independent features go 16 at a time from the hash comparison's mask
// straight to compressed ids, without the flag bytes in between.
inline int64_t row_ids(const SampleSpec &sp, int64_t i, uint32_t kon, Rng &pairs, uint8_t *on, int64_t *ids) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  typedef uint32_t u32v __attribute__((vector_size(64)));
  const int64_t n = sp.n, first_free = pair_mask(sp, i, pairs, on);
  const uint32_t *thr = sp.thr.data() + i * n;
  int64_t cnt = 0, f = 0;
  for (; f < first_free; ++f) {
    ids[cnt] = f;
    cnt += on[f];
  }
  const u32v lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  for (; f + 16 <= n; f += 16) {
    const u32v h = mix32((u32v{} + kon) + ((u32v{} + (uint32_t)f) + lane) * 0x9E3779B9U);
    __m512i hv;
    __builtin_memcpy(&hv, &h, 64);
    cnt = append_ids16(_mm512_cmple_epu32_mask(hv, _mm512_loadu_si512(thr + f)), f, ids, cnt);
  }
  for (; f < n; ++f) {
    ids[cnt] = f;
    cnt += mix32(kon + (uint32_t)f * 0x9E3779B9U) <= thr[f];
  }
  return cnt;
#else
  row_mask(sp, i, kon, pairs, on);
  return compact_on(on, sp.n, ids);
#endif
}

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
  SampledRows(const SampleSpec &s, const std::vector<uint64_t> &b, bool sv)
      : sp(&s), bases(&b), signed_values(sv), on((size_t)s.n), ids((size_t)(kTileRows * s.n + 8)),
        vals((size_t)(kTileRows * s.n + 8)) {}
  static inline T value_of(uint32_t kval, int64_t f, bool sv) {  // sample_fill's value of feature f
    const float u = (float)(mix32(kval + (uint32_t)f * 0x9E3779B9U) >> 8) * (1.0f / 16777216.0f);
    return (T)(sv ? 2.0f * u - 1.0f : u);
  }
  bool dense_ = false;
  void select(int64_t inst) {
    i = inst;
    double expect = 0.0;  // expected entries per row
    for (int64_t f = 0; f < sp->n; ++f) expect += sp->p[i * sp->n + f];
    dense_ = use_dense_tiles(expect, (double)sp->n);
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
    const int64_t n = sp->n;
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

// AdamW applied inside the step, instance by instance, while the instance's gradients are still in
// cache (tms_sample_adamw_step): torch.optim.AdamW's update (decoupled weight decay, bias-corrected
// moments), element by element, with its scalars computed in double and applied in T as torch does:
//   p *= 1 - lr wd;  m += (1 - b1) (g - m);  v = v b2 + (1 - b2) g g;
//   p += -(lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// The same operations on every element in every instance, so an instance's update does not depend on
// where it sits in the batch (a packed sweep equals its lone runs bit for bit). Equal to torch's AdamW
// to rounding (fused multiply-adds), not bitwise.
template <typename T>
struct AdamW {
  T *E, *D, *b;                 // parameters [I, n, m], [I, n, m] (D == E when tied), [I, n]
  T *mE, *vE, *mD, *vD, *mb, *vb;  // their first and second moments (mD == mE when tied)
  T decay, omb1, b2, omb2, bc2_sqrt, eps, neg_step;
  bool tied;
  AdamW(T *E_, T *D_, T *b_, T *mE_, T *vE_, T *mD_, T *vD_, T *mb_, T *vb_, double lr, double beta1,
        double beta2, double eps_, double weight_decay, int64_t t)
      : E(E_), D(D_), b(b_), mE(mE_), vE(vE_), mD(mD_), vD(vD_), mb(mb_), vb(vb_),
        decay((T)(1.0 - lr * weight_decay)), omb1((T)(1.0 - beta1)), b2((T)beta2), omb2((T)(1.0 - beta2)),
        bc2_sqrt((T)std::sqrt(1.0 - std::pow(beta2, (double)t))), eps((T)eps_),
        neg_step((T)(-lr / (1.0 - std::pow(beta1, (double)t)))), tied(E_ == D_) {}
  void update(T *p, T *m, T *v, const T *g, int64_t count) const {
#pragma omp simd
    for (int64_t k = 0; k < count; ++k) {
      const T gk = g[k];
      const T mk = m[k] + omb1 * (gk - m[k]);
      const T vk = v[k] * b2 + omb2 * gk * gk;
      const T den = std::sqrt(vk) / bc2_sqrt + eps;
      p[k] = p[k] * decay + neg_step * mk / den;
      m[k] = mk;
      v[k] = vk;
    }
  }
  // instance i, its gradients gE, gD (== gE when tied), gb contiguous as the parameters' slices
  void apply(int64_t i, int64_t n, int64_t m, const T *gE, const T *gD, const T *gb) const {
    const int64_t o = i * n * m;
    update(E + o, mE + o, vE + o, gE, n * m);
    if (!tied) update(D + o, mD + o, vD + o, gD, n * m);
    update(b + i * n, mb + i * n, vb + i * n, gb, n);
  }
};

// Per-thread gradient scratch for one instance when AdamW runs inside the step (the gradients are
// consumed there and never written to the caller's arrays); otherwise instance i's slices of those.
template <typename T>
struct GradSlot {
  std::vector<T> sE, sD, sb;
  GradSlot(const AdamW<T> *ad, int64_t n, int64_t m)
      : sE(ad ? (size_t)(n * m) : 0), sD(ad && !ad->tied ? (size_t)(n * m) : 0), sb(ad ? (size_t)n : 0) {}
  T *gE, *gD, *gb;
  void at(const AdamW<T> *ad, int64_t i, int64_t n, int64_t m, T *gEp, T *gDp, T *gbp) {
    if (ad) {
      gE = sE.data();
      gD = ad->tied ? sE.data() : sD.data();
      gb = sb.data();
    } else {
      gE = gEp + i * n * m;
      gD = gDp + i * n * m;
      gb = gbp + i * n;
    }
  }
};

// Work is split by instance: each instance's gradients belong to one thread (no atomics, deterministic).
// make_src() -> a row source (one per thread); src.select(i) points it at instance i.
template <typename T, int MP, typename MakeSrc>
void step_all(MakeSrc make_src, int64_t I, int64_t B, int64_t n, int64_t m, const T *Ep, const T *Dp, const T *bp,
              const T *ip, T *gEp, T *gDp, T *gbp, double *lp, double scale, StepFlags fl, int nthreads,
              const AdamW<T> *ad = nullptr) {
#pragma omp parallel num_threads(nthreads)
  {
    InstanceStep<T, MP> st(n, m);
    GradSlot<T> g(ad, n, m);
    auto src = make_src();
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < I; ++i) {
      src.select(i);
      g.at(ad, i, n, m, gEp, gDp, gbp);
      lp[i] = st.run(src, B, Ep + i * n * m, Dp + i * n * m, bp + i * n, ip + i * n, g.gE, g.gD, g.gb, scale, fl);
      if (ad) ad->apply(i, n, m, g.gE, g.gD, g.gb);
    }
  }
}

// Call go(integral_constant<MP>) with MP = m rounded up to a whole number of AVX-512 registers.
template <typename T, typename Go>
void dispatch_mp(int64_t m, Go go) {
  constexpr int V = 64 / sizeof(T);  // one AVX-512 register
  if (m <= V) go(std::integral_constant<int, V>());
  else if (m <= 2 * V) go(std::integral_constant<int, 2 * V>());
  else if (m <= 4 * V) go(std::integral_constant<int, 4 * V>());
  else if (m <= 8 * V) go(std::integral_constant<int, 8 * V>());
  else if (m <= 16 * V) go(std::integral_constant<int, 16 * V>());
  else go(std::integral_constant<int, 256>());
}

// The model and gradient arguments of tms_step / tms_sample_step (E [I, n, m] already checked);
// returns whether the model is tied (E is D).
template <typename T>
bool check_model_args(const carray<T> &E, const carray<T> &D, const carray<T> &b, const carray<T> &imp,
                      const carray<T> &gE, const carray<T> &gD, const carray<T> &gb, const carray<double> &loss) {
  const py::ssize_t I = E.shape(0), n = E.shape(1), m = E.shape(2);
  check_shape(D, "D", {I, n, m});
  check_shape(b, "b", {I, n});
  check_shape(imp, "importance", {I, n});
  check_shape(gE, "gE", {I, n, m});
  check_shape(gD, "gD", {I, n, m});
  check_shape(gb, "gb", {I, n});
  check_shape(loss, "loss", {I});
  const bool tied = E.data() == D.data();
  if (tied != (gE.data() == gD.data())) fail("gD", "a tied model (E is D) needs gE to be gD, and only then");
  if (m > 256) fail("E", "n_hidden above 256 is not supported by the fused step; use backend='reference'");
  return tied;
}

template <typename T>
void step(const carray<int64_t> &offsets, const carray<int64_t> &indices, const carray<T> &values,
          const carray<T> &E, const carray<T> &D, const carray<T> &b, const carray<T> &imp, carray<T> &gE,
          carray<T> &gD, carray<T> &gb, carray<double> &loss, bool hidden_relu, bool output_relu, bool abs_target,
          int nthreads) {
  check_shape(E, "E", {-1, -1, -1});
  const py::ssize_t I = E.shape(0), n = E.shape(1), m = E.shape(2);
  check_shape(offsets, "offsets", {-1});
  if (offsets.shape(0) < 1 || (offsets.shape(0) - 1) % I != 0) fail("offsets", "expected I * batch_size + 1 entries");
  const py::ssize_t B = (offsets.shape(0) - 1) / I;
  check_shape(indices, "indices", {-1});
  const py::ssize_t nnz = indices.shape(0);
  check_shape(values, "values", {nnz});
  const bool tied = check_model_args(E, D, b, imp, gE, gD, gb, loss);
  const int64_t *off = offsets.data();
  const int64_t *idx = indices.data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_offsets(off, I * B, nnz);
  for (int64_t t = 0; t < nnz; ++t)  // -1 padding is not allowed in CSR batches
    if (idx[t] < 0 || idx[t] >= n) {
      fail_index("indices", "index " + std::to_string(idx[t]) + " at position " + std::to_string(t) +
                                " is out of range [0, " + std::to_string(n) + ")");
    }
  const double scale = (B > 0 && n > 0) ? 1.0 / ((double)B * (double)n) : 0.0;
  const StepFlags fl{hidden_relu, output_relu, abs_target, tied};
  const T *val = values.data();
  auto make_src = [&]() { return CsrRows<T>{off, idx, val, B, nullptr, n}; };
  dispatch_mp<T>(m, [&](auto mp) {
    step_all<T, decltype(mp)::value>(make_src, I, B, n, m, E.data(), D.data(), b.data(), imp.data(),
                                     gE.mutable_data(), gD.mutable_data(), gb.mutable_data(),
                                     loss.mutable_data(), scale, fl, nthreads);
  });
}

// tms_step on the batch that tms_sample_count + tms_sample_fill would draw for (seed, step, p, ...),
// drawn tile by tile inside the step instead: the same numbers, so the same losses and gradients,
// bit for bit, without writing the batch to memory and reading it back (at I=100, n=400, B=1024 that
// batch is 13M entries, 160 MB, and drawing it took two hashing passes).
// The body of tms_sample_step / tms_sample_adamw_step once the arguments are checked: gradients into
// gE, gD, gb, or, with ad, AdamW applied to the weights inside the step (gE, gD, gb unused).
template <typename T>
void sample_step_run(const SampleSpec &sp, const std::vector<uint64_t> &bases, bool signed_values, int64_t I,
                     int64_t batch, int64_t n, int64_t m, const T *E, const T *D, const T *b, const T *imp, T *gE,
                     T *gD, T *gb, double *loss, StepFlags fl, int nthreads, const AdamW<T> *ad) {
  const double scale = (batch > 0 && n > 0) ? 1.0 / ((double)batch * (double)n) : 0.0;
  if (use_lanes(n, m, sp.corr, sp.anti)) {
#pragma omp parallel num_threads(nthreads)
    {
      LaneStep<T> st(n, m);
      GradSlot<T> g(ad, n, m);
#pragma omp for schedule(dynamic, 1)
      for (int64_t i = 0; i < I; ++i) {
        g.at(ad, i, n, m, gE, gD, gb);
        loss[i] = st.run(sp, bases, signed_values, i, batch, E + i * n * m, D + i * n * m, b + i * n, imp + i * n,
                         g.gE, g.gD, g.gb, scale, fl);
        if (ad) ad->apply(i, n, m, g.gE, g.gD, g.gb);
      }
    }
    return;
  }
  auto make_src = [&]() { return SampledRows<T>(sp, bases, signed_values); };
  dispatch_mp<T>(m, [&](auto mp) {
    step_all<T, decltype(mp)::value>(make_src, I, batch, n, m, E, D, b, imp, gE, gD, gb, loss, scale, fl, nthreads,
                                     ad);
  });
}

template <typename T>
void sample_step(uint64_t seed, int64_t step_no, const carray<double> &p, int64_t batch, int64_t corr, int64_t anti,
                 bool signed_values, const carray<T> &E, const carray<T> &D, const carray<T> &b,
                 const carray<T> &imp, carray<T> &gE, carray<T> &gD, carray<T> &gb, carray<double> &loss,
                 bool hidden_relu, bool output_relu, bool abs_target, int nthreads, const py::object &instance_seeds) {
  check_shape(E, "E", {-1, -1, -1});
  const py::ssize_t I = E.shape(0), n = E.shape(1), m = E.shape(2);
  check_shape(p, "p", {I, n});
  const SampleSpec sp = make_spec(p, batch, corr, anti);
  const std::vector<uint64_t> bases = instance_bases(seed, instance_keys(instance_seeds, I), step_no, I);
  const bool tied = check_model_args(E, D, b, imp, gE, gD, gb, loss);
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  sample_step_run<T>(sp, bases, signed_values, I, batch, n, m, E.data(), D.data(), b.data(), imp.data(),
                     gE.mutable_data(), gD.mutable_data(), gb.mutable_data(), loss.mutable_data(),
                     StepFlags{hidden_relu, output_relu, abs_target, tied}, nthreads, nullptr);
}

// tms_sample_step followed by AdamW on E, D, b (in place), fused: each instance's update runs as
// soon as its gradients are complete, on the same thread (see AdamW). state: the six moment arrays
// [exp_avg_E, exp_avg_sq_E, exp_avg_D, exp_avg_sq_D, exp_avg_b, exp_avg_sq_b] (the D pair is the E
// pair when tied), updated in place; adam_step: the step number t >= 1 of the bias corrections.
template <typename T>
void sample_adamw_step(uint64_t seed, int64_t step_no, const carray<double> &p, int64_t batch, int64_t corr,
                       int64_t anti, bool signed_values, carray<T> &E, carray<T> &D, carray<T> &b,
                       const carray<T> &imp, const py::list &state, carray<double> &loss, bool hidden_relu,
                       bool output_relu, bool abs_target, double lr, double beta1, double beta2, double eps,
                       double weight_decay, int64_t adam_step, int nthreads, const py::object &instance_seeds) {
  check_shape(E, "E", {-1, -1, -1});
  const py::ssize_t I = E.shape(0), n = E.shape(1), m = E.shape(2);
  check_shape(p, "p", {I, n});
  check_shape(D, "D", {I, n, m});
  check_shape(b, "b", {I, n});
  check_shape(imp, "importance", {I, n});
  check_shape(loss, "loss", {I});
  if (m > 256) fail("E", "n_hidden above 256 is not supported by the fused step; use backend='reference'");
  if (state.size() != 6) fail("state", "expected 6 arrays: exp_avg / exp_avg_sq of E, D and b");
  std::vector<carray<T>> st;
  const char *names[6] = {"state[0] (exp_avg of E)", "state[1] (exp_avg_sq of E)", "state[2] (exp_avg of D)",
                          "state[3] (exp_avg_sq of D)", "state[4] (exp_avg of b)", "state[5] (exp_avg_sq of b)"};
  for (int k = 0; k < 6; ++k) {
    if (!py::isinstance<carray<T>>(state[k])) fail(names[k], "expected a C-contiguous array of the weights' dtype");
    st.push_back(state[k].cast<carray<T>>());
    check_shape(st.back(), names[k], k < 4 ? std::vector<py::ssize_t>{I, n, m} : std::vector<py::ssize_t>{I, n});
  }
  const bool tied = E.data() == D.data();
  if (tied != (st[0].data() == st[2].data() && st[1].data() == st[3].data()))
    fail("state", "a tied model (E is D) needs the D moments to be the E moments, and only then");
  if (!(lr > 0) || !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) || !(eps > 0) || !(weight_decay >= 0))
    fail("lr", "AdamW needs lr > 0, 0 <= betas < 1, eps > 0, weight_decay >= 0");
  if (adam_step < 1) fail("adam_step", "must be >= 1 (the step number of the bias corrections)");
  const SampleSpec sp = make_spec(p, batch, corr, anti);
  const std::vector<uint64_t> bases = instance_bases(seed, instance_keys(instance_seeds, I), step_no, I);
  nthreads = set_threads(nthreads);
  const AdamW<T> ad(E.mutable_data(), D.mutable_data(), b.mutable_data(), st[0].mutable_data(),
                    st[1].mutable_data(), st[2].mutable_data(), st[3].mutable_data(), st[4].mutable_data(),
                    st[5].mutable_data(), lr, beta1, beta2, eps, weight_decay, adam_step);
  py::gil_scoped_release release;
  sample_step_run<T>(sp, bases, signed_values, I, batch, n, m, E.data(), D.data(), b.data(), imp.data(), nullptr,
                     nullptr, nullptr, loss.mutable_data(), StepFlags{hidden_relu, output_relu, abs_target, tied},
                     nthreads, &ad);
}

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("tms_sample_fill", &sample_fill<T>, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(), py::arg("batch_size"), py::arg("correlated_pairs"),
        py::arg("anticorrelated_pairs"), py::arg("signed_values"), py::arg("offsets").noconvert(),
        py::arg("indices").noconvert(), py::arg("values").noconvert(), py::arg("nthreads") = 0,
        py::arg("instance_seeds") = py::none());
  m.def("tms_sample_onepass", &sample_onepass<T>, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(),
        py::arg("batch_size"), py::arg("correlated_pairs"), py::arg("anticorrelated_pairs"), py::arg("signed_values"),
        py::arg("offsets").noconvert(), py::arg("indices").noconvert(), py::arg("values").noconvert(),
        py::arg("nthreads") = 0, py::arg("instance_seeds") = py::none());
  m.def("tms_sample_step", &sample_step<T>, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(),
        py::arg("batch_size"), py::arg("correlated_pairs"), py::arg("anticorrelated_pairs"), py::arg("signed_values"),
        py::arg("E").noconvert(), py::arg("D").noconvert(), py::arg("b").noconvert(), py::arg("importance").noconvert(),
        py::arg("gE").noconvert(), py::arg("gD").noconvert(), py::arg("gb").noconvert(), py::arg("loss").noconvert(),
        py::arg("hidden_relu"), py::arg("output_relu"), py::arg("abs_target"), py::arg("nthreads") = 0,
        py::arg("instance_seeds") = py::none());
  m.def("tms_sample_adamw_step", &sample_adamw_step<T>, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(),
        py::arg("batch_size"), py::arg("correlated_pairs"), py::arg("anticorrelated_pairs"), py::arg("signed_values"),
        py::arg("E").noconvert(), py::arg("D").noconvert(), py::arg("b").noconvert(), py::arg("importance").noconvert(),
        py::arg("state"), py::arg("loss").noconvert(), py::arg("hidden_relu"), py::arg("output_relu"),
        py::arg("abs_target"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("adam_step"), py::arg("nthreads") = 0, py::arg("instance_seeds") = py::none());
  m.def("tms_step", &step<T>, py::arg("offsets").noconvert(), py::arg("indices").noconvert(), py::arg("values").noconvert(), py::arg("E").noconvert(),
        py::arg("D").noconvert(), py::arg("b").noconvert(), py::arg("importance").noconvert(),
        py::arg("gE").noconvert(), py::arg("gD").noconvert(), py::arg("gb").noconvert(), py::arg("loss").noconvert(),
        py::arg("hidden_relu"), py::arg("output_relu"), py::arg("abs_target"), py::arg("nthreads") = 0);
}

}  // namespace

void register_tms(py::module_ &m) {
  m.def(
      "tms_lane_strategy",
      [](int s) {
        if (s < 0 || s > 2) fail("strategy", "expected 0 (automatic), 1 (rows) or 2 (lanes)");
        return lane_strategy().exchange(s);
      },
      py::arg("strategy"),
      "Set how tms_sample_step runs small models (0 automatic, 1 row tiles, 2 rows in SIMD lanes); returns the old one.");
  m.def(
      "tms_dense_strategy",
      [](int s) {
        if (s < 0 || s > 2) fail("strategy", "expected 0 (automatic), 1 (sparse rows) or 2 (dense tiles)");
        return dense_strategy().exchange(s);
      },
      py::arg("strategy"),
      "Set how the row-tiled TMS steps read their inputs (0 automatic by density, 1 sparse rows, 2 dense "
      "tiles); the results are the same bit for bit with finite weights. Returns the old one.");
  m.def("tms_sample_count", &sample_count, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(), py::arg("batch_size"), py::arg("correlated_pairs"),
        py::arg("anticorrelated_pairs"), py::arg("offsets").noconvert(), py::arg("nthreads") = 0,
        py::arg("instance_seeds") = py::none());
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace supcomp
