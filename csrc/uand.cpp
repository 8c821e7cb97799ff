// U-AND (Vaintrob, Mendel & Hanni 2024): one ReLU layer whose activations let
// a linear read-out recover the AND of every pair (or k-tuple) of sparse
// boolean inputs. C in {0,1}^{d x m} is stored sparsely, twice:
//   by input  (col_ptr [m+1], col_idx [nnz]): S_i = neurons fed by input i, sorted ascending
//   by neuron (nrn_ptr [d+1], nrn_idx [nnz]): L_n = inputs feeding neuron n, sorted ascending
//
// Kernels (T = float or double, all arrays C-contiguous):
//   uand_forward     a[b, n] = relu(bias + sum_j values[b, j] * C[n, indices[b, j]])     (indices -1: empty)
//   uand_intersect   CSR of the gate read-out sets  R_g = S_{g0} ∩ ... ∩ S_{g,k-1}
//   uand_readout     outT[g, :] = sum_{n in R_g} aT[n, :] / |R_g|   (0 for an empty R_g; aT = a transposed)
//   uand_pair_counts counts[pair(i, j)] = |S_i ∩ S_j| for all i < j
//   uand_all_pairs   est[b, pair(i, j)] = sum_{n in S_i ∩ S_j} a[b, n] / |S_i ∩ S_j| for the pairs of rows i0 <= i < i1
//
// The mean divides by the set size (not a multiply by 1/size), so c active neurons of
// activation 1 read exactly 1.
//
// Pairs are numbered row-major over the upper triangle:
//   pair(i, j) = off(i) + (j - i - 1),  off(i) = i (2m - i - 1) / 2,  0 <= i < j < m.
//
// Every index read through is bounds-checked before it touches memory; a bad
// one raises IndexError naming the argument (never a segfault).
//
// One file of over 400 lines: the kernels above make up the one U-AND op and share its CSR
// checks, pair numbering and streaming stores, which no other file uses.
#include "checked.h"
#include "common.h"
#include "isa.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace {

inline int64_t pair_off(int64_t i, int64_t m) {
  return i * (2 * m - i - 1) / 2;
}

// Copy a row from an L1 buffer to the (large, write-once) output with non-temporal stores where
// the CPU has them: the all-pairs output is far larger than the caches, and streaming stores skip
// the read-for-ownership that ordinary stores pay (half the memory traffic). Callers fence.
template <typename T>
inline void stream_row(T *dst, const T *src, int64_t n) {
#if defined(__AVX512F__)
  constexpr int64_t W = 64 / sizeof(T);
  int64_t t = 0;
  for (; t < n && (reinterpret_cast<uintptr_t>(dst + t) & 63) != 0; ++t) dst[t] = src[t];
  for (; t + W <= n; t += W) {
    if constexpr (sizeof(T) == 4)
      _mm512_stream_ps(reinterpret_cast<float *>(dst + t), _mm512_loadu_ps(reinterpret_cast<const float *>(src + t)));
    else
      _mm512_stream_pd(reinterpret_cast<double *>(dst + t), _mm512_loadu_pd(reinterpret_cast<const double *>(src + t)));
  }
  for (; t < n; ++t) dst[t] = src[t];
#else
  std::memcpy(dst, src, (size_t)n * sizeof(T));
#endif
}

inline void stream_fence() {
#if defined(__AVX512F__)
  _mm_sfence();
#endif
}

[[noreturn]] void index_fail(const char *arg, const std::string &what) {
  fail_index(arg, what);
}

// A CSR pointer array must start at 0, never decrease and end at nnz.
void check_ptr(const int64_t *ptr, int64_t rows, int64_t nnz, const char *arg) {
  if (ptr[0] != 0 || ptr[rows] != nnz) fail(arg, "must start at 0 and end at the number of stored entries");
  for (int64_t r = 0; r < rows; ++r)
    if (ptr[r + 1] < ptr[r]) fail(arg, "must be non-decreasing (a valid CSR row pointer)");
}

