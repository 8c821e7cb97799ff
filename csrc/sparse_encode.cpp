// sparse_encode: read-in of padded sparse features into a d-dim superposition.
//
//   h[i, b, :] = sum_j values[i, b, j] * W[i, indices[i, b, j], :]      (indices == -1: empty slot)
//
// Layout (all C-contiguous): indices int64 [I, B, k], values T [I, B, k],
// W T [I, n, d], h T [I, B, d]. T is float or double.
//
// One file of over 400 lines: the forward and the three backward kernels (both gradients, each
// alone), row-major and feature-major (csc.h), are the one op and share its helpers.
#include "common.h"
#include "csc.h"
#include "isa.h"

#include <algorithm>
#include <cstring>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace {

// One output row, columns [c0, c0 + CH): the CH running sums stay in vector
// registers across all k slots (no load/store of h per slot), as in FBGEMM's
// embedding kernels. Only the first chunk of a row prefetches (whole rows).
template <typename T, int CH>
inline void gather_chunk(T *hr, const T *wi, const int64_t *ids, const T *vals, int64_t k, int64_t d, int64_t c0,
                         const int64_t *pf_ids, int64_t pf_left) {
  T acc[CH];
#pragma omp simd
  for (int u = 0; u < CH; ++u) acc[u] = T(0);
  for (int64_t j = 0; j < k; ++j) {
    if (pf_ids != nullptr && j + kPrefetchDistance < pf_left) {
      const int64_t fp = pf_ids[j + kPrefetchDistance];
      if (fp >= 0) prefetch_row(wi + fp * d, d);
    }
    const int64_t f = ids[j];
    if (f < 0) continue;
    const T v = vals[j];
    const T *wr = wi + f * d + c0;
#pragma omp simd
    for (int u = 0; u < CH; ++u) acc[u] += v * wr[u];
  }
#pragma omp simd
  for (int u = 0; u < CH; ++u) hr[c0 + u] = acc[u];
}

inline std::vector<Csc> build_all_csc(const int64_t *idx, int64_t I, int64_t slots, int64_t n, int nthreads) {
  std::vector<Csc> c((size_t)I);
  if (I >= nthreads) {  // one instance per thread
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
    for (int64_t i = 0; i < I; ++i) build_csc(idx + i * slots, slots, n, c[(size_t)i]);
  } else {  // few instances: each sorted by all threads
    for (int64_t i = 0; i < I; ++i) build_csc(idx + i * slots, slots, n, c[(size_t)i], nthreads);
  }
  return c;
}

// Feature-major forward (see csc.h). Work items are (instance, block of rows):
// each item sorts its own slots by feature and walks W once in address order,
// scattering into its rows of h, which no other item touches (no races, no
// reduction). h[b] accumulates its slots in feature order (slot order within a
// feature) whatever the blocking, so results are bitwise the same for every
// thread count. Every row block streams W: with 2 blocks W is read twice, in
// order, against 4x in random order for the row-major gathers at B*k = 4n.
template <typename T>
void forward_csc(const int64_t *idx, const T *val, const T *w, T *h, int64_t I, int64_t B, int64_t k, int64_t n,
                 int64_t d, int nthreads) {
  if (I <= 0 || B <= 0) return;
  const int64_t blocks = I >= nthreads ? 1 : std::max<int64_t>(1, std::min<int64_t>(B, (nthreads + I - 1) / I));
  const int64_t rb = (B + blocks - 1) / blocks;
#pragma omp parallel num_threads(nthreads)
  {
    Csc c;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < I * blocks; ++it) {
      const int64_t i = it / blocks, b0 = (it % blocks) * rb, b1 = std::min<int64_t>(B, b0 + rb);
      if (b0 >= b1) continue;
      const int64_t *ib = idx + (i * B + b0) * k;  // this block's slots, s = (b - b0) * k + j
      const T *vb = val + (i * B + b0) * k;
      T *hb = h + (i * B + b0) * d;
      const T *wi = w + i * n * d;
      build_csc(ib, (b1 - b0) * k, n, c);
      const int64_t *st = c.start.data();
      const int32_t *sl = c.slot.data();
      const int64_t occ = st[n];
      std::fill(hb, hb + (b1 - b0) * d, T(0));
      for (int64_t f = 0; f < n; ++f) {
        const int64_t a = st[f], e = st[f + 1];
        if (a == e) continue;
        const T *wr = wi + f * d;
        for (int64_t q = a; q < e; ++q) {
          if (q + kPrefetchDistance < occ) prefetch_row<1>(hb + (sl[q + kPrefetchDistance] / k) * d, d);
          const int64_t sidx = sl[q];
          const T v = vb[sidx];
          T *hr = hb + (sidx / k) * d;
#pragma omp simd
          for (int64_t t = 0; t < d; ++t) hr[t] += v * wr[t];
        }
      }
    }
  }
}

