// Overflow-checked size arithmetic for the entry points' own argument checks. A size computed
// from a caller's scalar (a batch size, a row offset) or from the dimensions of an empty array
// (numpy lets a dimension be huge when another one is 0) can exceed int64: these helpers raise
// ValueError naming the argument instead of wrapping around.
//
// Internal linkage (unnamed namespace): the kernel files are compiled more than once, with
// different instruction sets, and each copy keeps its own.
#pragma once

#include "common.h"

#include <cstdint>
#include <string>

namespace supcomp {
namespace {

// a * b, or ValueError("<arg>: ...") when it does not fit int64.
inline int64_t checked_mul(int64_t a, int64_t b, const char *arg) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r))
    fail(arg, "size " + std::to_string(a) + " * " + std::to_string(b) + " overflows int64");
  return r;
}

// a + b, or ValueError("<arg>: ...") when it does not fit int64.
inline int64_t checked_add(int64_t a, int64_t b, const char *arg) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r))
    fail(arg, "size " + std::to_string(a) + " + " + std::to_string(b) + " overflows int64");
  return r;
}

// A block [start, start + len) lies inside [0, total): checked without computing start + len
// (which may overflow for a hostile start).
inline bool block_inside(int64_t start, int64_t len, int64_t total) {
  return start >= 0 && len >= 0 && len <= total && start <= total - len;
}

// A CSR pointer array ptr [rows + 1]: ptr[0] == 0, non-decreasing, ptr[rows] <= cap (the room in
// the arrays it points into). Returns ptr[rows].
inline int64_t check_csr_ptr(const int64_t *ptr, int64_t rows, int64_t cap, const char *arg) {
  if (ptr[0] != 0) fail(arg, "must start at 0, got " + std::to_string(ptr[0]));
  for (int64_t r = 0; r < rows; ++r)
    if (ptr[r + 1] < ptr[r])
      fail(arg, "must be non-decreasing (entry " + std::to_string(r + 1) + " is " + std::to_string(ptr[r + 1]) +
                    " after " + std::to_string(ptr[r]) + ")");
  if (ptr[rows] > cap)
    fail(arg, "last entry " + std::to_string(ptr[rows]) + " exceeds the room in the buffers (" + std::to_string(cap) +
                  " entries)");
  return ptr[rows];
}

}  // namespace
}  // namespace supcomp
