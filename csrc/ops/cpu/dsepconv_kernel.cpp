// CPU kernels of dsepconv (forward) and dsepconv_backward.
//
// Design: one pass over output pixels, parallel over (batch, row) with at::parallel_for.
// For each pixel and tap the sample position and bilinear weights are computed once and
// reused for every channel. The float operations follow ldmvfi_fast/ops/dsepconv_ref.py
// in the same order (see dsepconv_tap.h), so float32 results match the reference to ~1e-6.
//
// Backward (derived from the forward formula
//   out[c] = sum_tap bilinear(input[c], pos_tap) * v[i] * h[j] * mask[tap]):
//   * grads of vertical, horizontal, mask, offset_x, offset_y are per pixel: one parallel
//     pass over (batch, row), no races;
//   * the gradient of input is a scatter into the padded frame; it runs as a second pass
//     parallel over (batch, channel) planes, each thread owning whole planes
//     (deterministic, no atomics).
//   The bilinear weights depend on the clamped position; a clamped coordinate has zero
//   gradient with respect to its offset (torch.clamp passes it only for lo <= u <= hi);
//   floor() is piecewise constant and contributes nothing.
//
// Limits: float32 and float64 (half precision runs on CUDA or the reference). Inputs of
// any strides are made contiguous. Empty batches/sizes give empty/zero outputs.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../dsepconv.h"
#include "dsepconv_tap.h"

namespace ldmvfi_fast {
namespace ops {
namespace cpu {
namespace {

// NC > 0: channel count known at compile time (the model's 3-channel frames); 0: generic.
template <typename T, int NC>
void forward_impl(const detail::DSepConvDims& d, const T* input, const T* vertical, const T* horizontal,
                  const T* offset_x, const T* offset_y, const T* mask, T* out) {
  const int64_t B = d.B, C = NC > 0 ? NC : d.C, K = d.K, H = d.H, W = d.W, Hin = d.Hin, Win = d.Win;
  const int64_t KK = K * K, HW = H * W, plane_in = Hin * Win, half = (K - 1) / 2;
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, W * KK));
  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    // One output row at a time, taps in the outer loop: each inner loop streams through
    // a few contiguous rows (one offset/mask plane each) instead of K*K planes at once.
    std::vector<T> acc(C * W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H, y = row % H;
      const T* in_b = input + b * C * plane_in;
      const int64_t rk = b * K * HW + y * W, rkk = b * KK * HW + y * W;
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t i = 0; i < K; ++i) {
        const T* v_row = vertical + rk + i * HW;
        for (int64_t j = 0; j < K; ++j) {
          const int64_t tap = i * K + j;
          const T* h_row = horizontal + rk + j * HW;
          const T* ox_row = offset_x + rkk + tap * HW;
          const T* oy_row = offset_y + rkk + tap * HW;
          const T* m_row = mask + rkk + tap * HW;
          for (int64_t x = 0; x < W; ++x) {
            const T vi = v_row[x], hj = h_row[x], mt = m_row[x];
            const Tap<T> t = make_tap(ox_row[x], oy_row[x], y, x, i, j, half, Hin, Win);
            const int64_t itl = t.top * Win + t.left, itr = t.top * Win + t.right;
            const int64_t ibl = t.bottom * Win + t.left, ibr = t.bottom * Win + t.right;
            for (int64_t c = 0; c < C; ++c) {
              const T* pl = in_b + c * plane_in;
              const T val = bilinear(pl[itl], pl[itr], pl[ibl], pl[ibr], t);
              acc[c * W + x] = acc[c * W + x] + val * vi * hj * mt;
            }
          }
        }
      }
      T* out_row = out + b * C * HW + y * W;
      for (int64_t c = 0; c < C; ++c) std::copy(acc.begin() + c * W, acc.begin() + (c + 1) * W, out_row + c * HW);
    }
  });
}

