// What the running CPU can execute, for choosing a kernel variant (see isa.h). Compiled for the
// baseline only: this code runs before any variant is chosen.
#pragma once

namespace supcomp {

// Every instruction the avx2 variant may use (x86-64-v3: AVX, AVX2, FMA, BMI1, BMI2, F16C, LZCNT,
// MOVBE, POPCNT, SSE4.2 ...) is present, and the OS saves the YMM registers. False off x86-64.
bool cpu_runs_avx2();
// cpu_runs_avx2() and AVX-512 F, CD, BW, DQ, VL (x86-64-v4), with the OS saving the ZMM and mask registers.
bool cpu_runs_avx512();

}  // namespace supcomp
