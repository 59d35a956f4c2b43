// CUDA kernels of the torch ops dsepconv / dsepconv_backward (schemas: csrc/ops/schemas.cpp).
//
// Glue only: argument checks (shared with the CPU kernels, csrc/ops/dsepconv.h), device
// guard, contiguous copies where needed, output allocation, dtype dispatch, and a launch
// on the current stream of the torch-free templates in csrc/kernels/dsepconv.cuh (the same
// code as the CMake library). float32, float64, float16, bfloat16 (computed in float32;
// float64 in float64, for gradcheck).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../../kernels/dsepconv.cuh"
#include "../dsepconv.h"
#include "torch_cuda_types.cuh"

namespace ldmvfi_fast {
namespace ops {
namespace cuda {
namespace {


void check_cuda(const char* op, const at::Tensor& input) {
  TORCH_CHECK(input.is_cuda(), op, " (CUDA kernel): tensors must be on a CUDA device, got ", input.device());
}

// The kernels use 32-bit offsets inside a (batch, channel chunk): say so instead of a bare
// "invalid argument" from the launcher.
void check_sizes(const char* op, int64_t B, int64_t C, int64_t K, int64_t H, int64_t W) {
  TORCH_CHECK(ldmvfi::kernels::detail::check_dims(B, C, K, H, W) == cudaSuccess, op,
              " (CUDA kernel): sizes B=", B, " C=", C, " K=", K, " H=", H, " W=", W,
              " exceed the kernel's limits (K*K*H*W and 4*(H+K-1)*(W+K-1) below 2^31); use another backend");
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, " (CUDA kernel): launch failed: ", cudaGetErrorString(err));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor dsepconv_cuda(const at::Tensor& input_, const at::Tensor& vertical_, const at::Tensor& horizontal_,
                         const at::Tensor& offset_x_, const at::Tensor& offset_y_, const at::Tensor& mask_) {
  const auto d = detail::check_dsepconv_args(input_, vertical_, horizontal_, offset_x_, offset_y_, mask_);
  check_cuda("dsepconv", input_);
  check_sizes("dsepconv", d.B, d.C, d.K, d.H, d.W);
  const c10::cuda::CUDAGuard guard(input_.device());
  const auto input = input_.contiguous();
  const auto vertical = vertical_.contiguous();
  const auto horizontal = horizontal_.contiguous();
  const auto offset_x = offset_x_.contiguous();
  const auto offset_y = offset_y_.contiguous();
  const auto mask = mask_.contiguous();
  auto out = at::empty({d.B, d.C, d.H, d.W}, input.options());
  if (out.numel() == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dsepconv_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    check_launch("dsepconv", ldmvfi::kernels::launch_dsepconv_forward<T>(
                                 cptr<T>(input), cptr<T>(vertical), cptr<T>(horizontal), cptr<T>(offset_x),
                                 cptr<T>(offset_y), cptr<T>(mask), mptr<T>(out), d.B, d.C, d.K, d.H, d.W, stream));
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsepconv_backward_cuda(
    const at::Tensor& grad_out_, const at::Tensor& input_, const at::Tensor& vertical_,
    const at::Tensor& horizontal_, const at::Tensor& offset_x_, const at::Tensor& offset_y_,
    const at::Tensor& mask_) {
  const char* op = "dsepconv_backward";
  const auto d = detail::check_dsepconv_args(input_, vertical_, horizontal_, offset_x_, offset_y_, mask_, op);
  detail::check_common(op, input_, "grad_out", grad_out_);
  detail::check_shape(op, "grad_out", grad_out_, {d.B, d.C, d.H, d.W});
  check_cuda(op, input_);
  check_sizes(op, d.B, d.C, d.K, d.H, d.W);
  TORCH_CHECK(d.K == 5 || d.K <= ldmvfi::kernels::kMaxRuntimeK, op, " (CUDA kernel): K = ", d.K,
              " is not supported (K = 5 or K <= ", ldmvfi::kernels::kMaxRuntimeK, ")");
  const c10::cuda::CUDAGuard guard(input_.device());
  const auto grad_out = grad_out_.contiguous();
  const auto input = input_.contiguous();
  const auto vertical = vertical_.contiguous();
  const auto horizontal = horizontal_.contiguous();
  const auto offset_x = offset_x_.contiguous();
  const auto offset_y = offset_y_.contiguous();
  const auto mask = mask_.contiguous();
  // The input gradient is a scatter (atomicAdd): accumulate in float32 (float64 for
  // float64) and cast back. The other gradients are written in full by the kernel.
  const auto acc_dtype = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto g_input_acc = at::zeros(input.sizes(), input.options().dtype(acc_dtype));
  auto g_vertical = at::empty(vertical.sizes(), vertical.options());
  auto g_horizontal = at::empty(horizontal.sizes(), horizontal.options());
  auto g_offset_x = at::empty(offset_x.sizes(), offset_x.options());
  auto g_offset_y = at::empty(offset_y.sizes(), offset_y.options());
  auto g_mask = at::empty(mask.sizes(), mask.options());
  if (d.B > 0 && d.H > 0 && d.W > 0) {
    const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "dsepconv_backward_cuda", [&] {
      using T = typename CudaType<scalar_t>::type;
      using A = typename ldmvfi::kernels::Acc<T>::type;
      check_launch(op, ldmvfi::kernels::launch_dsepconv_backward<T>(
                           cptr<T>(grad_out), cptr<T>(input), cptr<T>(vertical), cptr<T>(horizontal),
                           cptr<T>(offset_x), cptr<T>(offset_y), cptr<T>(mask), mptr<A>(g_input_acc),
                           mptr<T>(g_vertical), mptr<T>(g_horizontal), mptr<T>(g_offset_x), mptr<T>(g_offset_y),
                           mptr<T>(g_mask), d.B, d.C, d.K, d.H, d.W, stream));
    });
  }
  auto g_input = g_input_acc.scalar_type() == input.scalar_type() ? g_input_acc
                                                                   : g_input_acc.to(input.scalar_type());
  return {g_input, g_vertical, g_horizontal, g_offset_x, g_offset_y, g_mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(ldmvfi_fast, CUDA, m) {
  m.impl("dsepconv", &dsepconv_cuda);
  m.impl("dsepconv_backward", &dsepconv_backward_cuda);
}

}  // namespace cuda
}  // namespace ops
}  // namespace ldmvfi_fast
