// Screened top-k of the ReLU read-out  topk(relu(h @ W^T + b))  in float32 (op relu_readout_topk).
//
// The caller computes approximate scores  a = bf16(h) @ bf16(W)^T  with float32 accumulation (a
// bfloat16 GEMM on the CPU's matrix units, several times faster than the float32 GEMM) and passes
// them here, a block of rows at a time, with the norms that bound their error. For each row this
// kernel
//   1. bounds every exact score:  |s_j - (a_j + b_j)| <= E_j,  s_j = b_j + dot_f32(h, W_j),
//   2. finds L, the k-th largest lower bound  a_j + b_j - E_j,
//   3. keeps the candidates whose upper bound  a_j + b_j + E_j  is >= L and > 0,
//   4. rescores the candidates exactly (float32 dot products) and selects their top k.
// Step 4 runs feature by feature over the whole block (each candidate row of W is read once per block,
// in address order, while the block's rows of h stay in cache), steps 1-3 and the selection row by row.
// Every feature of the exact top k is a candidate: a feature whose upper bound is below L lies
// strictly below k features (each of them at least L), and one whose upper bound is <= 0 is not
// positive. So the result is the exact float32 top k of the rescored values whatever the GEMM's
// rounding, as long as the bound holds. Rows where it cannot be used (non-finite bounds) or whose
// candidates exceed max_candidates are flagged; the caller recomputes them with the exact path.
//
// The bound, with h' = bf16(h), dh = h - h', w' = bf16(w), dw = w - w' (the caller's norms), u = 2^-8
// (bfloat16's unit roundoff) and g = d 2^-24 / (1 - d 2^-24) (float32 accumulation over d terms):
//   h.w - h'.w' = h'.dw + dh.w' + dh.dw               <= |h'||dw| + |dh||w'| + |dh||dw|   (Cauchy-Schwarz)
//   float32 sums of the GEMM and of the rescoring      <= g |h'||w'| + g |h||w|
//   the GEMM's output rounded to bfloat16              <= u (1 + u) |a|
// times 1 + 2^-4 for the rounding of the bound's own arithmetic and of the norms, plus the rounding
// of adding the bias (2^-21 (|a| + |b|)) and an absolute 2^-100 (1 + |h|)(1 + |w|) for subnormals
// that a matrix unit may flush to zero.
#include "checked.h"
#include "common.h"
#include "isa.h"
#include "topk_entry.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace {

constexpr float kUnitRoundoffBf16 = 0x1p-8f;
constexpr float kBoundSlack = 1.0f + 0x1p-4f;
constexpr float kBiasRounding = 0x1p-21f;
constexpr float kAbsolute = 0x1p-100f;

// The bound, regrouped for the inner loops. With a = hn + dh (row), per feature j
//   E_j = a X_j + dh Y_j + cA |a_j| + Z_j + row_const,
//   X_j = slack (dw_j + 2g P_j) + abs P_j,  Y_j = slack wn_j,  P_j = wn_j + dw_j,
//   Z_j = bias_rounding |b_j| + abs (1 + wn_j),  row_const = abs hn,  cA = slack u (1 + u) + bias_rounding,
// which is the sum in the header comment (the absolute term's (1 + |h||w|) uses a P_j >= |h||w| / a).
struct Columns {
  std::vector<float> X, Y, Z;
  void build(const float *col, const float *b, int64_t n, float g2) {
    X.resize((size_t)n);
    Y.resize((size_t)n);
    Z.resize((size_t)n);
    for (int64_t j = 0; j < n; ++j) {
      const float wn = col[2 * j], dw = col[2 * j + 1], P = wn + dw;
      X[(size_t)j] = kBoundSlack * (dw + g2 * P) + kAbsolute * P;
      Y[(size_t)j] = kBoundSlack * wn;
      Z[(size_t)j] = kBiasRounding * std::fabs(b[j]) + kAbsolute * (1.0f + wn);
    }
  }
};
constexpr float kRelA = kBoundSlack * kUnitRoundoffBf16 * (1.0f + kUnitRoundoffBf16) + kBiasRounding;

