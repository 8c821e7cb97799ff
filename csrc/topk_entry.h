// Shared pieces of the top-k kernels (relu_readout_topk.cpp, relu_readout_topk_screen.cpp): the
// entry order of a top-k list and the widening of a bfloat16 bit pattern.
//
// Inside the variant's namespace (isa.h) and an unnamed one: each kernel file and each
// instruction-set copy keeps its own.
#pragma once

#include "isa.h"

#include <cstdint>
#include <cstring>

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace {

// Entry order of a top-k list: larger value first, then lower feature id.
template <typename T>
struct Entry {
  T v;
  int64_t id;
};
template <typename T>
inline bool before(const Entry<T> &a, const Entry<T> &b) {
  return a.v > b.v || (a.v == b.v && a.id < b.id);
}

// The bits of a bfloat16 as a float (exact: a bfloat16 is the top half of a float).
inline float bf16_to_float(uint16_t h) {
  const uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace
}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