// Every stored index in [0, n): a full O(nnz) check, parallel.
void check_range(const int64_t *idx, int64_t count, int64_t n, const char *arg) {
  int64_t bad = -1;
#pragma omp parallel for reduction(max : bad) schedule(static)
  for (int64_t t = 0; t < count; ++t)
    if (idx[t] < 0 || idx[t] >= n) bad = bad > t ? bad : t;
  if (bad >= 0) {
    for (int64_t t = 0; t < count; ++t)
      if (idx[t] < 0 || idx[t] >= n) {
        index_fail(arg, "index " + std::to_string(idx[t]) + " at flat position " + std::to_string(t) +
                            " is out of range: expected 0 <= index < " + std::to_string(n));
      }
  }
}

// Each CSR row of idx (pointer ptr [rows + 1], already checked) strictly ascending: the all-pairs
// kernels index by position in these lists (an entry below the row's own input would address
// outside the output row).
void check_ascending(const int64_t *ptr, const int64_t *idx, int64_t rows, const char *arg) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = ptr[r] + 1; t < ptr[r + 1]; ++t)
      if (idx[t] <= idx[t - 1])
        fail(arg, "each list must be strictly ascending: row " + std::to_string(r) + " has " + std::to_string(idx[t]) +
                      " after " + std::to_string(idx[t - 1]));
}

// ---------------------------------------------------------------- forward
template <typename T>
void forward(const carray<int64_t> &indices, const carray<T> &values, const carray<int64_t> &col_ptr,
             const carray<int64_t> &col_idx, double bias, carray<T> &out, int nthreads) {
  check_shape(indices, "indices", {-1, -1});
  const py::ssize_t B = indices.shape(0), s = indices.shape(1);
  check_shape(values, "values", {B, s});
  check_shape(col_ptr, "col_ptr", {-1});
  check_shape(col_idx, "col_idx", {-1});
  check_shape(out, "out", {B, -1});
  const int64_t m = col_ptr.shape(0) - 1, d = out.shape(1), nnz = col_idx.shape(0);
  if (m < 0) fail("col_ptr", "expected at least one entry");
  const int64_t *idx = indices.data(), *cp = col_ptr.data(), *ci = col_idx.data();
  const T *val = values.data();
  T *a = out.mutable_data();
  const T tb = (T)bias;
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_indices(idx, B * s, m, "indices");
  check_ptr(cp, m, nnz, "col_ptr");
  if (s == 0 && d == 0) return;  // nothing to read or write (B may be the size of an empty array)
  // Neuron ids are checked as they are read (only the lists of active inputs are touched).
  std::atomic<int64_t> bad{-1};
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    T *row = a + b * d;
    std::fill(row, row + d, T(0));
    for (int64_t j = 0; j < s; ++j) {
      const int64_t f = idx[b * s + j];
      if (f < 0) continue;
      const T v = val[b * s + j];
      for (int64_t t = cp[f]; t < cp[f + 1]; ++t) {
        const int64_t n = ci[t];
        if ((uint64_t)n >= (uint64_t)d) {
          bad.store(t);
          continue;
        }
        row[n] += v;
      }
    }
#pragma omp simd
    for (int64_t n = 0; n < d; ++n) {
      const T z = row[n] + tb;
      row[n] = z > T(0) ? z : T(0);
    }
  }
  if (bad.load() >= 0) {
    index_fail("col_idx", "neuron id " + std::to_string(ci[bad.load()]) + " at position " + std::to_string(bad.load()) +
                              " is out of range [0, " + std::to_string(d) + ")");
  }
}

// ---------------------------------------------------------------- gate intersections
// Branchless merge of two sorted lists into dst (may alias neither); returns the size.
inline int64_t merge2(const int64_t *a, const int64_t *ae, const int64_t *b, const int64_t *be, int64_t *dst) {
  int64_t c = 0;
  while (a < ae && b < be) {
    const int64_t va = *a, vb = *b;
    dst[c] = va;
    c += va == vb;
    a += va <= vb;
    b += vb <= va;
  }
  return c;
}

