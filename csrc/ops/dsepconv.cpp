// Entry points of dsepconv / dsepconv_backward for C++ callers. They go through the
// dispatcher, so they reach the CPU or CUDA kernel and the autograd wrapper exactly as
// torch.ops.ldmvfi_fast.dsepconv does from Python. Schemas: csrc/ops/schemas.cpp.
#include "dsepconv.h"

#include <ATen/core/dispatch/Dispatcher.h>

namespace ldmvfi_fast {
namespace ops {

at::Tensor dsepconv(const at::Tensor& input, const at::Tensor& vertical, const at::Tensor& horizontal,
                    const at::Tensor& offset_x, const at::Tensor& offset_y, const at::Tensor& mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ldmvfi_fast::dsepconv", "")
                       .typed<decltype(dsepconv)>();
  return op.call(input, vertical, horizontal, offset_x, offset_y, mask);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsepconv_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& vertical,
    const at::Tensor& horizontal, const at::Tensor& offset_x, const at::Tensor& offset_y,
    const at::Tensor& mask) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("ldmvfi_fast::dsepconv_backward", "")
                       .typed<decltype(dsepconv_backward)>();
  return op.call(grad_out, input, vertical, horizontal, offset_x, offset_y, mask);
}

}  // namespace ops
}  // namespace ldmvfi_fast
