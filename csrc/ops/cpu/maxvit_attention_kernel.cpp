// CPU kernel of maxvit_attention (schema: csrc/ops/schemas.cpp; semantics:
// ldmvfi_fast/ops/maxvit_ref.py).
//
// Design note: a plain, exact implementation, one task per (window, head) spread over
// threads with at::parallel_for. Window tokens are gathered from the channel-last
// (B, H, W, C) tensors by index arithmetic (block: row = X*w + i; grid: row = i*(H/w) + X;
// the same for columns), so there is no rearrange copy; scores, softmax and the weighted
// sum are computed in float32 (float64 for float64 tensors). It exists so the op has a
// kernel on every device (opcheck, C++ callers); for speed on CPU the dispatcher keeps the
// reference, whose batched BLAS matmuls are faster. Limits: window <= 8; float32/float64.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../maxvit_attention.h"

namespace ldmvfi_fast {
namespace ops {
namespace cpu {
namespace {

template <typename scalar_t>
void attention_kernel(const scalar_t* q, const scalar_t* k, const scalar_t* v, const scalar_t* bias, scalar_t* out,
                      int64_t B, int64_t H, int64_t W, int64_t C, int64_t w, bool grid, int64_t heads,
                      double scale) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t nh = H / w, nw = W / w, n = w * w, d = C / heads, span = 2 * w - 1;
  at::parallel_for(0, B * nh * nw * heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> tok(n);
    std::vector<acc_t> s(n * n);
    for (int64_t idx = begin; idx < end; ++idx) {
      const int64_t head = idx % heads, win = idx / heads;
      const int64_t Y = win % nw, X = (win / nw) % nh, b = win / (nw * nh);
      for (int64_t p = 0; p < n; ++p) {
        const int64_t i = p / w, j = p % w;
        const int64_t row = grid ? i * nh + X : X * w + i;
        const int64_t col = grid ? j * nw + Y : Y * w + j;
        tok[p] = ((b * H + row) * W + col) * C + head * d;
      }
      for (int64_t p = 0; p < n; ++p) {
        acc_t mx = -INFINITY;
        for (int64_t r = 0; r < n; ++r) {
          acc_t acc = 0;
          for (int64_t c = 0; c < d; ++c)
            acc += static_cast<acc_t>(q[tok[p] + c]) * static_cast<acc_t>(scale) * static_cast<acc_t>(k[tok[r] + c]);
          const int64_t rel = (p / w - r / w + w - 1) * span + (p % w - r % w + w - 1);
          acc += static_cast<acc_t>(bias[rel * heads + head]);
          s[p * n + r] = acc;
          mx = std::max(mx, acc);
        }
        acc_t sum = 0;
        for (int64_t r = 0; r < n; ++r) {
          s[p * n + r] = std::exp(s[p * n + r] - mx);
          sum += s[p * n + r];
        }
        for (int64_t c = 0; c < d; ++c) {
          acc_t acc = 0;
          for (int64_t r = 0; r < n; ++r) acc += s[p * n + r] * static_cast<acc_t>(v[tok[r] + c]);
          out[tok[p] + c] = static_cast<scalar_t>(acc / sum);
        }
      }
    }
  });
}

at::Tensor maxvit_attention_cpu(const at::Tensor& q_, const at::Tensor& k_, const at::Tensor& v_,
                                const at::Tensor& bias_table, int64_t window, bool grid, int64_t num_heads,
                                double scale) {
  const char* op = "maxvit_attention (CPU kernel)";
  detail::check_maxvit_attention_args(op, q_, k_, v_, bias_table, window, num_heads);
  TORCH_CHECK(q_.device().is_cpu(), op, ": tensors must be on the CPU, got ", q_.device());
  TORCH_CHECK(q_.scalar_type() == at::kFloat || q_.scalar_type() == at::kDouble, op,
              ": q, k, v must be float32 or float64, got ", q_.scalar_type());
  const auto q = q_.contiguous(), k = k_.contiguous(), v = v_.contiguous();
  const auto bias = bias_table.to(q_.scalar_type()).contiguous();
  auto out = at::empty(q.sizes(), q.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "maxvit_attention_cpu", [&] {
    attention_kernel<scalar_t>(q.const_data_ptr<scalar_t>(), k.const_data_ptr<scalar_t>(),
                               v.const_data_ptr<scalar_t>(), bias.const_data_ptr<scalar_t>(),
                               out.mutable_data_ptr<scalar_t>(), q.size(0), q.size(1), q.size(2), q.size(3), window,
                               grid, num_heads, scale);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ldmvfi_fast, CPU, m) { m.impl("maxvit_attention", &maxvit_attention_cpu); }

}  // namespace cpu
}  // namespace ops
}  // namespace ldmvfi_fast
