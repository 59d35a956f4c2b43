// CUDA kernel of the torch op decoder_output (schema: csrc/ops/schemas.cpp): the decoder's
// two DSepConv warps of the UNPADDED frames (replication padding by index clamping), the
// mask blend (m, 1 - m) and the residual in one pass. Kernel and design note:
// csrc/kernels/dsepconv.cuh (same code as the CMake library). Forward only.
// float32, float64, float16, bfloat16 (computed in float32; float64 in float64).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
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


at::Tensor decoder_output_cuda(const at::Tensor& frame0, const at::Tensor& frame1, const at::Tensor& vertical0,
                               const at::Tensor& horizontal0, const at::Tensor& offset_x0,
                               const at::Tensor& offset_y0, const at::Tensor& vertical1,
                               const at::Tensor& horizontal1, const at::Tensor& offset_x1,
                               const at::Tensor& offset_y1, const at::Tensor& mask, const at::Tensor& residual) {
  const auto d = detail::check_decoder_output_args(frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0,
                                                   vertical1, horizontal1, offset_x1, offset_y1, mask, residual);
  TORCH_CHECK(frame0.is_cuda(), "decoder_output (CUDA kernel): tensors must be on a CUDA device, got ",
              frame0.device());
  TORCH_CHECK(ldmvfi::kernels::detail::check_dims(d.B, d.C, d.K, d.H, d.W) == cudaSuccess,
              "decoder_output (CUDA kernel): sizes exceed the kernel's limits (K*K*H*W and "
              "4*(H+K-1)*(W+K-1) below 2^31); use another backend");
  const c10::cuda::CUDAGuard guard(frame0.device());
  const at::Tensor ts[12] = {frame0.contiguous(),    frame1.contiguous(),    vertical0.contiguous(),
                             horizontal0.contiguous(), offset_x0.contiguous(), offset_y0.contiguous(),
                             vertical1.contiguous(),  horizontal1.contiguous(), offset_x1.contiguous(),
                             offset_y1.contiguous(),  mask.contiguous(),     residual.contiguous()};
  auto out = at::empty({d.B, d.C, d.H, d.W}, ts[0].options());
  if (out.numel() == 0) return out;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, ts[0].scalar_type(), "decoder_output_cuda", [&] {
    using T = typename CudaType<scalar_t>::type;
    const cudaError_t err = ldmvfi::kernels::launch_decoder_output<T>(
        cptr<T>(ts[0]), cptr<T>(ts[1]), cptr<T>(ts[2]), cptr<T>(ts[3]), cptr<T>(ts[4]), cptr<T>(ts[5]),
        cptr<T>(ts[6]), cptr<T>(ts[7]), cptr<T>(ts[8]), cptr<T>(ts[9]), cptr<T>(ts[10]), cptr<T>(ts[11]),
        reinterpret_cast<T*>(out.mutable_data_ptr()), d.B, d.C, d.K, d.H, d.W, stream);
    TORCH_CHECK(err == cudaSuccess, "decoder_output (CUDA kernel): launch failed: ", cudaGetErrorString(err));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ldmvfi_fast, CUDA, m) { m.impl("decoder_output", &decoder_output_cuda); }

}  // namespace cuda
}  // namespace ops
}  // namespace ldmvfi_fast
