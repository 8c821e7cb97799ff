// The supcomp._C module: each kernel file registers its functions here.
#include "common.h"

namespace supcomp {
void register_sparse_encode(py::module_ &m);
void register_relu_readout(py::module_ &m);
void register_relu_readout_topk(py::module_ &m);
void register_superpose(py::module_ &m);
void register_tms_sample(py::module_ &m);
void register_tms_step(py::module_ &m);
void register_uand(py::module_ &m);
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
  supcomp::register_sparse_encode(m);
  supcomp::register_relu_readout(m);
  supcomp::register_relu_readout_topk(m);
  supcomp::register_superpose(m);
  supcomp::register_tms_sample(m);
  supcomp::register_tms_step(m);
  supcomp::register_uand(m);
#ifdef _OPENMP
  m.attr("has_openmp") = true;
  m.def("max_threads", []() { return omp_get_max_threads(); });
#else
  m.attr("has_openmp") = false;
  m.def("max_threads", []() { return 1; });
#endif
}
