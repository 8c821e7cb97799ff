// One 64-byte SIMD vector of T (an AVX-512 register; GCC / clang vector extensions, so the code
// still builds, as narrower vectors or scalars, without AVX-512). Used where the auto-vectoriser
// made poor choices: running sums that must live in registers across a loop over sparse rows.
#pragma once

namespace supcomp {

template <typename T>
struct Vec {
  static constexpr int W = 64 / sizeof(T);  // lanes
  typedef T v __attribute__((vector_size(64)));
  static inline v load(const T *p) {  // unaligned
    v x;
    __builtin_memcpy(&x, p, sizeof(v));
    return x;
  }
  static inline void store(T *p, v x) { __builtin_memcpy(p, &x, sizeof(v)); }
  static inline v splat(T s) {
    v x = {};
    return x + s;
  }
};

}  // namespace supcomp
