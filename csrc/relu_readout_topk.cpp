// The blockwise top-k epilogue of the ReLU read-out  topk(relu(h @ W^T + b))  (op relu_readout_topk).
//
// The GEMM runs tile by tile in the BLAS that torch links; topk_merge folds
// relu(tile + b) into a running per-row top-k, so the [B, n] matrix is never
// held whole.
#include "checked.h"
#include "common.h"
#include "isa.h"
#include "topk_entry.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace {

// Running top-k lists up to this length take each entry by insertion (a few shifts in a short
// sorted list); longer ones collect the tile's candidates, select and sort them, and merge (an
// insertion costs O(k), so k = n would be O(n k)).
constexpr int64_t kInsertMaxK = 32;

// Insert v (feature f) into the sorted list vals/ids of length k, after the entries >= v; the last
// entry drops out. Only called with v > vals[k - 1].
template <typename T>
inline void insert_entry(T *vals, int64_t *ids, int64_t k, T v, int64_t f) {
  int64_t p = k - 1;
  while (p > 0 && vals[p - 1] < v) {
    vals[p] = vals[p - 1];
    ids[p] = ids[p - 1];
    --p;
  }
  vals[p] = v;
  ids[p] = f;
}

// Merge c candidates (sorted by `before`, ids above every id in the list) into the sorted list
// vals/ids of length k, keeping the k first in entry order, in place from the back: the c last
// of the union drop out first, then each slot p = i + j + 1 takes the later of the two tails
// (p > i while candidates remain, so no unread list entry is overwritten).
template <typename T>
inline void merge_sorted(T *vals, int64_t *ids, int64_t k, const Entry<T> *cand, int64_t c) {
  int64_t i = k - 1, j = c - 1;
  for (int64_t drop = c; drop > 0; --drop) {  // ties: the candidate (higher id) is the later one
    if (i >= 0 && vals[i] < cand[j].v)
      --i;
    else
      --j;
  }
  for (int64_t p = i + j + 1; j >= 0; --p) {
    if (i >= 0 && vals[i] < cand[j].v) {
      vals[p] = vals[i];
      ids[p] = ids[i];
      --i;
    } else {
      vals[p] = cand[j].v;
      ids[p] = cand[j].id;
      --j;
    }
  }
}

// Fold one row of a tile into its running top-k. x [nt] raw GEMM output, bias [nt], features
// f0 .. f0 + nt; vals/ids the row's running top-k [k]; cand: scratch of nt entries (large k).
template <typename T, typename TB>
inline void merge_row(const T *x, const TB *bias, int64_t nt, int64_t f0, T *vals, int64_t *ids, int64_t k,
                      std::vector<Entry<T>> &cand) {
  T thr = vals[k - 1];  // an entry must beat this to get in
  if (k > kInsertMaxK) {
    int64_t c = 0;
    for (int64_t u = 0; u < nt; ++u) {
      const T v = x[u] + (T)bias[u];
      if (v > thr) cand[(size_t)c++] = Entry<T>{v, f0 + u};  // NaN never enters
    }
    if (c == 0) return;
    if (c <= 4) {  // a few: insertion touches less than a merge
      for (int64_t q = 0; q < c; ++q)
        if (cand[(size_t)q].v > vals[k - 1]) insert_entry(vals, ids, k, cand[(size_t)q].v, cand[(size_t)q].id);
      return;
    }
    Entry<T> *cb = cand.data();
    if (c > k) {  // only the k first of this tile can stay
      std::nth_element(cb, cb + k, cb + c, before<T>);
      c = k;
    }
    std::sort(cb, cb + c, before<T>);
    merge_sorted(vals, ids, k, cb, c);
    return;
  }
  constexpr int64_t CH = 32;
  int64_t t = 0;
  while (t < nt) {
    const int64_t t1 = std::min<int64_t>(nt, t + CH);
    // Cheap vectorised test first: most chunks hold nothing above thr.
    bool any = false;
#pragma omp simd reduction(| : any)
    for (int64_t u = t; u < t1; ++u) any |= (x[u] + (T)bias[u] > thr);
    if (any) {
      for (int64_t u = t; u < t1; ++u) {
        const T v = x[u] + (T)bias[u];
        if (!(v > thr)) continue;
        insert_entry(vals, ids, k, v, f0 + u);
        thr = vals[k - 1];
      }
    }
    t = t1;
  }
}