// Feature-major backward: grad_values (gv, may be null) and grad_W (gw, may be
// null) in one walk over W. Items are (instance, range of features): each
// grad_W row is summed in slot order in a register-resident buffer and written
// once (no separate zeroing pass, no read-modify-write of grad_W in DRAM).
template <typename T>
void backward_csc(const T *g, const int64_t *idx, const T *val, const T *w, T *gv, T *gw, int64_t I, int64_t B,
                  int64_t k, int64_t n, int64_t d, int nthreads) {
  const int64_t slots = B * k;
  const std::vector<Csc> csc = build_all_csc(idx, I, slots, n, nthreads);
  if (gv != nullptr) std::fill(gv, gv + I * slots, T(0));  // empty slots stay 0
  constexpr int64_t kFeatures = 256;                       // features per work item
  const int64_t chunks = (n + kFeatures - 1) / kFeatures;
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> acc((size_t)d);
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < I * chunks; ++it) {
      const int64_t i = it / chunks, f0 = (it % chunks) * kFeatures, f1 = std::min<int64_t>(n, f0 + kFeatures);
      const T *gi = g + i * B * d;
      const T *wi = w != nullptr ? w + i * n * d : nullptr;
      const T *vi = val != nullptr ? val + i * slots : nullptr;
      T *gvi = gv != nullptr ? gv + i * slots : nullptr;
      const int64_t *st = csc[(size_t)i].start.data();
      const int32_t *sl = csc[(size_t)i].slot.data();
      const int64_t occ = st[n];
      for (int64_t f = f0; f < f1; ++f) {
        const int64_t a = st[f], e = st[f + 1];
        T *dst = gw != nullptr ? gw + (i * n + f) * d : nullptr;
        if (a == e) {
          if (dst != nullptr) std::fill(dst, dst + d, T(0));
          continue;
        }
        const T *wr = wi != nullptr ? wi + f * d : nullptr;
        T *ac = acc.data();
        if (dst != nullptr) std::fill(ac, ac + d, T(0));
        for (int64_t q = a; q < e; ++q) {
          if (q + kPrefetchDistance < occ) prefetch_row(gi + (sl[q + kPrefetchDistance] / k) * d, d);
          const int64_t sidx = sl[q];
          const T *gr = gi + (sidx / k) * d;
          if (gvi != nullptr) {
            T dot = 0;
#pragma omp simd reduction(+ : dot)
            for (int64_t t = 0; t < d; ++t) dot += gr[t] * wr[t];
            gvi[sidx] = dot;
          }
          if (dst != nullptr) {
            const T v = vi[sidx];
#pragma omp simd
            for (int64_t t = 0; t < d; ++t) ac[t] += v * gr[t];
          }
        }
        if (dst != nullptr) std::copy(ac, ac + d, dst);
      }
    }
  }
}

// The forward prefetches W rows only when one instance's W exceeds this: with W in cache (8 MiB of L3 here)
// the prefetches are only instructions, d / 16 per slot. Measured at B=4096, n=16384, d=128: 0.80-0.85x of
// F.embedding_bag without them, 0.69-0.76x with them. Between 8 and 64 MiB the measurements do not separate.
constexpr int64_t kPrefetchMinBytes = (int64_t)8 << 20;