template <typename T>
void backward_impl(const detail::DSepConvDims& d, const T* grad_out, const T* input, const T* vertical,
                   const T* horizontal, const T* offset_x, const T* offset_y, const T* mask, T* g_input,
                   T* g_vertical, T* g_horizontal, T* g_offset_x, T* g_offset_y, T* g_mask) {
  const int64_t B = d.B, C = d.C, K = d.K, H = d.H, W = d.W, Hin = d.Hin, Win = d.Win;
  const int64_t KK = K * K, HW = H * W, plane_in = Hin * Win, half = (K - 1) / 2;

  // Pass 1: per-pixel gradients (vertical, horizontal, offsets, mask).
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, W * KK * std::max<int64_t>(C, 1)));
  at::parallel_for(0, B * H, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> gv(K), gh(K);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H, y = row % H;
      const T* in_b = input + b * C * plane_in;
      const T* go_b = grad_out + b * C * HW;
      const int64_t kb = b * K * HW, kkb = b * KK * HW;
      for (int64_t x = 0; x < W; ++x) {
        const int64_t p = y * W + x;
        std::fill(gv.begin(), gv.end(), T(0));
        std::fill(gh.begin(), gh.end(), T(0));
        for (int64_t i = 0; i < K; ++i) {
          const T vi = vertical[kb + i * HW + p];
          for (int64_t j = 0; j < K; ++j) {
            const int64_t tap = i * K + j;
            const int64_t q = kkb + tap * HW + p;
            const T hj = horizontal[kb + j * HW + p];
            const T mt = mask[q];
            const Tap<T> t = make_tap(offset_x[q], offset_y[q], y, x, i, j, half, Hin, Win);
            const int64_t itl = t.top * Win + t.left, itr = t.top * Win + t.right;
            const int64_t ibl = t.bottom * Win + t.left, ibr = t.bottom * Win + t.right;
            T s = 0, sx = 0, sy = 0;  // sum_c g*val, sum_c g*dval/dpx, sum_c g*dval/dpy
            for (int64_t c = 0; c < C; ++c) {
              const T* pl = in_b + c * plane_in;
              const T g = go_b[c * HW + p];
              const T tl = pl[itl], tr = pl[itr], bl = pl[ibl], br = pl[ibr];
              s += g * bilinear(tl, tr, bl, br, t);
              sx += g * (t.wt * (tr - tl) + t.wb * (br - bl));
              sy += g * (t.wl * (bl - tl) + t.wr * (br - tr));
            }
            const T coef = vi * hj * mt;
            g_mask[q] = s * vi * hj;
            gv[i] += s * hj * mt;
            gh[j] += s * vi * mt;
            g_offset_y[q] = t.x_inside ? sx * coef : T(0);
            g_offset_x[q] = t.y_inside ? sy * coef : T(0);
          }
        }
        for (int64_t k = 0; k < K; ++k) {
          g_vertical[kb + k * HW + p] = gv[k];
          g_horizontal[kb + k * HW + p] = gh[k];
        }
      }
    }
  });

  // Pass 2: scatter into the input gradient, one (batch, channel) plane per task.
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / C;
      T* gpl = g_input + bc * plane_in;
      const T* go = grad_out + bc * HW;
      const int64_t kb = b * K * HW, kkb = b * KK * HW;
      for (int64_t y = 0; y < H; ++y) {
        for (int64_t x = 0; x < W; ++x) {
          const int64_t p = y * W + x;
          const T g = go[p];
          for (int64_t i = 0; i < K; ++i) {
            const T gvi = g * vertical[kb + i * HW + p];
            for (int64_t j = 0; j < K; ++j) {
              const int64_t q = kkb + (i * K + j) * HW + p;
              const T w = gvi * horizontal[kb + j * HW + p] * mask[q];
              const Tap<T> t = make_tap(offset_x[q], offset_y[q], y, x, i, j, half, Hin, Win);
              gpl[t.top * Win + t.left] += w * t.wl * t.wt;
              gpl[t.top * Win + t.right] += w * t.wr * t.wt;
              gpl[t.bottom * Win + t.left] += w * t.wl * t.wb;
              gpl[t.bottom * Win + t.right] += w * t.wr * t.wb;
            }
          }
        }
      }
    }
  });
}