// Fold one tile of pre-activations into the running top-k of each row.
//   tile      [I, Bt, nt]  raw GEMM output for rows r0..r0+Bt and features f0..f0+nt
//   b         [I, n]       bias (the full vector; the tile uses b[:, f0:f0+nt])
//   run_vals  [I, B, k]    running top-k values, sorted descending, initialised to 0
//   run_idx   [I, B, k]    their feature ids, initialised to -1
// Only strictly positive relu(tile + b) values enter, and only when strictly
// larger than the current k-th value: features arrive in increasing order, so
// among equal values the lower feature id is kept first (a stable sort's
// order), and slots never filled keep (0, -1) -- the documented fill rule.
// bias(i, f0) -> a pointer to the tile's nt bias values of instance i.
template <typename T, typename TB, typename Bias>
void merge_tile(const carray<T> &tile, py::ssize_t n, carray<T> &run_vals, carray<int64_t> &run_idx, int64_t r0,
                int64_t f0, int nthreads, Bias bias) {
  const py::ssize_t I = tile.shape(0), Bt = tile.shape(1), nt = tile.shape(2);
  check_shape(run_vals, "run_vals", {I, -1, -1});
  const py::ssize_t B = run_vals.shape(1), k = run_vals.shape(2);
  check_shape(run_idx, "run_idx", {I, B, k});
  // Checked without forming r0 + Bt (a hostile offset would overflow).
  if (!block_inside(r0, Bt, B)) fail("r0", "row block out of range: r0 + tile rows must lie in [0, batch]");
  if (!block_inside(f0, nt, n)) fail("f0", "feature block out of range: f0 + tile features must lie in [0, n]");
  // An empty tile has nothing to fold (and its other sizes may not be backed by memory).
  if (k <= 0 || tile.size() == 0) return;
  const T *tp = tile.data();
  T *rv = run_vals.mutable_data();
  int64_t *ri = run_idx.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  const int64_t rows = I * Bt;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<Entry<T>> cand(k > kInsertMaxK ? (size_t)nt : 0);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t i = r / Bt, bb = r0 + r % Bt;
      merge_row<T, TB>(tp + r * nt, bias(i), nt, f0, rv + (i * B + bb) * k, ri + (i * B + bb) * k, k, cand);
    }
  }
}

template <typename T>
void topk_merge(const carray<T> &tile, const carray<T> &b, carray<T> &run_vals, carray<int64_t> &run_idx, int64_t r0,
                int64_t f0, int nthreads) {
  check_shape(tile, "tile", {-1, -1, -1});
  check_shape(b, "b", {tile.shape(0), -1});
  const py::ssize_t n = b.shape(1);
  const T *bp = b.data();
  merge_tile<T, T>(tile, n, run_vals, run_idx, r0, f0, nthreads, [=](int64_t i) { return bp + i * n + f0; });
}

// The bits of an IEEE half as a float (exact: every value fits).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  uint32_t u;
  if (exp == 0x1F) {
    u = sign | 0x7F800000U | (man << 13);  // inf, NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (man << 13);  // normal: rebias 15 -> 127
  } else if (man == 0) {
    u = sign;  // zero
  } else {     // subnormal: man * 2^-24, normalised
    int e = -1;
    uint32_t m = man;
    do {
      m <<= 1;
      ++e;
    } while ((m & 0x400) == 0);
    u = sign | ((uint32_t)(112 - e) << 23) | ((m & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// topk_merge for a bfloat16 / float16 read-out: the tile (GEMM output) and the running values in
// float32, the bias b [I, n] as the raw 16-bit patterns of its dtype (numpy has no bfloat16: the
// caller passes a uint16 view), widened here for the tile's features only.
void topk_merge_half(const carray<float> &tile, const carray<uint16_t> &b, carray<float> &run_vals,
                     carray<int64_t> &run_idx, int64_t r0, int64_t f0, const std::string &b_dtype, int nthreads) {
  const bool bf16 = b_dtype == "bfloat16";
  if (!bf16 && b_dtype != "float16") fail("b_dtype", "expected 'bfloat16' or 'float16', got '" + b_dtype + "'");
  check_shape(tile, "tile", {-1, -1, -1});
  const py::ssize_t I = tile.shape(0), nt = tile.shape(2);
  check_shape(b, "b", {I, -1});
  const py::ssize_t n = b.shape(1);
  if (!block_inside(f0, nt, n)) fail("f0", "feature block out of range: f0 + tile features must lie in [0, n]");
  if (tile.size() == 0)
    return merge_tile<float, float>(tile, n, run_vals, run_idx, r0, f0, nthreads,
                                    [](int64_t) { return static_cast<const float *>(nullptr); });
  std::vector<float> bw((size_t)(I * nt));  // the tile's bias, widened: I * nt <= the tile's size
  const uint16_t *bp = b.data();
  for (int64_t i = 0; i < I; ++i)
    for (int64_t u = 0; u < nt; ++u) {
      const uint16_t h = bp[i * n + f0 + u];
      bw[(size_t)(i * nt + u)] = bf16 ? bf16_to_float(h) : half_to_float(h);
    }
  const float *bwp = bw.data();
  merge_tile<float, float>(tile, n, run_vals, run_idx, r0, f0, nthreads, [=](int64_t i) { return bwp + i * nt; });
}

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("topk_merge", &topk_merge<T>, py::arg("tile").noconvert(), py::arg("b").noconvert(),
        py::arg("run_vals").noconvert(), py::arg("run_idx").noconvert(), py::arg("r0"), py::arg("f0"),
        py::arg("nthreads") = 0);
}

}  // namespace

void register_relu_readout_topk(py::module_ &m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
  m.def("topk_merge_half", &topk_merge_half, py::arg("tile").noconvert(), py::arg("b").noconvert(),
        py::arg("run_vals").noconvert(), py::arg("run_idx").noconvert(), py::arg("r0"), py::arg("f0"),
        py::arg("b_dtype"), py::arg("nthreads") = 0);
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