template <typename T>
void forward(const carray<int64_t> &indices, const carray<T> &values, const carray<T> &W, carray<T> &out, int nthreads,
             int strategy) {
  check_csc_strategy(strategy);
  check_shape(W, "W", {-1, -1, -1});
  const py::ssize_t I = W.shape(0), n = W.shape(1), d = W.shape(2);
  check_shape(indices, "indices", {I, -1, -1});
  const py::ssize_t B = indices.shape(1), k = indices.shape(2);
  check_shape(values, "values", {I, B, k});
  check_shape(out, "out", {I, B, d});
  const int64_t *idx = indices.data();
  const T *val = values.data();
  const T *w = W.data();
  T *h = out.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_indices(idx, I * B * k, n, "indices");
  // An empty output: nothing to write (and B or d may be sizes of empty arrays, not backed by memory).
  if (out.size() == 0) return;
  if (use_csc(B, k, d, n, sizeof(T), strategy, /*forward=*/true))
    return forward_csc<T>(idx, val, w, h, I, B, k, n, d, nthreads);
  constexpr int CH = 256 / sizeof(T);  // 4 AVX-512 registers of running sums (a wider tile measured slower)
  const int64_t rows = I * B;
  const bool prefetch = n * d * (int64_t)sizeof(T) > kPrefetchMinBytes;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r / B;
    T *hr = h + r * d;
    const T *wi = w + i * n * d;
    const int64_t *ids = idx + r * k;
    const T *vals = val + r * k;
    // slots left in this instance from this row on (the prefetch may run into the next row)
    const int64_t pf_left = (i + 1) * B * k - r * k;
    int64_t c0 = 0;
    for (; c0 + CH <= d; c0 += CH)
      gather_chunk<T, CH>(hr, wi, ids, vals, k, d, c0, (c0 == 0 && prefetch) ? ids : nullptr, pf_left);
    if (c0 < d) {  // the tail columns (d not a multiple of CH): running sums in memory
      std::fill(hr + c0, hr + d, T(0));
      for (int64_t j = 0; j < k; ++j) {
        if (c0 == 0 && j + kPrefetchDistance < pf_left && ids[j + kPrefetchDistance] >= 0)
          prefetch_row(wi + ids[j + kPrefetchDistance] * d, d);
        const int64_t f = ids[j];
        if (f < 0) continue;
        const T v = vals[j];
        const T *wr = wi + f * d;
#pragma omp simd
        for (int64_t t = c0; t < d; ++t) hr[t] += v * wr[t];
      }
    }
  }
}

// grad_values[i, b, j] = <grad_h[i, b], W[i, indices[i, b, j]]>   (0 for empty slots)
template <typename T>
void backward_values(const carray<T> &grad_h, const carray<int64_t> &indices, const carray<T> &W,
                     carray<T> &grad_values, int nthreads, int strategy) {
  check_csc_strategy(strategy);
  check_shape(W, "W", {-1, -1, -1});
  const py::ssize_t I = W.shape(0), n = W.shape(1), d = W.shape(2);
  check_shape(indices, "indices", {I, -1, -1});
  const py::ssize_t B = indices.shape(1), k = indices.shape(2);
  check_shape(grad_h, "grad_h", {I, B, d});
  check_shape(grad_values, "grad_values", {I, B, k});
  const int64_t *idx = indices.data();
  const T *g = grad_h.data();
  const T *w = W.data();
  T *gv = grad_values.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_indices(idx, I * B * k, n, "indices");
  if (grad_values.size() == 0) return;
  if (d == 0) {  // every dot product is empty (and n may be the size of an empty W: no scratch of size n)
    std::fill(gv, gv + I * B * k, T(0));
    return;
  }
  if (use_csc(B, k, d, n, sizeof(T), strategy, /*forward=*/false))
    return backward_csc<T>(g, idx, nullptr, w, gv, nullptr, I, B, k, n, d, nthreads);
  const int64_t rows = I * B;
#pragma omp parallel for num_threads(nthreads) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r / B;
    const T *gr = g + r * d;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t s = r * k + j + kPrefetchDistance;
      if (s < (i + 1) * B * k && idx[s] >= 0) prefetch_row(w + (i * n + idx[s]) * d, d);
      const int64_t f = idx[r * k + j];
      if (f < 0) {
        gv[r * k + j] = T(0);
        continue;
      }
      const T *wr = w + (i * n + f) * d;
      T acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t t = 0; t < d; ++t) acc += gr[t] * wr[t];
      gv[r * k + j] = acc;
    }
  }
}

// Split the d columns of each instance into blocks for the scatter kernels:
// enough (instance, block) items to feed every thread, but at least 16
// contiguous elements (one cache line of float) per row touch. Returns the
// number of blocks per instance and the block width.
inline void column_blocks(int64_t I, int64_t d, int nthreads, int64_t &blocks_per_inst, int64_t &cb) {
  blocks_per_inst = 1;
  if (I > 0 && I < nthreads && d > 0) {  // I == 0: no items (and no division by zero)
    const int64_t want = (nthreads + I - 1) / I;
    blocks_per_inst = std::max<int64_t>(1, std::min<int64_t>(want, d / 16));
  }
  cb = d > 0 ? (d + blocks_per_inst - 1) / blocks_per_inst : 0;
}

