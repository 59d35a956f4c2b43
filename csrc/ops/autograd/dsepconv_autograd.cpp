// Autograd of dsepconv: forward redispatches below autograd to the device kernel and
// saves the six inputs; backward calls the dsepconv_backward op (CPU or CUDA kernel).
// dsepconv_backward itself is not differentiable (double backward raises).
#include <torch/autograd.h>
#include <torch/library.h>

#include "../dsepconv.h"

namespace ldmvfi_fast {
namespace ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class DSepConvFunction : public torch::autograd::Function<DSepConvFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& vertical,
                               const at::Tensor& horizontal, const at::Tensor& offset_x,
                               const at::Tensor& offset_y, const at::Tensor& mask) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto out = dsepconv(input, vertical, horizontal, offset_x, offset_y, mask);
    ctx->save_for_backward({input, vertical, horizontal, offset_x, offset_y, mask});
    return {out};
  }

  static variable_list backward(AutogradContext* ctx, const variable_list& grad_output) {
    const auto saved = ctx->get_saved_variables();
    auto grads = dsepconv_backward(grad_output[0], saved[0], saved[1], saved[2], saved[3], saved[4], saved[5]);
    return {std::get<0>(grads), std::get<1>(grads), std::get<2>(grads),
            std::get<3>(grads), std::get<4>(grads), std::get<5>(grads)};
  }
};

// Makes dsepconv_backward visible to autograd only to refuse double backward clearly.
class DSepConvBackwardFunction : public torch::autograd::Function<DSepConvBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_out, const at::Tensor& input,
                               const at::Tensor& vertical, const at::Tensor& horizontal,
                               const at::Tensor& offset_x, const at::Tensor& offset_y, const at::Tensor& mask) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto g = dsepconv_backward(grad_out, input, vertical, horizontal, offset_x, offset_y, mask);
    return {std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g), std::get<4>(g), std::get<5>(g)};
  }

  static variable_list backward(AutogradContext*, const variable_list&) {
    TORCH_CHECK(false, "ldmvfi_fast::dsepconv: double backward is not supported");
    return {};
  }
};

at::Tensor dsepconv_autograd(const at::Tensor& input, const at::Tensor& vertical, const at::Tensor& horizontal,
                             const at::Tensor& offset_x, const at::Tensor& offset_y, const at::Tensor& mask) {
  return DSepConvFunction::apply(input, vertical, horizontal, offset_x, offset_y, mask)[0];
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsepconv_backward_autograd(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& vertical,
    const at::Tensor& horizontal, const at::Tensor& offset_x, const at::Tensor& offset_y,
    const at::Tensor& mask) {
  auto g = DSepConvBackwardFunction::apply(grad_out, input, vertical, horizontal, offset_x, offset_y, mask);
  return {g[0], g[1], g[2], g[3], g[4], g[5]};
}

}  // namespace

TORCH_LIBRARY_IMPL(ldmvfi_fast, Autograd, m) {
  m.impl("dsepconv", &dsepconv_autograd);
  m.impl("dsepconv_backward", &dsepconv_backward_autograd);
}

}  // namespace ops
}  // namespace ldmvfi_fast