// Widen n bfloat16 bit patterns to float (vectorisable: a shift and a reinterpretation).
inline void widen_bf16(const uint16_t *src, float *dst, int64_t n) {
  uint32_t *d = reinterpret_cast<uint32_t *>(dst);
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) d[j] = (uint32_t)src[j] << 16;
}

// The float32 dot product of the rescoring: 32 partial sums (four 256-bit accumulators hide the FMA
// latency), added in a fixed order, so a score never depends on the thread count or the block.
inline float dot(const float *x, const float *y, int64_t d) {
  float acc[32] = {};
  int64_t e = 0;
  for (; e + 32 <= d; e += 32) {
#pragma omp simd
    for (int l = 0; l < 32; ++l) acc[l] += x[e + l] * y[e + l];
  }
  float s = 0.0f;
  for (; e < d; ++e) s += x[e] * y[e];
  for (int l = 0; l < 32; ++l) s += acc[l];
  return s;
}

// Groups of lower bounds whose maximum is taken in pass 1 (see select_threshold).
constexpr int64_t kGroup = 32;

// L, the k-th largest of lo[0 .. n), exactly, from the group maxima gmax[0 .. ceil(n / kGroup)): the k-th
// largest group maximum G is a lower bound for L (those k maxima are k distinct entries), so L is the k-th
// largest of the entries >= G, which lie in the groups whose maximum is >= G. scratch: room for n floats.
float select_threshold(const float *lo, int64_t n, int64_t k, std::vector<float> &gmax, std::vector<float> &scratch) {
  const int64_t groups = (int64_t)gmax.size();
  float G;
  if (groups > k) {
    scratch.assign(gmax.begin(), gmax.end());
    std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<float>());
    G = scratch[(size_t)(k - 1)];
  } else {
    G = -INFINITY;
  }
  scratch.clear();
  for (int64_t g = 0; g < groups; ++g) {
    if (!(gmax[(size_t)g] >= G)) continue;
    const int64_t j1 = std::min<int64_t>(n, (g + 1) * kGroup);
    for (int64_t j = g * kGroup; j < j1; ++j)
      if (lo[j] >= G) scratch.push_back(lo[j]);
  }
  std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end(), std::greater<float>());
  return scratch[(size_t)(k - 1)];
}

// Per-thread scratch of the row passes.
struct RowScratch {
  std::vector<float> lo, gmax, ghi, sel;  // ghi: each group's largest upper bound
};

