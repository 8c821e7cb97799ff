// AdamW inside the TMS training step (tms_sample_adamw_step), and the per-thread gradient scratch
// it needs.
#pragma once

#include "isa.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace tms_detail {
// Internal linkage in each file that includes this header, as code in a .cpp file has: GCC
// inlines a function called once (InstanceStep::run into its OpenMP loop) only when it is internal.
namespace {

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
  T *E, *D, *b;                    // parameters [I, n, m], [I, n, m] (D == E when tied), [I, n]
  T *mE, *vE, *mD, *vD, *mb, *vb;  // their first and second moments (mD == mE when tied)
  T decay, omb1, b2, omb2, bc2_sqrt, eps, neg_step;
  bool tied;
  AdamW(T *E_, T *D_, T *b_, T *mE_, T *vE_, T *mD_, T *vD_, T *mb_, T *vb_, double lr, double beta1, double beta2,
        double eps_, double weight_decay, int64_t t)
      : E(E_),
        D(D_),
        b(b_),
        mE(mE_),
        vE(vE_),
        mD(mD_),
        vD(vD_),
        mb(mb_),
        vb(vb_),
        decay((T)(1.0 - lr * weight_decay)),
        omb1((T)(1.0 - beta1)),
        b2((T)beta2),
        omb2((T)(1.0 - beta2)),
        bc2_sqrt((T)std::sqrt(1.0 - std::pow(beta2, (double)t))),
        eps((T)eps_),
        neg_step((T)(-lr / (1.0 - std::pow(beta1, (double)t)))),
        tied(E_ == D_) {}
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

}  // namespace
}  // namespace tms_detail
}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