at::Tensor dsepconv_cpu(const at::Tensor& input_, const at::Tensor& vertical_, const at::Tensor& horizontal_,
                        const at::Tensor& offset_x_, const at::Tensor& offset_y_, const at::Tensor& mask_) {
  const auto d = detail::check_dsepconv_args(input_, vertical_, horizontal_, offset_x_, offset_y_, mask_);
  TORCH_CHECK(input_.device().is_cpu(), "dsepconv (CPU kernel): tensors must be on the CPU, got ",
              input_.device());
  auto input = input_.contiguous();
  auto vertical = vertical_.contiguous();
  auto horizontal = horizontal_.contiguous();
  auto offset_x = offset_x_.contiguous();
  auto offset_y = offset_y_.contiguous();
  auto mask = mask_.contiguous();
  auto out = at::empty({d.B, d.C, d.H, d.W}, input.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "dsepconv_cpu", [&] {
    auto run = [&](auto nc) {
      forward_impl<scalar_t, decltype(nc)::value>(
          d, input.const_data_ptr<scalar_t>(), vertical.const_data_ptr<scalar_t>(),
          horizontal.const_data_ptr<scalar_t>(), offset_x.const_data_ptr<scalar_t>(),
          offset_y.const_data_ptr<scalar_t>(), mask.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>());
    };
    if (d.C == 3) {
      run(std::integral_constant<int, 3>{});
    } else {
      run(std::integral_constant<int, 0>{});
    }
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsepconv_backward_cpu(
    const at::Tensor& grad_out_, const at::Tensor& input_, const at::Tensor& vertical_,
    const at::Tensor& horizontal_, const at::Tensor& offset_x_, const at::Tensor& offset_y_,
    const at::Tensor& mask_) {
  const auto d = detail::check_dsepconv_args(input_, vertical_, horizontal_, offset_x_, offset_y_, mask_,
                                             "dsepconv_backward");
  TORCH_CHECK(input_.device().is_cpu(), "dsepconv_backward (CPU kernel): tensors must be on the CPU, got ",
              input_.device());
  detail::check_common("dsepconv_backward", input_, "grad_out", grad_out_);
  detail::check_shape("dsepconv_backward", "grad_out", grad_out_, {d.B, d.C, d.H, d.W});
  auto grad_out = grad_out_.contiguous();
  auto input = input_.contiguous();
  auto vertical = vertical_.contiguous();
  auto horizontal = horizontal_.contiguous();
  auto offset_x = offset_x_.contiguous();
  auto offset_y = offset_y_.contiguous();
  auto mask = mask_.contiguous();
  auto g_input = at::zeros(input.sizes(), input.options());
  auto g_vertical = at::zeros(vertical.sizes(), vertical.options());
  auto g_horizontal = at::zeros(horizontal.sizes(), horizontal.options());
  auto g_offset_x = at::zeros(offset_x.sizes(), offset_x.options());
  auto g_offset_y = at::zeros(offset_y.sizes(), offset_y.options());
  auto g_mask = at::zeros(mask.sizes(), mask.options());
  if (d.B > 0 && d.H > 0 && d.W > 0) {
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "dsepconv_backward_cpu", [&] {
      backward_impl<scalar_t>(
          d, grad_out.const_data_ptr<scalar_t>(), input.const_data_ptr<scalar_t>(),
          vertical.const_data_ptr<scalar_t>(), horizontal.const_data_ptr<scalar_t>(),
          offset_x.const_data_ptr<scalar_t>(), offset_y.const_data_ptr<scalar_t>(),
          mask.const_data_ptr<scalar_t>(), g_input.mutable_data_ptr<scalar_t>(),
          g_vertical.mutable_data_ptr<scalar_t>(), g_horizontal.mutable_data_ptr<scalar_t>(),
          g_offset_x.mutable_data_ptr<scalar_t>(), g_offset_y.mutable_data_ptr<scalar_t>(),
          g_mask.mutable_data_ptr<scalar_t>());
    });
  }
  return {g_input, g_vertical, g_horizontal, g_offset_x, g_offset_y, g_mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(ldmvfi_fast, CPU, m) {
  m.impl("dsepconv", &dsepconv_cpu);
  m.impl("dsepconv_backward", &dsepconv_backward_cpu);
}

}  // namespace cpu
}  // namespace ops
}  // namespace ldmvfi_fast
