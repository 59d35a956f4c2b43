// Schemas of every op in the `ldmvfi_fast` namespace, registered once.
//
// Backends register kernels against these exact schemas in their own files:
//   csrc/ops/cpu/*_kernel.cpp       TORCH_LIBRARY_IMPL(ldmvfi_fast, CPU, m)
//   csrc/ops/cuda/*_kernel.cu       TORCH_LIBRARY_IMPL(ldmvfi_fast, CUDA, m)
//   csrc/ops/autograd/*_autograd.cpp TORCH_LIBRARY_IMPL(ldmvfi_fast, Autograd, m)
// Fake (meta) kernels for torch.compile / torch.export are in ldmvfi_fast/ops/_native.py.
// Changing a schema here means changing every kernel, the fake kernel and the tests.
#include <torch/library.h>

TORCH_LIBRARY(ldmvfi_fast, m) {
  // input (B, C, H+K-1, W+K-1); vertical, horizontal (B, K, H, W);
  // offset_x, offset_y, mask (B, K*K, H, W)  ->  (B, C, H, W)
  m.def(
      "dsepconv(Tensor input, Tensor vertical, Tensor horizontal, Tensor offset_x, "
      "Tensor offset_y, Tensor mask) -> Tensor");
  // grad_out (B, C, H, W) -> gradients of (input, vertical, horizontal, offset_x, offset_y, mask)
  m.def(
      "dsepconv_backward(Tensor grad_out, Tensor input, Tensor vertical, Tensor horizontal, "
      "Tensor offset_x, Tensor offset_y, Tensor mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  // frame0, frame1, residual (B, C, H, W) unpadded; heads (B, K, H, W) / (B, K*K, H, W) -> (B, C, H, W)
  m.def(
      "decoder_output(Tensor frame0, Tensor frame1, Tensor vertical0, Tensor horizontal0, "
      "Tensor offset_x0, Tensor offset_y0, Tensor vertical1, Tensor horizontal1, Tensor offset_x1, "
      "Tensor offset_y1, Tensor mask, Tensor residual) -> Tensor");
  // q, k, v (B, H, W, C) channel-last; bias_table ((2w-1)^2, heads) -> (B, H, W, C). Forward only.
  m.def(
      "maxvit_attention(Tensor q, Tensor k, Tensor v, Tensor bias_table, int window, bool grid, "
      "int num_heads, float scale) -> Tensor");
}
