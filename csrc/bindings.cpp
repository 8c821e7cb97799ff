// The supcomp._C module: chooses the kernel variant this CPU runs (isa.h) when the module loads and
// registers that variant's functions; SUPCOMP_CPU_CAPABILITY=<variant> forces one.
#include "common.h"
#include "cpu_features.h"

#include <cctype>
#include <cstdlib>
#include <string>
#include <vector>

// setup.py defines SUPCOMP_WITH_<VARIANT> for each variant it compiled the kernel files for.
#if !defined(SUPCOMP_WITH_BASELINE) && !defined(SUPCOMP_WITH_AVX2) && !defined(SUPCOMP_WITH_AVX512) && \
    !defined(SUPCOMP_WITH_NATIVE)
#define SUPCOMP_WITH_NATIVE 1
#endif

// Each kernel file defines its register_* function once per variant, in supcomp::isa_<variant>.
#define SUPCOMP_DECLARE_KERNELS(ns)                       \
  namespace supcomp {                                     \
  namespace ns {                                          \
  void register_sparse_encode(py::module_ &m);            \
  void register_relu_readout(py::module_ &m);             \
  void register_relu_readout_topk(py::module_ &m);        \
  void register_relu_readout_topk_screen(py::module_ &m); \
  void register_superpose(py::module_ &m);                \
  void register_tms_sample(py::module_ &m);               \
  void register_tms_step(py::module_ &m);                 \
  void register_uand(py::module_ &m);                     \
  }                                                       \
  }

#define SUPCOMP_REGISTER_KERNELS(ns)                   \
  [](py::module_ &m) {                                 \
    supcomp::ns::register_sparse_encode(m);            \
    supcomp::ns::register_relu_readout(m);             \
    supcomp::ns::register_relu_readout_topk(m);        \
    supcomp::ns::register_relu_readout_topk_screen(m); \
    supcomp::ns::register_superpose(m);                \
    supcomp::ns::register_tms_sample(m);               \
    supcomp::ns::register_tms_step(m);                 \
    supcomp::ns::register_uand(m);                     \
  }

#ifdef SUPCOMP_WITH_BASELINE
SUPCOMP_DECLARE_KERNELS(isa_baseline)
#endif
#ifdef SUPCOMP_WITH_AVX2
SUPCOMP_DECLARE_KERNELS(isa_avx2)
#endif
#ifdef SUPCOMP_WITH_AVX512
SUPCOMP_DECLARE_KERNELS(isa_avx512)
#endif
#ifdef SUPCOMP_WITH_NATIVE
SUPCOMP_DECLARE_KERNELS(isa_native)
#endif

namespace supcomp {
namespace {

struct Variant {
  const char *name;
  const char *needs;  // what the CPU must have, for the error message
  bool (*runs)();     // does this CPU execute every instruction the variant may use?
  void (*register_kernels)(py::module_ &m);
};

bool always() {
  return true;
}

// Lowest first; the module picks the last one the CPU runs.
const std::vector<Variant> &compiled() {
  static const std::vector<Variant> v = {
#ifdef SUPCOMP_WITH_BASELINE
      {"baseline", "nothing beyond the architecture's baseline", always, SUPCOMP_REGISTER_KERNELS(isa_baseline)},
#endif
#ifdef SUPCOMP_WITH_AVX2
      {"avx2", "AVX2, FMA, BMI1/2, F16C, LZCNT and MOVBE (x86-64-v3)", cpu_runs_avx2,
       SUPCOMP_REGISTER_KERNELS(isa_avx2)},
#endif
#ifdef SUPCOMP_WITH_AVX512
      {"avx512", "AVX-512 F, CD, BW, DQ and VL (x86-64-v4)", cpu_runs_avx512, SUPCOMP_REGISTER_KERNELS(isa_avx512)},
#endif
#ifdef SUPCOMP_WITH_NATIVE
      // -march=native of the build machine (SUPCOMP_NATIVE=1): assumed to run where it was built.
      {"native", "the build machine's instruction set", always, SUPCOMP_REGISTER_KERNELS(isa_native)},
#endif
  };
  return v;
}

std::string join_names(bool runnable_only) {
  std::string s;
  for (const Variant &v : compiled())
    if (!runnable_only || v.runs()) s += (s.empty() ? "" : ", ") + std::string(v.name);
  return s;
}

// The variant to register: SUPCOMP_CPU_CAPABILITY when set (ImportError when it is unknown, not
// compiled in or needs instructions this CPU lacks), else the highest one the CPU runs.
const Variant &choose() {
  const char *env = std::getenv("SUPCOMP_CPU_CAPABILITY");
  std::string want = env ? env : "";
  for (char &ch : want) ch = (char)std::tolower((unsigned char)ch);
  if (want.empty() || want == "auto") {
    const Variant *best = nullptr;
    for (const Variant &v : compiled())
      if (v.runs()) best = &v;
    if (best == nullptr) throw py::import_error("supcomp._C: this CPU runs none of the compiled variants");
    return *best;
  }
  for (const Variant &v : compiled()) {
    if (want != v.name) continue;
    if (!v.runs())
      throw py::import_error("supcomp._C: SUPCOMP_CPU_CAPABILITY=" + want + " needs " + v.needs +
                             ", which this CPU lacks; it runs: " + join_names(true) +
                             " (unset the variable to choose automatically)");
    return v;
  }
  throw py::import_error("supcomp._C: SUPCOMP_CPU_CAPABILITY=" + want +
                         " is not a variant of this build; compiled: " + join_names(false) + " (or auto)");
}

std::string compiler() {
#if defined(__clang__)
  return std::string("Clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("GCC ") + __VERSION__;
#else
  return "unknown";
#endif
}

}  // namespace
}  // namespace supcomp

PYBIND11_MODULE(_C, m) {
  m.doc() = "supcomp C++ CPU kernels over raw buffers (numpy arrays / CPU tensors viewed as numpy).";
  // Our argument errors -> Python exceptions, with the GIL held (see common.h).
  py::register_local_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const supcomp::ArgIndexError &e) {
      PyErr_SetString(PyExc_IndexError, e.what());
    } catch (const supcomp::ArgValueError &e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
  const supcomp::Variant &chosen = supcomp::choose();
  chosen.register_kernels(m);
  const std::string name = chosen.name;
  m.def("cpu_variant", [name]() { return name; }, "The kernel variant in use (baseline, avx2, avx512 or native).");
  m.def(
      "compiled_variants",
      []() {
        py::list names;
        for (const auto &v : supcomp::compiled()) names.append(v.name);
        return names;
      },
      "The kernel variants compiled into this build, lowest first.");
  m.def(
      "supported_variants",
      []() {
        py::list names;
        for (const auto &v : supcomp::compiled())
          if (v.runs()) names.append(v.name);
        return names;
      },
      "The compiled variants this CPU runs, lowest first.");
  m.def("compiler", &supcomp::compiler, "The compiler that built the extension, with its version.");
#ifdef _OPENMP
  m.attr("has_openmp") = true;
  m.def("max_threads", []() { return omp_get_max_threads(); });
#else
  m.attr("has_openmp") = false;
  m.def("max_threads", []() { return 1; });
#endif
}
