// One SIMD register of T, as wide as the variant being compiled has: 64 bytes with AVX-512, 32 with
// AVX, else 16 (GCC / clang vector extensions). Used where the auto-vectoriser makes poor choices:
// running sums that must live in registers across a loop over sparse rows. A vector wider than the
// registers would be split by GCC into pieces kept in memory, an order of magnitude slower.
#pragma once

#include "isa.h"

#include <cstddef>
#include <new>
#include <vector>

namespace supcomp {
namespace SUPCOMP_ISA_NS {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

template <typename T>
struct Vec {
  static constexpr int W = kVecBytes / sizeof(T);  // lanes
  typedef T v __attribute__((vector_size(kVecBytes)));
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

// A std::vector allocator that starts every buffer on a 64-byte boundary (a cache line, an AVX-512
// register): with malloc's 16-byte alignment every 64-byte row access of a padded buffer straddled
// two cache lines (a split load or store).
template <typename T>
struct CacheAligned {
  typedef T value_type;
  CacheAligned() = default;
  template <typename U>
  CacheAligned(const CacheAligned<U> &) {}
  T *allocate(std::size_t k) {
    void *p = ::operator new(k * sizeof(T), std::align_val_t(64));
    return static_cast<T *>(p);
  }
  void deallocate(T *p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
  template <typename U>
  bool operator==(const CacheAligned<U> &) const {
    return true;
  }
  template <typename U>
  bool operator!=(const CacheAligned<U> &) const {
    return false;
  }
};
template <typename T>
using avector = std::vector<T, CacheAligned<T>>;

}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