// Intersection of the k sorted lists of a gate into tmp (capacity >= the shortest list):
// the two shortest first, then the (small) result against each other list.
inline int64_t intersect_lists(const int64_t *cp, const int64_t *ci, const int64_t *gate, int64_t k,
                               std::vector<int64_t> &tmp, std::vector<int64_t> &tmp2) {
  auto len = [&](int64_t q) { return cp[gate[q] + 1] - cp[gate[q]]; };
  int64_t q0 = 0, q1 = 1;
  if (len(q1) < len(q0)) std::swap(q0, q1);
  for (int64_t q = 2; q < k; ++q) {
    if (len(q) < len(q0)) {
      q1 = q0;
      q0 = q;
    } else if (len(q) < len(q1))
      q1 = q;
  }
  tmp.resize((size_t)len(q0) + 1);
  tmp2.resize((size_t)len(q0) + 1);
  int64_t c = merge2(ci + cp[gate[q0]], ci + cp[gate[q0] + 1], ci + cp[gate[q1]], ci + cp[gate[q1] + 1], tmp.data());
  for (int64_t q = 0; q < k && c > 0; ++q) {
    if (q == q0 || q == q1) continue;
    c = merge2(tmp.data(), tmp.data() + c, ci + cp[gate[q]], ci + cp[gate[q] + 1], tmp2.data());
    tmp.swap(tmp2);
  }
  return c;
}

void check_gates(const int64_t *g, int64_t count, int64_t m) {
  for (int64_t t = 0; t < count; ++t)
    if (g[t] < 0 || g[t] >= m) {
      index_fail("gates", "input index " + std::to_string(g[t]) + " at flat position " + std::to_string(t) +
                              " is out of range: expected 0 <= index < " + std::to_string(m));
    }
}

// Pass 1: counts [G] (the caller turns them into a row pointer).
void intersect_count(const carray<int64_t> &gates, const carray<int64_t> &col_ptr, const carray<int64_t> &col_idx,
                     carray<int64_t> &counts, int nthreads) {
  check_shape(gates, "gates", {-1, -1});
  const py::ssize_t G = gates.shape(0), k = gates.shape(1);
  check_shape(counts, "counts", {G});
  check_shape(col_ptr, "col_ptr", {-1});
  check_shape(col_idx, "col_idx", {-1});
  const int64_t m = col_ptr.shape(0) - 1;
  if (m < 0) fail("col_ptr", "expected at least one entry");
  const int64_t *gp = gates.data(), *cp = col_ptr.data(), *ci = col_idx.data();
  int64_t *cnt = counts.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_gates(gp, G * k, m);
  check_ptr(cp, m, col_idx.shape(0), "col_ptr");
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<int64_t> tmp, tmp2;
#pragma omp for schedule(dynamic, 256)
    for (int64_t g = 0; g < G; ++g) cnt[g] = k >= 2 ? intersect_lists(cp, ci, gp + g * k, k, tmp, tmp2) : 0;
  }
}