// Steps 1-3 for one row: appends its candidates to cand (increasing feature order) and returns true, or
// returns false when the row must be recomputed by the exact path.
bool candidates_of_row(const uint16_t *approx, const float *b, const Columns &cols, float hn, float dh, int64_t n,
                       int64_t k, int64_t max_candidates, RowScratch &rs, std::vector<int64_t> &cand) {
  if (!std::isfinite(hn) || !std::isfinite(dh)) return false;
  const float alpha = hn + dh, row_const = kAbsolute * hn;
  const float *X = cols.X.data(), *Y = cols.Y.data(), *Z = cols.Z.data();
  float *lo = rs.lo.data();
  const int64_t groups = (n + kGroup - 1) / kGroup;
  rs.gmax.resize((size_t)groups);
  rs.ghi.resize((size_t)groups);
  // Pass 1: the lower bounds and their group maxima (vectorised), then L.
  int finite = 1;
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t j0 = g * kGroup, j1 = std::min<int64_t>(n, j0 + kGroup);
    float m = -INFINITY, mh = -INFINITY;
#pragma omp simd reduction(& : finite) reduction(max : m, mh)
    for (int64_t j = j0; j < j1; ++j) {
      const uint32_t bits = (uint32_t)approx[j] << 16;
      float a;
      std::memcpy(&a, &bits, 4);
      const float r = alpha * X[j] + dh * Y[j] + kRelA * std::fabs(a) + Z[j] + row_const;
      const float l = (a + b[j]) - r;
      lo[j] = l;
      finite &= (int)(l - l == 0.0f);  // 0 for inf and NaN
      m = std::max(m, l);
      mh = std::max(mh, (a + b[j]) + r);  // the upper bound, as pass 2 computes it
    }
    rs.gmax[(size_t)g] = m;
    rs.ghi[(size_t)g] = mh;
  }
  if (!finite) return false;
  const float L = select_threshold(lo, n, k, rs.gmax, rs.sel);
  // Pass 2: upper bound >= L and > 0, in the groups whose largest upper bound from pass 1 passes. Any
  // upper bound computed here is a valid one (the slack covers the rounding of the bound's arithmetic,
  // however the compiler contracts it), so skipping a feature on pass 1's value is safe.
  const size_t start = cand.size();
  for (int64_t g = 0; g < groups; ++g) {
    if (!(rs.ghi[(size_t)g] >= L && rs.ghi[(size_t)g] > 0.0f)) continue;
    const int64_t j0 = g * kGroup, j1 = std::min<int64_t>(n, j0 + kGroup);
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t j = j0; j < j1; ++j) {
      const uint32_t bits = (uint32_t)approx[j] << 16;
      float a;
      std::memcpy(&a, &bits, 4);
      const float r = alpha * X[j] + dh * Y[j] + kRelA * std::fabs(a) + Z[j] + row_const;
      const float u = (a + b[j]) + r;
      any |= (int)(u >= L) & (int)(u > 0.0f);
    }
    if (!any) continue;
    for (int64_t j = j0; j < j1; ++j) {
      const float a = bf16_to_float(approx[j]);
      const float r = alpha * X[j] + dh * Y[j] + kRelA * std::fabs(a) + Z[j] + row_const;
      const float u = (a + b[j]) + r;
      if (u >= L && u > 0.0f) cand.push_back(j);
    }
    if ((int64_t)(cand.size() - start) > max_candidates) {
      cand.resize(start);
      return false;
    }
  }
  return true;
}

