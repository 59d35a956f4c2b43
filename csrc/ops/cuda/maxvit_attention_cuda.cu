// CUDA kernel of the torch op maxvit_attention (schema: csrc/ops/schemas.cpp): fused
// block / grid windowed attention on channel-last (B, H, W, C) q, k, v. Kernel and design
// note: csrc/kernels/maxvit_attention.cuh (same code as the CMake library).
//
// q, k, v may have any strides as long as the channel stride is 1 (e.g. slices of one
// qkv projection): they are read in place; otherwise a contiguous copy is made. The bias
// table is converted to a float32 contiguous copy (it is tiny). Output: contiguous
// (B, H, W, C) in q's dtype. float32, float16, bfloat16 (fp32 arithmetic);
// window <= 8, head_dim % 32 == 0.
#include <ATen/core/Tensor.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../../kernels/maxvit_attention.cuh"
#include "../maxvit_attention.h"

namespace ldmvfi_fast {
namespace ops {
namespace cuda {
namespace {

// Keeps a (B, H, W, C) tensor as is when its channel stride is 1, else copies it.
at::Tensor channel_contiguous(const at::Tensor& t) {
  return (t.stride(3) == 1 || t.size(3) <= 1) ? t : t.contiguous();
}

template <typename T>
void run(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& bias, at::Tensor& out,
         int64_t window, bool grid, int64_t heads, double scale) {
  const int64_t qs[3] = {q.stride(0), q.stride(1), q.stride(2)};
  const int64_t ks[3] = {k.stride(0), k.stride(1), k.stride(2)};
  const int64_t vs[3] = {v.stride(0), v.stride(1), v.stride(2)};
  const int64_t os[3] = {out.stride(0), out.stride(1), out.stride(2)};
  const cudaError_t err = ldmvfi::kernels::launch_maxvit_attention<T>(
      reinterpret_cast<const T*>(q.const_data_ptr()), qs, reinterpret_cast<const T*>(k.const_data_ptr()), ks,
      reinterpret_cast<const T*>(v.const_data_ptr()), vs, bias.const_data_ptr<float>(),
      reinterpret_cast<T*>(out.mutable_data_ptr()), os, q.size(0), q.size(1), q.size(2), q.size(3), window, grid,
      heads, static_cast<float>(scale), at::cuda::getCurrentCUDAStream());
  TORCH_CHECK(err == cudaSuccess, "maxvit_attention (CUDA kernel): launch failed: ", cudaGetErrorString(err));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

at::Tensor maxvit_attention_cuda(const at::Tensor& q_, const at::Tensor& k_, const at::Tensor& v_,
                                 const at::Tensor& bias_table, int64_t window, bool grid, int64_t num_heads,
                                 double scale) {
  const char* op = "maxvit_attention (CUDA kernel)";
  detail::check_maxvit_attention_args(op, q_, k_, v_, bias_table, window, num_heads);
  const auto dtype = q_.scalar_type();
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": q, k, v must be float32, float16 or bfloat16, got ", dtype);
  TORCH_CHECK(q_.is_cuda(), op, ": tensors must be on a CUDA device, got ", q_.device());
  const int64_t B = q_.size(0), H = q_.size(1), W = q_.size(2), C = q_.size(3);
  TORCH_CHECK((C / num_heads) % 32 == 0, op, ": head_dim = C / num_heads = ", C / num_heads,
              " must be a multiple of 32");
  const c10::cuda::CUDAGuard guard(q_.device());
  const auto q = channel_contiguous(q_);
  const auto k = channel_contiguous(k_);
  const auto v = channel_contiguous(v_);
  const auto bias = bias_table.to(at::kFloat).contiguous();
  auto out = at::empty({B, H, W, C}, q_.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  switch (dtype) {
    case at::kFloat: run<float>(q, k, v, bias, out, window, grid, num_heads, scale); break;
    case at::kHalf: run<__half>(q, k, v, bias, out, window, grid, num_heads, scale); break;
    default: run<__nv_bfloat16>(q, k, v, bias, out, window, grid, num_heads, scale); break;
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ldmvfi_fast, CUDA, m) { m.impl("maxvit_attention", &maxvit_attention_cuda); }

}  // namespace cuda
}  // namespace ops
}  // namespace ldmvfi_fast
