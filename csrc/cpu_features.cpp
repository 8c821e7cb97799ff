// CPU feature detection with CPUID and XGETBV (GCC / Clang <cpuid.h>): the same bits the -m flags
// of each variant in setup.py switch on, plus the OS support (XCR0) that AVX and AVX-512 registers
// need. Baseline code only (see cpu_features.h).
#include "cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

#include <cstdint>
#endif

namespace supcomp {

#if defined(__x86_64__) || defined(__i386__)
namespace {

struct Features {
  bool v3 = false;  // x86-64-v3 instructions, YMM state enabled by the OS
  bool v4 = false;  // x86-64-v4 instructions, ZMM and opmask state enabled by the OS
};

bool bit(unsigned reg, int b) {
  return (reg >> b) & 1u;
}

uint64_t xgetbv0() {
  unsigned lo, hi;
  // Raw opcode, not _xgetbv(): this file is compiled without -mxsave.
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
  return ((uint64_t)hi << 32) | lo;
}

Features detect() {
  Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const unsigned c1 = c;
  // SSE3, SSSE3, FMA, CMPXCHG16B, SSE4.1, SSE4.2, MOVBE, POPCNT, OSXSAVE, AVX, F16C
  const bool leaf1 = bit(c1, 0) && bit(c1, 9) && bit(c1, 12) && bit(c1, 13) && bit(c1, 19) && bit(c1, 20) &&
                     bit(c1, 22) && bit(c1, 23) && bit(c1, 27) && bit(c1, 28) && bit(c1, 29);
  if (!leaf1) return f;
  const uint64_t xcr0 = xgetbv0();
  if ((xcr0 & 0x6) != 0x6) return f;  // XMM and YMM state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  const unsigned b7 = b;
  if (!__get_cpuid(0x80000001, &a, &b, &c, &d)) return f;
  const bool lahf_lzcnt = bit(c, 0) && bit(c, 5);
  f.v3 = lahf_lzcnt && bit(b7, 3) && bit(b7, 5) && bit(b7, 8);  // BMI1, AVX2, BMI2
  // AVX-512 F, DQ, CD, BW, VL; opmask, upper ZMM0-15 and ZMM16-31 state
  f.v4 = f.v3 && bit(b7, 16) && bit(b7, 17) && bit(b7, 28) && bit(b7, 30) && bit(b7, 31) && (xcr0 & 0xE0) == 0xE0;
  return f;
}

const Features &features() {
  static const Features f = detect();
  return f;
}

}  // namespace

bool cpu_runs_avx2() {
  return features().v3;
}
bool cpu_runs_avx512() {
  return features().v4;
}
#else
bool cpu_runs_avx2() {
  return false;
}
bool cpu_runs_avx512() {
  return false;
}
#endif

}  // namespace supcomp
