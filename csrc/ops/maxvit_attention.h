// Argument checks of maxvit_attention (schema: csrc/ops/schemas.cpp), shared by the CPU
// and CUDA kernels so a wrong call fails with the same message on every device. Device and
// dtype support differ per backend and are checked by each kernel.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace ldmvfi_fast {
namespace ops {
namespace detail {

inline void check_maxvit_attention_args(const char* op, const at::Tensor& q, const at::Tensor& k,
                                        const at::Tensor& v, const at::Tensor& bias_table, int64_t window,
                                        int64_t num_heads) {
  TORCH_CHECK(q.dim() == 4, op, ": q must be (B, H, W, C), got shape ", q.sizes());
  TORCH_CHECK(k.sizes() == q.sizes() && v.sizes() == q.sizes(), op, ": q, k, v must have the same shape, got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), op,
              ": q, k, v must have the same dtype, got ", q.scalar_type(), ", ", k.scalar_type(), ", ",
              v.scalar_type());
  for (const at::Tensor* t : {&k, &v, &bias_table})
    TORCH_CHECK(t->device() == q.device(), op, ": all tensors must be on ", q.device(), ", got ", t->device());
  TORCH_CHECK(bias_table.is_floating_point(), op, ": bias_table must be floating, got ", bias_table.scalar_type());
  const int64_t H = q.size(1), W = q.size(2), C = q.size(3);
  TORCH_CHECK(window >= 1 && window <= 8, op, ": window must be in [1, 8], got ", window);
  TORCH_CHECK(H % window == 0 && W % window == 0, op, ": H=", H, " and W=", W,
              " must be multiples of the window size ", window);
  TORCH_CHECK(num_heads >= 1 && C % num_heads == 0, op, ": C=", C, " is not divisible by num_heads=", num_heads);
  TORCH_CHECK(bias_table.dim() == 2 && bias_table.size(0) == (2 * window - 1) * (2 * window - 1) &&
                  bias_table.size(1) == num_heads,
              op, ": bias_table must be (", (2 * window - 1) * (2 * window - 1), ", ", num_heads, "), got ",
              bias_table.sizes());
}

}  // namespace detail
}  // namespace ops
}  // namespace ldmvfi_fast
