// Toy models of superposition: the data sampler.
//
// tms_sample_count / tms_sample_fill: a batch of sparse TMS inputs for every instance, in CSR
//   form, from counter-based hashes keyed by (seed, step, instance, row, feature), so
//   the batch does not depend on the thread count (one vectorised hash per
//   (row, feature) pair).
//
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
// tms_sample_onepass: both passes in one, for small batches.
// The numbers themselves (SampleSpec, the row keys and masks) are in tms_sampling.h.
#include "checked.h"
#include "common.h"
#include "isa.h"
#include "tms_sampling.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace {

using namespace tms_detail;

// Rows [r0, r1) of thread t of T (static, contiguous), walked as (instance, batch row) without a
// division per row (two integer divisions per row measured a third of the sampler's time at n = 2).
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

// Pass 1: offsets [I*B + 1]. Returns nnz.
int64_t sample_count(uint64_t seed, int64_t step, const carray<double> &p, int64_t batch, int64_t corr, int64_t anti,
                     carray<int64_t> &offsets, int nthreads, const py::object &instance_seeds) {
  const SampleSpec sp = make_spec(p, batch, corr, anti);
  const std::vector<uint64_t> keys = instance_keys(instance_seeds, sp.I);
  const int64_t rows = checked_mul(sp.I, batch, "batch_size");
  checked_mul(rows, sp.n, "batch_size");  // entries drawn
  check_shape(offsets, "offsets", {checked_add(rows, 1, "batch_size")});
  // one key per instance, only when there are rows (with none, n_instances may be the size of an empty p)
  const std::vector<uint64_t> bases = instance_bases(seed, keys, step, rows > 0 ? sp.I : 0);
  int64_t *off = offsets.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  off[0] = 0;
  if (rows > 0)
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
void sample_fill(uint64_t seed, int64_t step, const carray<double> &p, int64_t batch, int64_t corr, int64_t anti,
                 bool signed_values, const carray<int64_t> &offsets, carray<int64_t> &indices, carray<T> &values,
                 int nthreads, const py::object &instance_seeds) {
  const SampleSpec sp = make_spec(p, batch, corr, anti);
  const std::vector<uint64_t> keys = instance_keys(instance_seeds, sp.I);
  const int64_t rows = checked_mul(sp.I, batch, "batch_size"), n = sp.n;
  checked_mul(rows, n, "batch_size");  // entries drawn
  check_shape(offsets, "offsets", {checked_add(rows, 1, "batch_size")});
  // one key per instance, only when there are rows (with none, n_instances may be the size of an empty p)
  const std::vector<uint64_t> bases = instance_bases(seed, keys, step, rows > 0 ? sp.I : 0);
  check_shape(indices, "indices", {-1});
  check_shape(values, "values", {-1});
  const int64_t *off = offsets.data();
  int64_t *oi = indices.mutable_data();
  T *ov = values.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  // Every write lands at offsets[r] .. offsets[r + 1]: they must be a valid CSR pointer into the buffers.
  const int64_t nnz = check_csr_ptr(off, rows, std::min<int64_t>(indices.shape(0), values.shape(0)), "offsets");
  (void)nnz;
  if (rows > 0)
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
        for (int64_t j = j0 + len; j < off[r + 1]; ++j) {
          oi[j] = -1;
          ov[j] = T(0);
        }  // offsets not from pass 1
      }
    });
}

// Both passes in one, for small batches (the caller gives buffers of rows * n entries): every row
// writes its entries at r * n, then the rows are packed to the front. One hash pass instead of two;
// the same numbers as sample_count + sample_fill. Returns nnz.
template <typename T>
int64_t sample_onepass(uint64_t seed, int64_t step, const carray<double> &p, int64_t batch, int64_t corr, int64_t anti,
                       bool signed_values, carray<int64_t> &offsets, carray<int64_t> &indices, carray<T> &values,
                       int nthreads, const py::object &instance_seeds) {
  const SampleSpec sp = make_spec(p, batch, corr, anti);
  const std::vector<uint64_t> keys = instance_keys(instance_seeds, sp.I);
  const int64_t rows = checked_mul(sp.I, batch, "batch_size"), n = sp.n;
  const int64_t slots = checked_mul(rows, n, "batch_size");
  check_shape(offsets, "offsets", {checked_add(rows, 1, "batch_size")});
  // one key per instance, only when there are rows (with none, n_instances may be the size of an empty p)
  const std::vector<uint64_t> bases = instance_bases(seed, keys, step, rows > 0 ? sp.I : 0);
  check_shape(indices, "indices", {-1});
  check_shape(values, "values", {-1});
  if (indices.shape(0) < slots) fail("indices", "buffer shorter than rows * n_features");
  if (values.shape(0) < slots) fail("values", "buffer shorter than rows * n_features");
  int64_t *off = offsets.mutable_data();
  int64_t *oi = indices.mutable_data();
  T *ov = values.mutable_data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  off[0] = 0;
  if (rows > 0)
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

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("tms_sample_fill", &sample_fill<T>, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(),
        py::arg("batch_size"), py::arg("correlated_pairs"), py::arg("anticorrelated_pairs"), py::arg("signed_values"),
        py::arg("offsets").noconvert(), py::arg("indices").noconvert(), py::arg("values").noconvert(),
        py::arg("nthreads") = 0, py::arg("instance_seeds") = py::none());
  m.def("tms_sample_onepass", &sample_onepass<T>, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(),
        py::arg("batch_size"), py::arg("correlated_pairs"), py::arg("anticorrelated_pairs"), py::arg("signed_values"),
        py::arg("offsets").noconvert(), py::arg("indices").noconvert(), py::arg("values").noconvert(),
        py::arg("nthreads") = 0, py::arg("instance_seeds") = py::none());
}

}  // namespace

void register_tms_sample(py::module_ &m) {
  m.def("tms_sample_count", &sample_count, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(),
        py::arg("batch_size"), py::arg("correlated_pairs"), py::arg("anticorrelated_pairs"),
        py::arg("offsets").noconvert(), py::arg("nthreads") = 0, py::arg("instance_seeds") = py::none());
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
