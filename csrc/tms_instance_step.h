// InstanceStep: one toy model's forward, loss and backward over its batch, in tiles of 8 rows
// (tms_step, and tms_sample_step for models outside LaneStep's range).
#pragma once

#include "isa.h"

#include "readout_tile.h"
#include "tms_sparse_rows.h"
#include "tms_step_flags.h"
#include "vec.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace tms_detail {
// Internal linkage in each file that includes this header, as code in a .cpp file has: GCC
// inlines a function called once (InstanceStep::run into its OpenMP loop) only when it is internal.
namespace {

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
  static constexpr int RB = kTileRows;  // rows that share each load of a decoder row
  using VT = Vec<T>;
  using v_t = typename VT::v;
  static constexpr int W = VT::W, NV = MP / W;  // MP is a whole number of vectors
  static constexpr int G = NV == 1 ? 1 : 2;     // vectors per column group in the backward tiles
  // The read-out runs over NP >= n features, n rounded up to a whole register (zero
  // weights and bias past n): no scalar tail loop, which at n = 20 would be the read-out's whole cost.
  static int64_t padded(int64_t n) { return (n + W - 1) / W * W; }
  int64_t n, m, NP;
  avector<T> E, D, gE, gD, dt, bpad, ipad, gbpad, hbuf, ghbuf, yblk, xv, dyblk;  // rows of MP / NP: whole lines
  std::vector<int64_t> nz;
  std::vector<uint8_t> live;
  InstanceStep(int64_t n_, int64_t m_)
      : n(n_),
        m(m_),
        NP(padded(n_)),
        E((size_t)n_ * MP),
        D((size_t)n_ * MP),
        gE((size_t)n_ * MP),
        gD((size_t)n_ * MP),
        dt((size_t)(MP * NP)),
        bpad((size_t)NP),
        ipad((size_t)NP),
        gbpad((size_t)NP),
        hbuf((size_t)RB * MP),
        ghbuf((size_t)RB * MP),
        yblk((size_t)(RB * NP)),
        xv((size_t)(RB * NP), T(0)),
        dyblk((size_t)(RB * NP)),
        nz((size_t)NP + 8),
        live((size_t)NP) {}

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
    tile_to_rows(
        ghbuf.data(), hidden_relu ? hbuf.data() : nullptr, xv.data(), [](int64_t q) { return q; }, n, gE.data());
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
  // outputs (the bias gradient and flags written once per row) measured 15-17% of the step; with the
  // epilogue inside the read-out's register tile GCC spills the tile's weights to the stack.
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
    // Padding features (f >= n) have no D / gD rows: never live, even where a NaN or infinite hidden
    // activation times their zero weights made their gradient NaN (they would be read and written past n).
    std::fill(live.begin() + n, live.end(), (uint8_t)0);
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
    std::fill(xv.begin(), xv.end(), T(0));     // the sparse path clears only what it set (a dense instance may precede)
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
        // The running sums are explicit vectors: with a plain T[MP] array GCC keeps them on the stack
        // and builds every second row of E with gathers.
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

}  // namespace
}  // namespace tms_detail
}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
