// Toy models of superposition: the fused training step.
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
// tms_sample_step: tms_step on rows it draws itself (the numbers of tms_sampling.h), and
// tms_sample_adamw_step: that step with AdamW applied inside it.
//
// The step kernels are in headers: InstanceStep (tms_instance_step.h) on row tiles read from a row
// source (tms_row_sources.h), LaneStep (tms_lane_step.h) for small models, AdamW (tms_adamw.h).
#include "checked.h"
#include "common.h"
#include "isa.h"
#include "tms_adamw.h"
#include "tms_instance_step.h"
#include "tms_lane_step.h"
#include "tms_row_sources.h"
#include "tms_sampling.h"
#include "tms_step_flags.h"

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace {

using namespace tms_detail;

// The most entries (instances x rows x max(features, 1)) one sampled step draws: far more than any
// run makes (days of hashing), small enough that a mistyped batch size fails at once instead of
// running for ever.
constexpr int64_t kMaxSampledEntries = (int64_t)1 << 48;
inline void check_sampled_size(int64_t I, int64_t batch, int64_t n) {
  const int64_t entries = checked_mul(checked_mul(I, batch, "batch_size"), std::max<int64_t>(n, 1), "batch_size");
  if (entries > kMaxSampledEntries)
    fail("batch_size", "n_instances * batch_size * n_features = " + std::to_string(entries) +
                           " entries exceeds the limit of 2^48 for one step");
}

// Check a CSR batch: offsets [rows + 1] non-decreasing from 0 to nnz.
inline void check_offsets(const int64_t *off, int64_t rows, int64_t nnz) {
  if (off[0] != 0) fail("offsets", "must start at 0");
  for (int64_t r = 0; r < rows; ++r)
    if (off[r + 1] < off[r]) fail("offsets", "must be non-decreasing");
  if (off[rows] != nnz) fail("offsets", "must end at the number of entries (len(indices))");
}

// The layout arguments of the steps (see use_dense_tiles, use_lanes): 0, 1 or 2.
inline void check_layout(int value, const char *arg, const char *choices) {
  if (value < 0 || value > 2) fail(arg, std::string("expected ") + choices + ", got " + std::to_string(value));
}
inline void check_dense(int dense) {
  check_layout(dense, "dense", "0 (automatic), 1 (sparse rows) or 2 (dense tiles)");
}
inline void check_lanes(int lanes) {
  check_layout(lanes, "lanes", "0 (automatic), 1 (never: row tiles) or 2 (SIMD lanes when there are no feature pairs)");
}

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
  if (m <= V)
    go(std::integral_constant<int, V>());
  else if (m <= 2 * V)
    go(std::integral_constant<int, 2 * V>());
  else if (m <= 4 * V)
    go(std::integral_constant<int, 4 * V>());
  else if (m <= 8 * V)
    go(std::integral_constant<int, 8 * V>());
  else if (m <= 16 * V)
    go(std::integral_constant<int, 16 * V>());
  else
    go(std::integral_constant<int, 256>());
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
void step(const carray<int64_t> &offsets, const carray<int64_t> &indices, const carray<T> &values, const carray<T> &E,
          const carray<T> &D, const carray<T> &b, const carray<T> &imp, carray<T> &gE, carray<T> &gD, carray<T> &gb,
          carray<double> &loss, bool hidden_relu, bool output_relu, bool abs_target, int nthreads, int dense) {
  check_dense(dense);
  check_shape(E, "E", {-1, -1, -1});
  const py::ssize_t I = E.shape(0), n = E.shape(1), m = E.shape(2);
  check_shape(offsets, "offsets", {-1});
  // I == 0: only the empty batch (offsets [1]) fits; no division by I.
  if (offsets.shape(0) < 1 || (I == 0 ? offsets.shape(0) != 1 : (offsets.shape(0) - 1) % I != 0))
    fail("offsets", "expected I * batch_size + 1 entries");
  const py::ssize_t B = I == 0 ? 0 : (offsets.shape(0) - 1) / I;
  check_shape(indices, "indices", {-1});
  const py::ssize_t nnz = indices.shape(0);
  check_shape(values, "values", {nnz});
  const bool tied = check_model_args(E, D, b, imp, gE, gD, gb, loss);
  const int64_t *off = offsets.data();
  const int64_t *idx = indices.data();
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  check_offsets(off, I * B, nnz);
  if (I == 0) return;  // no instances (n and m may then be sizes of empty arrays: no scratch of their size)
  for (int64_t t = 0; t < nnz; ++t)  // -1 padding is not allowed in CSR batches
    if (idx[t] < 0 || idx[t] >= n) {
      fail_index("indices", "index " + std::to_string(idx[t]) + " at position " + std::to_string(t) +
                                " is out of range [0, " + std::to_string(n) + ")");
    }
  const double scale = (B > 0 && n > 0) ? 1.0 / ((double)B * (double)n) : 0.0;
  const StepFlags fl{hidden_relu, output_relu, abs_target, tied};
  const T *val = values.data();
  auto make_src = [&]() { return CsrRows<T>{off, idx, val, B, nullptr, n, dense}; };
  dispatch_mp<T>(m, [&](auto mp) {
    step_all<T, decltype(mp)::value>(make_src, I, B, n, m, E.data(), D.data(), b.data(), imp.data(), gE.mutable_data(),
                                     gD.mutable_data(), gb.mutable_data(), loss.mutable_data(), scale, fl, nthreads);
  });
}

// tms_step on the batch that tms_sample_count + tms_sample_fill would draw for (seed, step, p, ...),
// drawn tile by tile inside the step instead: the same numbers, so the same losses and gradients,
// bit for bit, without writing the batch to memory and reading it back (at I=100, n=400, B=1024 that
// batch is 13M entries, 160 MB, and drawing it takes two hashing passes).
// The body of tms_sample_step / tms_sample_adamw_step once the arguments are checked: gradients into
// gE, gD, gb, or, with ad, AdamW applied to the weights inside the step (gE, gD, gb unused).
template <typename T>
void sample_step_run(const SampleSpec &sp, const std::vector<uint64_t> &bases, bool signed_values, int64_t I,
                     int64_t batch, int64_t n, int64_t m, const T *E, const T *D, const T *b, const T *imp, T *gE,
                     T *gD, T *gb, double *loss, StepFlags fl, int nthreads, const AdamW<T> *ad, int dense, int lanes) {
  const double scale = (batch > 0 && n > 0) ? 1.0 / ((double)batch * (double)n) : 0.0;
  if (use_lanes(n, m, sp.corr, sp.anti, lanes)) {
#pragma omp parallel num_threads(nthreads)
    {
      LaneStep<T> st(n, m);
      GradSlot<T> g(ad, n, m);
#pragma omp for schedule(dynamic, 1)
      for (int64_t i = 0; i < I; ++i) {
        g.at(ad, i, n, m, gE, gD, gb);
        loss[i] = st.run(sp, bases, signed_values, i, batch, E + i * n * m, D + i * n * m, b + i * n, imp + i * n, g.gE,
                         g.gD, g.gb, scale, fl);
        if (ad) ad->apply(i, n, m, g.gE, g.gD, g.gb);
      }
    }
    return;
  }
  auto make_src = [&]() { return SampledRows<T>(sp, bases, signed_values, dense); };
  dispatch_mp<T>(m, [&](auto mp) {
    step_all<T, decltype(mp)::value>(make_src, I, batch, n, m, E, D, b, imp, gE, gD, gb, loss, scale, fl, nthreads, ad);
  });
}

template <typename T>
void sample_step(uint64_t seed, int64_t step_no, const carray<double> &p, int64_t batch, int64_t corr, int64_t anti,
                 bool signed_values, const carray<T> &E, const carray<T> &D, const carray<T> &b, const carray<T> &imp,
                 carray<T> &gE, carray<T> &gD, carray<T> &gb, carray<double> &loss, bool hidden_relu, bool output_relu,
                 bool abs_target, int nthreads, const py::object &instance_seeds, int dense, int lanes) {
  check_dense(dense);
  check_lanes(lanes);
  check_shape(E, "E", {-1, -1, -1});
  const py::ssize_t I = E.shape(0), n = E.shape(1), m = E.shape(2);
  check_shape(p, "p", {I, n});
  const SampleSpec sp = make_spec(p, batch, corr, anti);
  check_sampled_size(I, batch, n);
  const bool tied = check_model_args(E, D, b, imp, gE, gD, gb, loss);  // loss [I]: I is backed by memory
  const std::vector<uint64_t> bases = instance_bases(seed, instance_keys(instance_seeds, I), step_no, I);
  if (I == 0) return;  // no instances (n and m may then be sizes of empty arrays: no scratch of their size)
  nthreads = set_threads(nthreads);
  py::gil_scoped_release release;
  sample_step_run<T>(sp, bases, signed_values, I, batch, n, m, E.data(), D.data(), b.data(), imp.data(),
                     gE.mutable_data(), gD.mutable_data(), gb.mutable_data(), loss.mutable_data(),
                     StepFlags{hidden_relu, output_relu, abs_target, tied}, nthreads, nullptr, dense, lanes);
}

// tms_sample_step followed by AdamW on E, D, b (in place), fused: each instance's update runs as
// soon as its gradients are complete, on the same thread (see AdamW). state: the six moment arrays
// [exp_avg_E, exp_avg_sq_E, exp_avg_D, exp_avg_sq_D, exp_avg_b, exp_avg_sq_b] (the D pair is the E
// pair when tied), updated in place; adam_step: the step number t >= 1 of the bias corrections.
template <typename T>
void sample_adamw_step(uint64_t seed, int64_t step_no, const carray<double> &p, int64_t batch, int64_t corr,
                       int64_t anti, bool signed_values, carray<T> &E, carray<T> &D, carray<T> &b, const carray<T> &imp,
                       const py::list &state, carray<double> &loss, bool hidden_relu, bool output_relu, bool abs_target,
                       double lr, double beta1, double beta2, double eps, double weight_decay, int64_t adam_step,
                       int nthreads, const py::object &instance_seeds, int dense, int lanes) {
  check_dense(dense);
  check_lanes(lanes);
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
  const char *names[6] = {"state[0] (exp_avg of E)",    "state[1] (exp_avg_sq of E)", "state[2] (exp_avg of D)",
                          "state[3] (exp_avg_sq of D)", "state[4] (exp_avg of b)",    "state[5] (exp_avg_sq of b)"};
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
  check_sampled_size(I, batch, n);
  const std::vector<uint64_t> bases = instance_bases(seed, instance_keys(instance_seeds, I), step_no, I);
  if (I == 0) return;  // no instances (n and m may then be sizes of empty arrays: no scratch of their size)
  nthreads = set_threads(nthreads);
  const AdamW<T> ad(E.mutable_data(), D.mutable_data(), b.mutable_data(), st[0].mutable_data(), st[1].mutable_data(),
                    st[2].mutable_data(), st[3].mutable_data(), st[4].mutable_data(), st[5].mutable_data(), lr, beta1,
                    beta2, eps, weight_decay, adam_step);
  py::gil_scoped_release release;
  sample_step_run<T>(sp, bases, signed_values, I, batch, n, m, E.data(), D.data(), b.data(), imp.data(), nullptr,
                     nullptr, nullptr, loss.mutable_data(), StepFlags{hidden_relu, output_relu, abs_target, tied},
                     nthreads, &ad, dense, lanes);
}

template <typename T>
void register_dtype(py::module_ &m) {
  m.def("tms_sample_step", &sample_step<T>, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(),
        py::arg("batch_size"), py::arg("correlated_pairs"), py::arg("anticorrelated_pairs"), py::arg("signed_values"),
        py::arg("E").noconvert(), py::arg("D").noconvert(), py::arg("b").noconvert(), py::arg("importance").noconvert(),
        py::arg("gE").noconvert(), py::arg("gD").noconvert(), py::arg("gb").noconvert(), py::arg("loss").noconvert(),
        py::arg("hidden_relu"), py::arg("output_relu"), py::arg("abs_target"), py::arg("nthreads") = 0,
        py::arg("instance_seeds") = py::none(), py::kw_only(), py::arg("dense") = 0, py::arg("lanes") = 0);
  m.def("tms_sample_adamw_step", &sample_adamw_step<T>, py::arg("seed"), py::arg("step"), py::arg("p").noconvert(),
        py::arg("batch_size"), py::arg("correlated_pairs"), py::arg("anticorrelated_pairs"), py::arg("signed_values"),
        py::arg("E").noconvert(), py::arg("D").noconvert(), py::arg("b").noconvert(), py::arg("importance").noconvert(),
        py::arg("state"), py::arg("loss").noconvert(), py::arg("hidden_relu"), py::arg("output_relu"),
        py::arg("abs_target"), py::arg("lr"), py::arg("beta1"), py::arg("beta2"), py::arg("eps"),
        py::arg("weight_decay"), py::arg("adam_step"), py::arg("nthreads") = 0, py::arg("instance_seeds") = py::none(),
        py::kw_only(), py::arg("dense") = 0, py::arg("lanes") = 0);
  m.def("tms_step", &step<T>, py::arg("offsets").noconvert(), py::arg("indices").noconvert(),
        py::arg("values").noconvert(), py::arg("E").noconvert(), py::arg("D").noconvert(), py::arg("b").noconvert(),
        py::arg("importance").noconvert(), py::arg("gE").noconvert(), py::arg("gD").noconvert(),
        py::arg("gb").noconvert(), py::arg("loss").noconvert(), py::arg("hidden_relu"), py::arg("output_relu"),
        py::arg("abs_target"), py::arg("nthreads") = 0, py::kw_only(), py::arg("dense") = 0);
}

}  // namespace

void register_tms_step(py::module_ &m) {
  register_dtype<float>(m);
  register_dtype<double>(m);
}

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