// Pass 2: fill neuron ids into out at row_ptr[g].. (row_ptr from pass 1's counts).
void intersect_fill(const carray<int64_t> &gates, const carray<int64_t> &col_ptr, const carray<int64_t> &col_idx,
                    const carray<int64_t> &row_ptr, carray<int64_t> &out, int nthreads) {
  check_shape(gates, "gates", {-1, -1});
  const py::ssize_t G = gates.shape(0), k = gates.shape(1);
  check_shape(row_ptr, "row_ptr", {checked_add(G, 1, "gates")});
  check_shape(col_ptr, "col_ptr", {-1});
  check_shape(col_idx, "col_idx", {-1});
  check_shape(out, "out", {-1});
  const int64_t m = col_ptr.shape(0) - 1;
  if (m < 0) fail("col_ptr", "expected at least one entry");
  const int64_t *gp = gates.data(), *cp = col_ptr.data(), *ci = col_idx.data(), *rp = row_ptr.data();
  int64_t *o = out.mutable_data();
  const int64_t cap = out.shape(0);
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_gates(gp, G * k, m);
  check_ptr(cp, m, col_idx.shape(0), "col_ptr");
  check_ptr(rp, G, cap, "row_ptr");
  std::atomic<bool> bad{false};
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<int64_t> tmp, tmp2;
#pragma omp for schedule(dynamic, 256)
    for (int64_t g = 0; g < G; ++g) {
      if (k < 2) continue;
      // row_ptr must leave exactly this much room (never write past it).
      const int64_t c = intersect_lists(cp, ci, gp + g * k, k, tmp, tmp2);
      if (c != rp[g + 1] - rp[g]) {
        bad.store(true);
        continue;
      }
      std::copy(tmp.begin(), tmp.begin() + c, o + rp[g]);
    }
  }
  if (bad.load()) fail("row_ptr", "does not match the intersection sizes of the gates");
}

// ---------------------------------------------------------------- readout over gates
// outT [G, B] = mean of the rows aT[n] over each read-out set (CSR row_ptr, nidx over d neurons).
template <typename T>
void readout(const carray<T> &aT, const carray<int64_t> &row_ptr, const carray<int64_t> &nidx, carray<T> &outT,
             int nthreads) {
  check_shape(aT, "aT", {-1, -1});
  const py::ssize_t d = aT.shape(0), B = aT.shape(1);
  check_shape(row_ptr, "row_ptr", {-1});
  const int64_t G = row_ptr.shape(0) - 1;
  if (G < 0) fail("row_ptr", "expected at least one entry");
  check_shape(outT, "outT", {G, B});
  check_shape(nidx, "nidx", {-1});
  const T *ap = aT.data();
  const int64_t *rp = row_ptr.data(), *ni = nidx.data();
  T *o = outT.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_ptr(rp, G, nidx.shape(0), "row_ptr");
  check_range(ni, nidx.shape(0), d, "nidx");
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 16)
  for (int64_t g = 0; g < G; ++g) {
    T *og = o + g * B;
    std::fill(og, og + B, T(0));
    for (int64_t t = rp[g]; t < rp[g + 1]; ++t) {
      if (t + kPrefetchDistance < rp[g + 1]) prefetch_row(ap + ni[t + kPrefetchDistance] * B, B);
      const T *ar = ap + ni[t] * B;
#pragma omp simd
      for (int64_t b = 0; b < B; ++b) og[b] += ar[b];
    }
    const T c = (T)(rp[g + 1] - rp[g]);
    if (c > T(0)) {
#pragma omp simd
      for (int64_t b = 0; b < B; ++b) og[b] /= c;
    }
  }
}

