// The model kind of a TMS training step (see supcomp/tms/model.py), as the step kernels read it.
#pragma once

#include "isa.h"

namespace supcomp {
namespace SUPCOMP_ISA_NS {
namespace tms_detail {
// Internal linkage in each file that includes this header, as code in a .cpp file has: GCC
// inlines a function called once (InstanceStep::run into its OpenMP loop) only when it is internal.
namespace {

struct StepFlags {
  bool hidden_relu, output_relu, abs_target, tied;
};

}  // namespace
}  // namespace tms_detail
}  // namespace SUPCOMP_ISA_NS
}  // namespace supcomp