// grad_W[i, f, :] = sum over slots (b, j) with indices[i, b, j] == f of values[i, b, j] * grad_h[i, b, :]
//
// A scatter that touches only rows that occur (plus zeroing grad_W). Work is
// split into (instance, column block) items: each item walks every slot of its
// instance in order and owns its columns, so there are no atomics and no
// races, and every element is summed in the same order whatever the thread
// count (bitwise-deterministic results).
template <typename T>
void backward_weight(const carray<T> &grad_h, const carray<int64_t> &indices, const carray<T> &values,
                     carray<T> &grad_W, int nthreads, int strategy) {
  check_csc_strategy(strategy);
  check_shape(grad_W, "grad_W", {-1, -1, -1});
  const py::ssize_t I = grad_W.shape(0), n = grad_W.shape(1), d = grad_W.shape(2);
  check_shape(indices, "indices", {I, -1, -1});
  const py::ssize_t B = indices.shape(1), k = indices.shape(2);
  check_shape(values, "values", {I, B, k});
  check_shape(grad_h, "grad_h", {I, B, d});
  const int64_t *idx = indices.data();
  const T *val = values.data();
  const T *g = grad_h.data();
  T *gw = grad_W.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_indices(idx, I * B * k, n, "indices");
  if (grad_W.size() == 0) return;  // nothing to write
  if (use_csc(B, k, d, n, sizeof(T), strategy, /*forward=*/false))
    return backward_csc<T>(g, idx, val, nullptr, nullptr, gw, I, B, k, n, d, nthreads);
  int64_t blocks_per_inst, cb;
  column_blocks(I, d, nthreads, blocks_per_inst, cb);
  const int64_t items = I * blocks_per_inst;
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t i = it / blocks_per_inst;
    const int64_t c0 = (it % blocks_per_inst) * cb;
    const int64_t c1 = std::min<int64_t>(d, c0 + cb);
    if (c0 >= c1) continue;
    T *gwi = gw + i * n * d;
    for (int64_t f = 0; f < n; ++f) std::fill(gwi + f * d + c0, gwi + f * d + c1, T(0));
    const int64_t *idxi = idx + i * B * k;
    const T *vali = val + i * B * k;
    const T *gi = g + i * B * d;
    for (int64_t b = 0; b < B; ++b) {
      const T *gr = gi + b * d;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = b * k + j + kPrefetchDistance;
        if (s < B * k && idxi[s] >= 0) prefetch_row<1>(gwi + idxi[s] * d + c0, c1 - c0);
        const int64_t f = idxi[b * k + j];
        if (f < 0) continue;
        const T v = vali[b * k + j];
        T *dst = gwi + f * d;
#pragma omp simd
        for (int64_t t = c0; t < c1; ++t) dst[t] += v * gr[t];
      }
    }
  }
}