// ---------------------------------------------------------------- all pairs
// counts[pair(i, j)] = |S_i ∩ S_j|. Row i: for each n in S_i, every j > i in L_n.
// Rows are owned by one thread each (no atomics).
void pair_counts(const carray<int64_t> &col_ptr, const carray<int64_t> &col_idx, const carray<int64_t> &nrn_ptr,
                 const carray<int64_t> &nrn_idx, carray<int32_t> &counts, int nthreads) {
  check_shape(col_ptr, "col_ptr", {-1});
  check_shape(col_idx, "col_idx", {-1});
  check_shape(nrn_ptr, "nrn_ptr", {-1});
  check_shape(nrn_idx, "nrn_idx", {-1});
  const int64_t m = col_ptr.shape(0) - 1, d = nrn_ptr.shape(0) - 1;
  if (m < 0) fail("col_ptr", "expected at least one entry");
  if (d < 0) fail("nrn_ptr", "expected at least one entry");
  if (m >= (int64_t(1) << 31)) fail("col_ptr", "pair counts need n_inputs below 2^31 (int32 counts)");
  check_shape(counts, "counts", {pair_off(m, m)});
  const int64_t *cp = col_ptr.data(), *ci = col_idx.data(), *np_ = nrn_ptr.data(), *ni = nrn_idx.data();
  int32_t *cnt = counts.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_ptr(cp, m, col_idx.shape(0), "col_ptr");
  check_ptr(np_, d, nrn_idx.shape(0), "nrn_ptr");
  check_range(ci, col_idx.shape(0), d, "col_idx");
  check_range(ni, nrn_idx.shape(0), m, "nrn_idx");
  check_ascending(np_, ni, d, "nrn_idx");
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 8)
  for (int64_t i = 0; i < m; ++i) {
    int32_t *row = cnt + pair_off(i, m) - (i + 1);  // row[j] for j > i
    std::fill(row + i + 1, row + m, 0);
    for (int64_t t = cp[i]; t < cp[i + 1]; ++t) {
      const int64_t n = ci[t];
      const int64_t *beg = ni + np_[n], *end = ni + np_[n + 1];
      for (const int64_t *q = std::upper_bound(beg, end, i); q < end; ++q) ++row[*q];
    }
  }
}