// Screen rows r0 .. r0 + R of one instance.
//   approx    [R, n] uint16  bit patterns of bf16(h) @ bf16(W)^T (float32 accumulation) for those rows
//   h         [B, d] float32 the read-out's inputs (all rows)
//   W         [n, d] float32, b [n] float32
//   row_terms [B, 2] float32 |bf16(h_r)|, |h_r - bf16(h_r)| (Euclidean norms)
//   col_terms [n, 2] float32 |bf16(W_j)|, |W_j - bf16(W_j)|
//   vals [B, k] float32, ids [B, k] int64: written for the screened rows of the block
//   fallback  [B] uint8: set to 1 for each row of the block the exact path must recompute, else 0
// Returns the number of rows of the block flagged.
int64_t topk_screen(const carray<uint16_t> &approx, const carray<float> &h, const carray<float> &W,
                    const carray<float> &b, const carray<float> &row_terms, const carray<float> &col_terms,
                    carray<float> &vals, carray<int64_t> &ids, carray<uint8_t> &fallback, int64_t r0,
                    int64_t max_candidates, int nthreads) {
  check_shape(h, "h", {-1, -1});
  const py::ssize_t B = h.shape(0), d = h.shape(1);
  check_shape(W, "W", {-1, d});
  const py::ssize_t n = W.shape(0);
  check_shape(b, "b", {n});
  check_shape(approx, "approx", {-1, n});
  const py::ssize_t R = approx.shape(0);
  check_shape(row_terms, "row_terms", {B, 2});
  check_shape(col_terms, "col_terms", {n, 2});
  check_shape(vals, "vals", {B, -1});
  const py::ssize_t k = vals.shape(1);
  check_shape(ids, "ids", {B, k});
  check_shape(fallback, "fallback", {B});
  if (!block_inside(r0, R, B)) fail("r0", "row block out of range: r0 + approx rows must lie in [0, batch]");
  if (k > n) fail("vals", "k = " + std::to_string(k) + " exceeds n = " + std::to_string(n));
  if (max_candidates < k) fail("max_candidates", "must be >= k = " + std::to_string(k));
  // The float32 summation bound needs d 2^-24 well below 1.
  if (d > (py::ssize_t(1) << 20)) fail("h", "d = " + std::to_string(d) + " is too large for the screening bound");
  // Norms are >= 0; NaN or inf (from non-finite inputs) only sends rows to the exact path.
  auto check_terms = [](const carray<float> &t, const char *arg) {
    const float *p = t.data();
    for (py::ssize_t i = 0; i < t.size(); ++i)
      if (p[i] < 0.0f)
        fail(arg, "norms must be >= 0, got " + std::to_string(p[i]) + " at flat position " + std::to_string(i));
  };
  check_terms(row_terms, "row_terms");
  check_terms(col_terms, "col_terms");
  if (R == 0 || k == 0) return 0;
  const double de = (double)d * 0x1p-24;
  const float g2 = (float)(2.0 * de / (1.0 - de));
  const uint16_t *ap = approx.data();
  const float *hp = h.data(), *Wp = W.data(), *bp = b.data(), *rt = row_terms.data();
  float *vp = vals.mutable_data();
  int64_t *ip = ids.mutable_data();
  uint8_t *fp = fallback.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  Columns cols;
  cols.build(col_terms.data(), bp, n, g2);
  // Steps 1-3, row by row: each row's candidates, then a CSR over the block's rows.
  std::vector<std::vector<int64_t>> row_cand((size_t)R);
  int64_t flagged = 0;
#pragma omp parallel num_threads(nthreads) reduction(+ : flagged)
  {
    RowScratch rs;
    rs.lo.resize((size_t)n);
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t row = r0 + r;
      const bool ok = candidates_of_row(ap + r * n, bp, cols, rt[2 * row], rt[2 * row + 1], n, k, max_candidates, rs,
                                        row_cand[(size_t)r]);
      fp[row] = ok ? 0 : 1;
      flagged += ok ? 0 : 1;
    }
  }
  std::vector<int64_t> row_ptr((size_t)R + 1, 0);
  for (int64_t r = 0; r < R; ++r) row_ptr[(size_t)r + 1] = row_ptr[(size_t)r] + (int64_t)row_cand[(size_t)r].size();
  const int64_t pairs = row_ptr[(size_t)R];
  // The same pairs by feature (counting sort): feat_ptr [n + 1], pair_slot = position in the row CSR.
  std::vector<int64_t> feat_ptr((size_t)n + 1, 0), pair_row((size_t)pairs), pair_slot((size_t)pairs);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t j : row_cand[(size_t)r]) ++feat_ptr[(size_t)j + 1];
  for (int64_t j = 0; j < n; ++j) feat_ptr[(size_t)j + 1] += feat_ptr[(size_t)j];
  {
    std::vector<int64_t> fill(feat_ptr.begin(), feat_ptr.end() - 1);
    for (int64_t r = 0; r < R; ++r) {
      const std::vector<int64_t> &c = row_cand[(size_t)r];
      for (size_t q = 0; q < c.size(); ++q) {
        const int64_t at = fill[(size_t)c[q]]++;
        pair_row[(size_t)at] = r;
        pair_slot[(size_t)at] = row_ptr[(size_t)r] + (int64_t)q;
      }
    }
  }
  // Step 4: exact scores, feature by feature (W's rows in address order; the block's rows of h in cache).
  std::vector<float> score((size_t)pairs);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 64)
  for (int64_t j = 0; j < n; ++j) {
    const float *w = Wp + j * d;
    for (int64_t q = feat_ptr[(size_t)j]; q < feat_ptr[(size_t)j + 1]; ++q) {
      const float *hr = hp + (r0 + pair_row[(size_t)q]) * d;
      score[(size_t)pair_slot[(size_t)q]] = bp[j] + dot(hr, w, d);
    }
  }
  // Selection per row; ties go to the lower feature id, NaN never enters.
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<Entry<float>> top;
#pragma omp for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      const int64_t row = r0 + r;
      if (fp[row]) continue;
      top.clear();
      const std::vector<int64_t> &c = row_cand[(size_t)r];
      for (size_t q = 0; q < c.size(); ++q) {
        const float s = score[(size_t)(row_ptr[(size_t)r] + (int64_t)q)];
        if (s > 0.0f) top.push_back(Entry<float>{s, c[q]});
      }
      int64_t m = (int64_t)top.size();
      if (m > k) {
        std::nth_element(top.begin(), top.begin() + k, top.end(), before<float>);
        m = k;
      }
      std::sort(top.begin(), top.begin() + m, before<float>);
      for (int64_t p = 0; p < k; ++p) {
        vp[row * k + p] = p < m ? top[(size_t)p].v : 0.0f;
        ip[row * k + p] = p < m ? top[(size_t)p].id : -1;
      }
    }
  }
  return flagged;
}

