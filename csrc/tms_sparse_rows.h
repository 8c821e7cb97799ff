// Sparse rows of the TMS step: the ids of a row's nonzeros, ascending (compact_on from flag bytes,
// row_ids straight from a drawn row's hashes), and CSR rows added into dense rows (scatter_rows).
#pragma once

#include "isa.h"

#include "tms_sampling.h"

#include <cstdint>
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#endif

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace tms_detail {
// Internal linkage in each file that includes this header, as code in a .cpp file has: GCC
// inlines a function called once (InstanceStep::run into its OpenMP loop) only when it is internal.
namespace {

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
// n + 8 entries (whole 8-id stores, and the scalar loop's one spare id past the last). With AVX-512, 16 features per
// step (a byte-mask test and append_ids16): the scalar loop alone measured ~8% of a step.
inline int64_t compact_on(const uint8_t *on, int64_t n, int64_t *ids) {
  int64_t cnt = 0, f = 0;
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
  for (; f + 16 <= n; f += 16)
    cnt = append_ids16(
        _mm_test_epi8_mask(_mm_loadu_si128(reinterpret_cast<const __m128i *>(on + f)), _mm_set1_epi8((char)0xFF)), f,
        ids, cnt);
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
      asm("" : "+r"(j));  // keep this loop scalar: GCC makes it a (slow, microcoded) AVX-512 scatter
    }
  }
}

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

}  // namespace
}  // namespace tms_detail
}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
