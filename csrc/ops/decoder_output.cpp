// Entry point of decoder_output for C++ callers (through the dispatcher).
// Schema: csrc/ops/schemas.cpp; CPU kernel: csrc/ops/cpu/decoder_output_kernel.cpp.
#include "dsepconv.h"

#include <ATen/core/dispatch/Dispatcher.h>

namespace ldmvfi_fast {
namespace ops {

at::Tensor decoder_output(const at::Tensor& frame0, const at::Tensor& frame1, const at::Tensor& vertical0,
                          const at::Tensor& horizontal0, const at::Tensor& offset_x0,
                          const at::Tensor& offset_y0, const at::Tensor& vertical1,
                          const at::Tensor& horizontal1, const at::Tensor& offset_x1,
                          const at::Tensor& offset_y1, const at::Tensor& mask, const at::Tensor& residual) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ldmvfi_fast::decoder_output", "")
                       .typed<decltype(decoder_output)>();
  return op.call(frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0, vertical1, horizontal1,
                 offset_x1, offset_y1, mask, residual);
}

}  // namespace ops
}  // namespace ldmvfi_fast
