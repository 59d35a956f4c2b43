// C++ API and argument checks of the DSepConv ops (schemas: csrc/ops/schemas.cpp).
//
// Every backend kernel calls check_dsepconv_args / check_decoder_output_args first, so a
// wrong call fails with the same TORCH_CHECK message on every device.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <tuple>

namespace ldmvfi_fast {
namespace ops {

// Calls through the dispatcher (any device, autograd included).
at::Tensor dsepconv(const at::Tensor& input, const at::Tensor& vertical, const at::Tensor& horizontal,
                    const at::Tensor& offset_x, const at::Tensor& offset_y, const at::Tensor& mask);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> dsepconv_backward(
    const at::Tensor& grad_out, const at::Tensor& input, const at::Tensor& vertical,
    const at::Tensor& horizontal, const at::Tensor& offset_x, const at::Tensor& offset_y,
    const at::Tensor& mask);

at::Tensor decoder_output(const at::Tensor& frame0, const at::Tensor& frame1, const at::Tensor& vertical0,
                          const at::Tensor& horizontal0, const at::Tensor& offset_x0,
                          const at::Tensor& offset_y0, const at::Tensor& vertical1,
                          const at::Tensor& horizontal1, const at::Tensor& offset_x1,
                          const at::Tensor& offset_y1, const at::Tensor& mask, const at::Tensor& residual);

namespace detail {

struct DSepConvDims {
  int64_t B, C, K, H, W, Hin, Win;
};

// Same dtype, same device, 4-D, floating point.
inline void check_common(const char* op, const at::Tensor& ref, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is an undefined tensor");
  TORCH_CHECK(t.dim() == 4, op, ": ", name, " must be 4-D (B, ., H, W), got shape ", t.sizes());
  TORCH_CHECK(t.is_floating_point(), op, ": ", name, " must be a floating tensor, got ", t.scalar_type());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": all tensors must have the same dtype; got ",
              ref.scalar_type(), " and ", name, " ", t.scalar_type());
  TORCH_CHECK(t.device() == ref.device(), op, ": all tensors must be on the same device; got ", ref.device(),
              " and ", name, " on ", t.device());
}

inline void check_shape(const char* op, const char* name, const at::Tensor& t, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, op, ": ", name, " must have shape ", expected, ", got ", t.sizes());
}

// input (B, C, H+K-1, W+K-1); vertical, horizontal (B, K, H, W); offsets, mask (B, K*K, H, W).
inline DSepConvDims check_dsepconv_args(const at::Tensor& input, const at::Tensor& vertical,
                                        const at::Tensor& horizontal, const at::Tensor& offset_x,
                                        const at::Tensor& offset_y, const at::Tensor& mask,
                                        const char* op = "dsepconv") {
  check_common(op, input, "input", input);
  check_common(op, input, "vertical", vertical);
  check_common(op, input, "horizontal", horizontal);
  check_common(op, input, "offset_x", offset_x);
  check_common(op, input, "offset_y", offset_y);
  check_common(op, input, "mask", mask);
  DSepConvDims d;
  d.B = input.size(0);
  d.C = input.size(1);
  d.Hin = input.size(2);
  d.Win = input.size(3);
  d.K = vertical.size(1);
  d.H = vertical.size(2);
  d.W = vertical.size(3);
  TORCH_CHECK(d.K >= 1, op, ": kernel size K = vertical.size(1) must be >= 1, got ", d.K);
  check_shape(op, "vertical", vertical, {d.B, d.K, d.H, d.W});
  check_shape(op, "horizontal", horizontal, {d.B, d.K, d.H, d.W});
  check_shape(op, "offset_x", offset_x, {d.B, d.K * d.K, d.H, d.W});
  check_shape(op, "offset_y", offset_y, {d.B, d.K * d.K, d.H, d.W});
  check_shape(op, "mask", mask, {d.B, d.K * d.K, d.H, d.W});
  TORCH_CHECK(d.Hin == d.H + d.K - 1 && d.Win == d.W + d.K - 1, op,
              ": input must be the output size padded by K-1=", d.K - 1, ": expected spatial (",
              d.H + d.K - 1, ", ", d.W + d.K - 1, "), got (", d.Hin, ", ", d.Win, ")");
  return d;
}

// frame0, frame1, residual (B, C, H, W); vertical*, horizontal* (B, K, H, W), K odd;
// offset_*, mask (B, K*K, H, W). Returned Hin, Win are the replication-padded sizes.
inline DSepConvDims check_decoder_output_args(
    const at::Tensor& frame0, const at::Tensor& frame1, const at::Tensor& vertical0,
    const at::Tensor& horizontal0, const at::Tensor& offset_x0, const at::Tensor& offset_y0,
    const at::Tensor& vertical1, const at::Tensor& horizontal1, const at::Tensor& offset_x1,
    const at::Tensor& offset_y1, const at::Tensor& mask, const at::Tensor& residual) {
  const char* op = "decoder_output";
  const at::Tensor* ts[] = {&frame0,    &frame1,      &vertical0, &horizontal0, &offset_x0, &offset_y0,
                            &vertical1, &horizontal1, &offset_x1, &offset_y1,   &mask,      &residual};
  const char* names[] = {"frame0",    "frame1",      "vertical0", "horizontal0", "offset_x0", "offset_y0",
                         "vertical1", "horizontal1", "offset_x1", "offset_y1",   "mask",      "residual"};
  for (int i = 0; i < 12; ++i) check_common(op, frame0, names[i], *ts[i]);
  DSepConvDims d;
  d.B = frame0.size(0);
  d.C = frame0.size(1);
  d.H = frame0.size(2);
  d.W = frame0.size(3);
  d.K = vertical0.size(1);
  TORCH_CHECK(d.K >= 1 && d.K % 2 == 1, op, ": kernel size K = vertical0.size(1) must be odd, got ", d.K);
  d.Hin = d.H + d.K - 1;
  d.Win = d.W + d.K - 1;
  const int64_t KK = d.K * d.K;
  check_shape(op, "frame1", frame1, {d.B, d.C, d.H, d.W});
  check_shape(op, "residual", residual, {d.B, d.C, d.H, d.W});
  for (int i : {2, 3, 6, 7}) check_shape(op, names[i], *ts[i], {d.B, d.K, d.H, d.W});
  for (int i : {4, 5, 8, 9, 10}) check_shape(op, names[i], *ts[i], {d.B, KK, d.H, d.W});
  return d;
}

}  // namespace detail
}  // namespace ops
}  // namespace ldmvfi_fast
