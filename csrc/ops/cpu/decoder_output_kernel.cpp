// CPU kernel of decoder_output: the decoder's two DSepConv warps, the mask blend and the
// residual, fused into one pass (forward only; the reference covers training):
//
//   out = (dsepconv(pad(frame0), v0, h0, a0, b0, m) + dsepconv(pad(frame1), v1, h1, a1, b1, 1 - m))
//         + residual
//
// pad() is replication padding by p = (K - 1) / 2. Instead of building padded copies, the
// tap positions are computed in padded coordinates (exactly as the reference) and each
// corner index is mapped back to the frame by clamping: padded (r, c) -> frame
// (clamp(r - p, 0, H-1), clamp(c - p, 0, W-1)). Float operations follow
// ldmvfi_fast/ops/decoder_output_ref.py in order (see dsepconv_tap.h).
//
// Parallel over (batch, row) with at::parallel_for. float32 and float64; any strides.
// Limits: K odd (the reference's padding needs it).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../dsepconv.h"
#include "dsepconv_tap.h"

namespace ldmvfi_fast {
namespace ops {
namespace cpu {
namespace {

template <typename T>
struct WarpArgs {
  const T* frame;  // (B, C, H, W)
  const T* vertical;
  const T* horizontal;
  const T* offset_x;
  const T* offset_y;
};

// NC > 0: channel count known at compile time (3 for RGB frames); 0: generic.
template <typename T, int NC>
void decoder_output_impl(const detail::DSepConvDims& d, const WarpArgs<T> warps[2], const T* mask,
                         const T* residual, T* out) {
  const int64_t B = d.B, C = NC > 0 ? NC : d.C, K = d.K, H = d.H, W = d.W, Hin = d.Hin, Win = d.Win;
  const int64_t KK = K * K, HW = H * W, half = (K - 1) / 2, pad = (K - 1) / 2;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, W * KK));
  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(2 * C);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H, y = row % H;
      const int64_t kb = b * K * HW, kkb = b * KK * HW;
      for (int64_t x = 0; x < W; ++x) {
        const int64_t p = y * W + x;
        std::fill(acc.begin(), acc.end(), T(0));
        for (int f = 0; f < 2; ++f) {
          const WarpArgs<T>& a = warps[f];
          const T* fr_b = a.frame + b * C * HW;
          T* acc_f = acc.data() + f * C;
          for (int64_t i = 0; i < K; ++i) {
            const T vi = a.vertical[kb + i * HW + p];
            for (int64_t j = 0; j < K; ++j) {
              const int64_t q = kkb + (i * K + j) * HW + p;
              const T hj = a.horizontal[kb + j * HW + p];
              const T mt = f == 0 ? mask[q] : T(1) - mask[q];
              const Tap<T> t = make_tap(a.offset_x[q], a.offset_y[q], y, x, i, j, half, Hin, Win);
              // padded index -> frame index (replication padding)
              const int64_t r0 = std::min(std::max<int64_t>(t.top - pad, 0), H - 1) * W;
              const int64_t r1 = std::min(std::max<int64_t>(t.bottom - pad, 0), H - 1) * W;
              const int64_t c0 = std::min(std::max<int64_t>(t.left - pad, 0), W - 1);
              const int64_t c1 = std::min(std::max<int64_t>(t.right - pad, 0), W - 1);
              for (int64_t c = 0; c < C; ++c) {
                const T* pl = fr_b + c * HW;
                const T val = bilinear(pl[r0 + c0], pl[r0 + c1], pl[r1 + c0], pl[r1 + c1], t);
                acc_f[c] = acc_f[c] + val * vi * hj * mt;
              }
            }
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          const int64_t o = (b * C + c) * HW + p;
          out[o] = (acc[c] + acc[C + c]) + residual[o];
        }
      }
    }
  });
}

at::Tensor decoder_output_cpu(const at::Tensor& frame0, const at::Tensor& frame1, const at::Tensor& vertical0,
                              const at::Tensor& horizontal0, const at::Tensor& offset_x0,
                              const at::Tensor& offset_y0, const at::Tensor& vertical1,
                              const at::Tensor& horizontal1, const at::Tensor& offset_x1,
                              const at::Tensor& offset_y1, const at::Tensor& mask, const at::Tensor& residual) {
  const auto d = detail::check_decoder_output_args(frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0,
                                                   vertical1, horizontal1, offset_x1, offset_y1, mask, residual);
  TORCH_CHECK(frame0.device().is_cpu(), "decoder_output (CPU kernel): tensors must be on the CPU, got ",
              frame0.device());
  at::Tensor ts[12] = {frame0.contiguous(),    frame1.contiguous(),    vertical0.contiguous(),
                       horizontal0.contiguous(), offset_x0.contiguous(), offset_y0.contiguous(),
                       vertical1.contiguous(), horizontal1.contiguous(), offset_x1.contiguous(),
                       offset_y1.contiguous(), mask.contiguous(),      residual.contiguous()};
  auto out = at::empty({d.B, d.C, d.H, d.W}, frame0.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(frame0.scalar_type(), "decoder_output_cpu", [&] {
    auto ptr = [&](int k) { return ts[k].const_data_ptr<scalar_t>(); };
    const WarpArgs<scalar_t> warps[2] = {{ptr(0), ptr(2), ptr(3), ptr(4), ptr(5)},
                                         {ptr(1), ptr(6), ptr(7), ptr(8), ptr(9)}};
    if (d.C == 3) {
      decoder_output_impl<scalar_t, 3>(d, warps, ptr(10), ptr(11), out.mutable_data_ptr<scalar_t>());
    } else {
      decoder_output_impl<scalar_t, 0>(d, warps, ptr(10), ptr(11), out.mutable_data_ptr<scalar_t>());
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(ldmvfi_fast, CPU, m) {
  m.impl("decoder_output", &decoder_output_cpu);
}

}  // namespace cpu
}  // namespace ops
}  // namespace ldmvfi_fast
