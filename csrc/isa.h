// The instruction-set variant a kernel translation unit is compiled for.
//
// setup.py compiles every kernel file (all of csrc/*.cpp except bindings.cpp and cpu_features.cpp)
// once per variant, with that variant's -m flags and -DSUPCOMP_ISA=<name>: baseline (x86-64, SSE2),
// avx2 (x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE) and avx512 (x86-64-v4: AVX-512 F, CD, BW,
// DQ, VL), or one "native" variant under SUPCOMP_NATIVE=1 (-march=native) and on other
// architectures one "baseline" (aarch64 always has NEON, which GCC's vector extensions use).
// All kernel code lives in the namespace supcomp::isa_<name>, so the copies never share a symbol:
// bindings.cpp calls the register_* functions of the variant chosen when the module loads.
//
// Shared inline code outside these namespaces (common.h, pybind11, the standard library) is
// emitted once per translation unit that uses it and the linker keeps the first copy it meets;
// setup.py links the baseline objects before the avx2 ones and those before the avx512 ones, so
// a copy kept for code of one variant is never compiled for a higher one
// (tests/test_cpu_variants.py checks the disassembly).
//
// Intrinsics: a file includes <immintrin.h> only under the feature macros it needs
// (__AVX512F__ ...), so the baseline and non-x86 builds reach no intrinsic header.
#pragma once

#ifndef SUPCOMP_ISA
// A build that sets nothing (the sanitizer build in tools/sanitize.py, a hand-written g++ line)
// gets one variant compiled with its own flags.
#define SUPCOMP_ISA native
#endif

#define SUPCOMP_ISA_CAT2(a, b) a##b
#define SUPCOMP_ISA_CAT(a, b) SUPCOMP_ISA_CAT2(a, b)
// supcomp::isa_baseline, supcomp::isa_avx2, supcomp::isa_avx512 or supcomp::isa_native.
#define SUPCOMP_ISA_NS SUPCOMP_ISA_CAT(isa_, SUPCOMP_ISA)