// Both gradients in one pass over the slots (what autograd needs when values
// and W both require grad): each (instance, column block) item reads the
// slot's grad_h and W row pieces once, adds v * grad_h into grad_W and keeps a
// partial dot product for grad_values; the partials of the column blocks are
// added in block order afterwards (deterministic whatever the thread count).
template <typename T>
void backward_both(const carray<T> &grad_h, const carray<int64_t> &indices, const carray<T> &values, const carray<T> &W,
                   carray<T> &grad_values, carray<T> &grad_W, int nthreads, int strategy) {
  check_csc_strategy(strategy);
  check_shape(W, "W", {-1, -1, -1});
  const py::ssize_t I = W.shape(0), n = W.shape(1), d = W.shape(2);
  check_shape(indices, "indices", {I, -1, -1});
  const py::ssize_t B = indices.shape(1), k = indices.shape(2);
  check_shape(values, "values", {I, B, k});
  check_shape(grad_h, "grad_h", {I, B, d});
  check_shape(grad_values, "grad_values", {I, B, k});
  check_shape(grad_W, "grad_W", {I, n, d});
  const int64_t *idx = indices.data();
  const T *val = values.data();
  const T *g = grad_h.data();
  const T *w = W.data();
  T *gv = grad_values.mutable_data();
  T *gw = grad_W.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_indices(idx, I * B * k, n, "indices");
  if (grad_values.size() == 0 && grad_W.size() == 0) return;  // nothing to write
  if (d == 0) {  // grad_W is empty and every dot product is empty (no scratch of the unbacked size n)
    std::fill(gv, gv + I * B * k, T(0));
    return;
  }
  if (use_csc(B, k, d, n, sizeof(T), strategy, /*forward=*/false))
    return backward_csc<T>(g, idx, val, w, gv, gw, I, B, k, n, d, nthreads);
  int64_t blocks_per_inst, cb;
  column_blocks(I, d, nthreads, blocks_per_inst, cb);
  const int64_t items = I * blocks_per_inst;
  const int64_t slots = B * k;
  std::vector<T> partial((size_t)(blocks_per_inst > 1 ? items * slots : 0));
#pragma omp parallel for num_threads(nthreads) schedule(dynamic, 1)
  for (int64_t it = 0; it < items; ++it) {
    const int64_t i = it / blocks_per_inst, blk = it % blocks_per_inst;
    const int64_t c0 = blk * cb, c1 = std::min<int64_t>(d, c0 + cb);
    T *gwi = gw + i * n * d;
    const T *wi = w + i * n * d;
    for (int64_t f = 0; f < n && c0 < c1; ++f) std::fill(gwi + f * d + c0, gwi + f * d + c1, T(0));
    const int64_t *idxi = idx + i * slots;
    const T *vali = val + i * slots;
    const T *gi = g + i * B * d;
    T *dots = blocks_per_inst > 1 ? partial.data() + it * slots : gv + i * slots;
    for (int64_t b = 0; b < B; ++b) {
      const T *gr = gi + b * d;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t s = b * k + j;
        if (s + kPrefetchDistance < slots && idxi[s + kPrefetchDistance] >= 0) {
          const int64_t fp = idxi[s + kPrefetchDistance];
          prefetch_row(wi + fp * d + c0, c1 - c0);
          prefetch_row<1>(gwi + fp * d + c0, c1 - c0);
        }
        const int64_t f = idxi[s];
        if (f < 0 || c0 >= c1) {
          dots[s] = T(0);
          continue;
        }
        const T v = vali[s];
        const T *wr = wi + f * d;
        T *dst = gwi + f * d;
        T acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t t = c0; t < c1; ++t) {
          acc += gr[t] * wr[t];
          dst[t] += v * gr[t];
        }
        dots[s] = acc;
      }
    }
  }
  if (blocks_per_inst > 1) {
#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t t = 0; t < I * slots; ++t) {
      const int64_t i = t / slots, s = t % slots;
      T acc = 0;
      for (int64_t blk = 0; blk < blocks_per_inst; ++blk) acc += partial[(i * blocks_per_inst + blk) * slots + s];
      gv[t] = acc;
    }
  }
}

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("sparse_encode_forward", &forward<T>, py::arg("indices").noconvert(), py::arg("values").noconvert(),
        py::arg("W").noconvert(), py::arg("out").noconvert(), py::arg("nthreads") = 0, py::kw_only(),
        py::arg("strategy") = 0);
  m.def("sparse_encode_backward_values", &backward_values<T>, py::arg("grad_h").noconvert(),
        py::arg("indices").noconvert(), py::arg("W").noconvert(), py::arg("grad_values").noconvert(),
        py::arg("nthreads") = 0, py::kw_only(), py::arg("strategy") = 0);
  m.def("sparse_encode_backward", &backward_both<T>, py::arg("grad_h").noconvert(), py::arg("indices").noconvert(),
        py::arg("values").noconvert(), py::arg("W").noconvert(), py::arg("grad_values").noconvert(),
        py::arg("grad_W").noconvert(), py::arg("nthreads") = 0, py::kw_only(), py::arg("strategy") = 0);
  m.def("sparse_encode_backward_weight", &backward_weight<T>, py::arg("grad_h").noconvert(),
        py::arg("indices").noconvert(), py::arg("values").noconvert(), py::arg("grad_W").noconvert(),
        py::arg("nthreads") = 0, py::kw_only(), py::arg("strategy") = 0);
}

}  // namespace

void register_sparse_encode(py::module_ &m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
