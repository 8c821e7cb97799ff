// Shared helpers for the supcomp C++ kernels: argument checks that raise
// Python exceptions naming the argument, and OpenMP shims.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace supcomp {

template <typename T>
using carray = py::array_t<T, py::array::c_style>;  // no forcecast: a wrong dtype never silently copies

// Argument errors are plain C++ exceptions: they are often thrown while the GIL
// is released (inside py::gil_scoped_release), so throwing must not touch any
// Python object. A module-local translator (bindings.cpp) turns them into
// ValueError / IndexError with the GIL held. Local, because pybind11's global
// translator list can be shared with other extensions (torch's, when their
// pybind11 internals match ours), and handing our exceptions to their
// translators crashes the interpreter (seen on the GPU machine: torch 2.11, Python 3.12).
struct ArgValueError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};
struct ArgIndexError : std::out_of_range {
  using std::out_of_range::out_of_range;
};

// Raise ValueError("<arg>: <what>") on the Python side.
[[noreturn]] inline void fail(const std::string &arg, const std::string &what) {
  throw ArgValueError(arg + ": " + what);
}

// Raise IndexError("<arg>: <what>") on the Python side.
[[noreturn]] inline void fail_index(const std::string &arg, const std::string &what) {
  throw ArgIndexError(arg + ": " + what);
}

// Messages are built with std::to_string, never iostreams: where the extension
// ends up with its own static copy of libstdc++ (seen on the GPU image: Ubuntu's
// g++ 13 with Python 3.12), std::ostringstream segfaults on first use.
inline std::string shape_str(const py::array &a) {
  std::string s = "[";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + "]";
}

// Check that the data of `a` is aligned to its element size: numpy accepts unaligned buffers
// (np.frombuffer at an odd offset), and the kernels' loads assume aligned elements.
inline void check_aligned(const py::array &a, const char *arg) {
  if (a.size() > 0 && reinterpret_cast<uintptr_t>(a.data()) % (uintptr_t)a.itemsize() != 0)
    fail(arg, "data is not aligned to its element size (" + std::to_string(a.itemsize()) + " bytes)");
}

// Check that `a` has exactly the given shape (entries < 0 are wildcards) and aligned data.
inline void check_shape(const py::array &a, const char *arg, std::vector<py::ssize_t> shape) {
  check_aligned(a, arg);
  bool ok = a.ndim() == (py::ssize_t)shape.size();
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(i) == shape[i];
  if (!ok) {
    std::string s = "expected shape [";
    for (size_t i = 0; i < shape.size(); ++i) {
      s += (i ? ", " : "");
      s += shape[i] < 0 ? std::string("*") : std::to_string(shape[i]);
    }
    fail(arg, s + "], got " + shape_str(a));
  }
}

// Every index must lie in [-1, n). Checked before any kernel reads memory
// through an index; runs in parallel and reports the first bad entry.
inline void check_indices(const int64_t *idx, int64_t count, int64_t n, const char *arg) {
  int64_t bad = -1;
#pragma omp parallel for reduction(max : bad) schedule(static)
  for (int64_t t = 0; t < count; ++t) {
    int64_t v = idx[t];
    if (v < -1 || v >= n) bad = bad > t ? bad : t;
  }
  if (bad >= 0) {
    // Find the first one serially for a stable message.
    for (int64_t t = 0; t < count; ++t) {
      if (idx[t] < -1 || idx[t] >= n) {
        fail_index(arg, "index " + std::to_string(idx[t]) + " at flat position " + std::to_string(t) +
                            " is out of range: expected -1 (empty) or 0 <= index < " + std::to_string(n));
      }
    }
  }
}

// Software prefetch of a whole row (all its cache lines). Random row gathers
// are latency-bound: asking for rows a few slots ahead keeps enough misses in
// flight to approach memory bandwidth (the same trick FBGEMM's embedding
// kernels use).
template <int RW = 0, typename T>
inline void prefetch_row(const T *p, int64_t count) {
  const char *c = reinterpret_cast<const char *>(p);
  const int64_t bytes = count * (int64_t)sizeof(T);
  for (int64_t o = 0; o < bytes; o += 64) __builtin_prefetch(c + o, RW, 3);
}

// How many slots ahead to prefetch in the gather / scatter loops.
constexpr int64_t kPrefetchDistance = 8;

// The thread count of a kernel: nthreads, or OpenMP's default for nthreads <= 0, at most
// kMaxThreadsPerCpu per processor (results do not depend on the thread count; a count of
// millions would make libgomp abort when thread creation fails).
constexpr int kMaxThreadsPerCpu = 8;
inline int set_threads(int nthreads) {
#ifdef _OPENMP
  if (nthreads <= 0) nthreads = omp_get_max_threads();
  const int cap = std::max(omp_get_max_threads(), kMaxThreadsPerCpu * omp_get_num_procs());
  return nthreads < cap ? nthreads : cap;
#else
  (void)nthreads;
  return 1;
#endif
}

}  // namespace supcomp