// est [B, W]: the pairs of rows i0 <= i < i1 (W = off(i1) - off(i0)), pair-major within a sample.
//
// Exploits the construction: only neurons fed by >= 2 active inputs are non-zero,
// and a non-zero neuron n adds a[b, n] to exactly the pairs inside L_n. Work
// item = (sample b, chunk of rows). Per item: list the active neurons of a[b],
// bucket them by the rows i in the chunk that they feed (counting sort), then
// per row: zero the output segment (an L1-sized run of m - i - 1 values), add
// a[b, n] at the j > i of every bucketed L_n, and scale by 1 / |S_i ∩ S_j|.
// Cost: the dense zero/scale pass over the output plus sum over active (b, n)
// of |L_n|^2 / 2 adds, against nnz(R) * B for a sparse-times-dense read-out.
template <typename T>
void all_pairs(const carray<T> &a, const carray<int64_t> &nrn_ptr, const carray<int64_t> &nrn_idx,
               const carray<int32_t> &counts, int64_t m, int64_t i0, int64_t i1, carray<T> &out, int nthreads) {
  check_shape(a, "a", {-1, -1});
  const py::ssize_t B = a.shape(0), d = a.shape(1);
  check_shape(nrn_ptr, "nrn_ptr", {d + 1});
  check_shape(nrn_idx, "nrn_idx", {-1});
  if (m < 0 || i0 < 0 || i1 < i0 || i1 > m) fail("i0, i1", "expected 0 <= i0 <= i1 <= n_inputs");
  if (m >= (int64_t(1) << 31) || nrn_idx.shape(0) >= (int64_t(1) << 31))
    fail("m", "all pairs needs n_inputs and the number of connections below 2^31 (int32 work lists)");
  const int64_t P = pair_off(m, m), W = pair_off(i1, m) - pair_off(i0, m);
  check_shape(counts, "counts", {P});
  check_shape(out, "out", {B, W});
  const T *ap = a.data();
  const int32_t *cn = counts.data();
  const int64_t *np_ = nrn_ptr.data(), *ni = nrn_idx.data();
  T *o = out.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_ptr(np_, d, nrn_idx.shape(0), "nrn_ptr");
  check_range(ni, nrn_idx.shape(0), m, "nrn_idx");
  check_ascending(np_, ni, d, "nrn_idx");
  const int64_t rows = i1 - i0;
  if (B == 0 || rows == 0 || W == 0) return;  // an empty output (B may be the size of an empty array)
  // Row chunks of about equal pair counts (rows near the end of the triangle are short).
  const int64_t want_items = 8 * (int64_t)nthreads;
  int64_t nchunks = std::max<int64_t>(1, std::min<int64_t>(rows, (want_items + B - 1) / B));
  // Also bound a chunk's bucket memory: at most ~4096 rows per chunk.
  nchunks = std::max<int64_t>(nchunks, (rows + 4095) / 4096);
  std::vector<int64_t> bounds((size_t)nchunks + 1);
  {
    const int64_t base = pair_off(i0, m);
    bounds[0] = i0;
    int64_t i = i0;
    for (int64_t c = 1; c < nchunks; ++c) {
      const int64_t target = base + W * c / nchunks;
      while (i < i1 && pair_off(i, m) < target) ++i;
      bounds[c] = i;
    }
    bounds[nchunks] = i1;
  }
  const int64_t items = B * nchunks;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<int32_t> loc;        // compact int32 copy of the active neurons' lists, inputs >= r0
    std::vector<int64_t> loc_ptr;    // ... one CSR row per active neuron
    std::vector<T> act_v;            // activations of the active neurons
    std::vector<int32_t> head;       // bucket row pointer over the chunk's rows
    std::vector<int32_t> ent_start;  // bucket entries: the tail of the list after i, in loc
    std::vector<int32_t> ent_end;
    std::vector<T> ent_v;  // ... and a[b, n]
    std::vector<int32_t> pos;
    std::vector<T> buf((size_t)m, T(0));      // one output row's sums, zero between rows
    std::vector<uint8_t> mark((size_t)m, 0);  // touched flags of the sparse path, zero between rows
    std::vector<int32_t> touched;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      const int64_t b = it / nchunks, c = it % nchunks;
      const int64_t r0 = bounds[c], r1 = bounds[c + 1];
      if (r0 >= r1) continue;
      const T *ar = ap + b * d;
      // The active neurons' lists, cut to inputs >= r0 and copied as int32: the adds below read
      // them about |L_n| / 2 times each, and the copy (a few hundred KB at most at benchmark
      // sizes) stays in L2 where the global lists (nnz int64) would not.
      loc.clear();
      loc_ptr.assign(1, 0);
      act_v.clear();
      for (int64_t n = 0; n < d; ++n)
        if (ar[n] != T(0)) {  // NaN counts as active: it propagates as in a dense read-out
          const int64_t *beg = ni + np_[n], *end = ni + np_[n + 1];
          const int64_t *p = std::lower_bound(beg, end, r0);
          if (end - p < 2) continue;  // feeds no pair inside the chunk's rows
          for (; p < end; ++p) loc.push_back((int32_t)*p);
          loc_ptr.push_back((int64_t)loc.size());
          act_v.push_back(ar[n]);
        }
      // Counting sort of (active neuron, row i in [r0, r1) of its list) by row.
      const int64_t nr = r1 - r0, na = (int64_t)act_v.size();
      head.assign((size_t)nr + 1, 0);
      for (int64_t q = 0; q < na; ++q)
        for (int64_t t = loc_ptr[q]; t < loc_ptr[q + 1] && loc[t] < r1; ++t) ++head[loc[t] - r0 + 1];
      for (int64_t r = 0; r < nr; ++r) head[r + 1] += head[r];
      const int64_t total = head[nr];
      ent_start.resize((size_t)total);
      ent_end.resize((size_t)total);
      ent_v.resize((size_t)total);
      pos.assign(head.begin(), head.end() - 1);  // fill cursors, one per row
      for (int64_t q = 0; q < na; ++q)
        for (int64_t t = loc_ptr[q]; t < loc_ptr[q + 1] && loc[t] < r1; ++t) {
          const int32_t e = pos[loc[t] - r0]++;
          ent_start[e] = (int32_t)(t + 1);
          ent_end[e] = (int32_t)loc_ptr[q + 1];
          ent_v[e] = act_v[q];
        }
      const int32_t *lp = loc.data();
      T *ob = o + b * W - pair_off(i0, m);
      for (int64_t i = r0; i < r1; ++i) {
        const int64_t off = pair_off(i, m);
        T *seg = ob + off - (i + 1);  // seg[j] for j > i
        const int64_t e0 = head[i - r0], e1 = head[i - r0 + 1];
        if (e0 == e1) {  // no active neuron in S_i: the whole row is 0 (buf is all zero)
          stream_row(seg + i + 1, buf.data() + i + 1, m - i - 1);
          continue;
        }
        // Sum into the L1-resident row buffer (kept all-zero between rows).
        int64_t adds = 0;
        for (int64_t e = e0; e < e1; ++e) {
          const T v = ent_v[e];
          const int32_t t1 = ent_end[e];
          adds += t1 - ent_start[e];
          for (int32_t t = ent_start[e]; t < t1; ++t) buf[lp[t]] += v;
        }
        const int32_t *cr = cn + off - (i + 1);
        if (16 * adds < m - i - 1) {
          // Very few touched pairs (the vector divide of the dense pass measured cheaper above 1/16):
          // divide just those (once each: mark them), stream the row out, clear them.
          touched.clear();
          for (int64_t e = e0; e < e1; ++e)
            for (int32_t t = ent_start[e]; t < ent_end[e]; ++t) {
              const int32_t j = lp[t];
              if (!mark[j]) {
                mark[j] = 1;
                touched.push_back(j);
              }
            }
          for (int32_t j : touched) buf[j] /= (T)cr[j];  // cr[j] >= 1: a neuron of S_i ∩ S_j was added
          stream_row(seg + i + 1, buf.data() + i + 1, m - i - 1);
          for (int32_t j : touched) {
            buf[j] = T(0);
            mark[j] = 0;
          }
        } else {
          // Dense pass: divide the whole row by |S_i ∩ S_j| (max 1: an empty set has sum 0), stream, clear.
#pragma omp simd
          for (int64_t j = i + 1; j < m; ++j) buf[j] /= (T)(cr[j] > 1 ? cr[j] : 1);
          stream_row(seg + i + 1, buf.data() + i + 1, m - i - 1);
          std::fill(buf.begin() + i + 1, buf.end(), T(0));
        }
      }
    }
    stream_fence();
  }
}

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("uand_forward", &forward<T>, py::arg("indices").noconvert(), py::arg("values").noconvert(),
        py::arg("col_ptr").noconvert(), py::arg("col_idx").noconvert(), py::arg("bias"), py::arg("out").noconvert(),
        py::arg("nthreads") = 0);
  m.def("uand_readout", &readout<T>, py::arg("aT").noconvert(), py::arg("row_ptr").noconvert(),
        py::arg("nidx").noconvert(), py::arg("outT").noconvert(), py::arg("nthreads") = 0);
  m.def("uand_all_pairs", &all_pairs<T>, py::arg("a").noconvert(), py::arg("nrn_ptr").noconvert(),
        py::arg("nrn_idx").noconvert(), py::arg("counts").noconvert(), py::arg("m"), py::arg("i0"), py::arg("i1"),
        py::arg("out").noconvert(), py::arg("nthreads") = 0);
}

}  // namespace

void register_uand(py::module_ &m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
  m.def("uand_intersect_count", &intersect_count, py::arg("gates").noconvert(), py::arg("col_ptr").noconvert(),
        py::arg("col_idx").noconvert(), py::arg("counts").noconvert(), py::arg("nthreads") = 0);
  m.def("uand_intersect_fill", &intersect_fill, py::arg("gates").noconvert(), py::arg("col_ptr").noconvert(),
        py::arg("col_idx").noconvert(), py::arg("row_ptr").noconvert(), py::arg("out").noconvert(),
        py::arg("nthreads") = 0);
  m.def("uand_pair_counts", &pair_counts, py::arg("col_ptr").noconvert(), py::arg("col_idx").noconvert(),
        py::arg("nrn_ptr").noconvert(), py::arg("nrn_idx").noconvert(), py::arg("counts").noconvert(),
        py::arg("nthreads") = 0);
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