// x [R, d] float32 -> xb [R, d] bfloat16 bit patterns (round to nearest even; NaN stays NaN) and
// terms [R, 2] float32: |xb_r| and |x_r - xb_r| (Euclidean norms, summed in double), in one pass over x:
// the operands of the screening GEMM and the row / feature terms of its bound.
void bf16_split(const carray<float> &x, carray<uint16_t> &xb, carray<float> &terms, int nthreads) {
  check_shape(x, "x", {-1, -1});
  const py::ssize_t R = x.shape(0), d = x.shape(1);
  check_shape(xb, "xb", {R, d});
  check_shape(terms, "terms", {R, 2});
  if (R == 0) return;
  const float *xp = x.data();
  uint16_t *bp = xb.mutable_data();
  float *tp = terms.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t r = 0; r < R; ++r) {
    const float *xr = xp + r * d;
    uint16_t *br = bp + r * d;
    double hi = 0.0, lo = 0.0;
#pragma omp simd reduction(+ : hi, lo)
    for (int64_t e = 0; e < d; ++e) {
      uint32_t bits;
      std::memcpy(&bits, &xr[e], 4);
      const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
      const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
      const uint16_t hb = nan ? (uint16_t)((bits >> 16) | 0x40u) : (uint16_t)rounded;
      br[e] = hb;
      const uint32_t wide_bits = (uint32_t)hb << 16;
      float wide;
      std::memcpy(&wide, &wide_bits, 4);
      const float res = xr[e] - wide;  // exact: the residual of a rounding to fewer bits
      hi += (double)wide * wide;
      lo += (double)res * res;
    }
    tp[2 * r] = (float)std::sqrt(hi);
    tp[2 * r + 1] = (float)std::sqrt(lo);
  }
}

}  // namespace

void register_relu_readout_topk_screen(py::module_ &m) {
  m.def("topk_screen", &topk_screen, py::arg("approx").noconvert(), py::arg("h").noconvert(), py::arg("W").noconvert(),
        py::arg("b").noconvert(), py::arg("row_terms").noconvert(), py::arg("col_terms").noconvert(),
        py::arg("vals").noconvert(), py::arg("ids").noconvert(), py::arg("fallback").noconvert(), py::arg("r0"),
        py::arg("max_candidates"), py::arg("nthreads") = 0);
  m.def("bf16_split", &bf16_split, py::arg("x").noconvert(), py::arg("xb").noconvert(), py::arg("terms").noconvert(),
        py::arg("nthreads") = 0);
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
