// Geometry of one DSepConv tap, shared by the CPU kernels (dsepconv, decoder_output).
//
// The one documented definition is tap_position / tap_corners in
// ldmvfi_fast/ops/dsepconv_ref.py; this restates it operation for operation, in the same
// float order, so the CPU kernels match the reference to rounding:
//   ux = (((offset_y + x) + j) - half) + 1      (offset_y displaces columns)
//   uy = (((offset_x + y) + i) - half) + 1      (offset_x displaces rows)
//   px = clamp(ux, 0, Win-1); left = clamp(floor(ux)), right = clamp(floor(ux) + 1)
//   wl = 1 + (left - px); wr = 1 - (right - px)          (same for rows)
// floor() uses the *unclamped* position; a clamped sample counts the edge twice.
#pragma once

#include <cmath>
#include <cstdint>

namespace ldmvfi_fast {
namespace ops {
namespace cpu {

// clamp that propagates NaN like torch.clamp (used for the weights)
template <typename T>
inline T clamp_value(T v, T lo, T hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

// clamp to a valid index; NaN -> lo (memory safety; the weights stay NaN)
template <typename T>
inline int64_t clamp_index(T v, T hi) {
  return static_cast<int64_t>(!(v >= T(0)) ? T(0) : (v > hi ? hi : v));
}

// floor(v) where only clamp(floor(v), 0, hi) and clamp(floor(v) + 1, 0, hi) are used:
// v is first clamped into [-2, hi + 2] (those clamps give the same results there), so the
// integer truncation is exact and no libm call is needed. NaN stays NaN.
template <typename T>
inline T bounded_floor(T v, T hi) {
  if (v != v) return v;  // NaN
  const T b = v < T(-2) ? T(-2) : (v > hi + T(2) ? hi + T(2) : v);
  const T t = static_cast<T>(static_cast<int64_t>(b));
  return t > b ? t - T(1) : t;
}

template <typename T>
struct Tap {
  int64_t top, bottom, left, right;  // corner indices in the (padded) input, clamped
  T wl, wr, wt, wb;                  // bilinear weights from the clamped position
  bool x_inside, y_inside;           // unclamped position inside [0, size-1]: offset gradient passes
};

template <typename T>
inline Tap<T> make_tap(T offset_x, T offset_y, int64_t y, int64_t x, int64_t i, int64_t j, int64_t half,
                       int64_t Hin, int64_t Win) {
  Tap<T> t;
  const T ux = (((offset_y + static_cast<T>(x)) + static_cast<T>(j)) - static_cast<T>(half)) + T(1);
  const T uy = (((offset_x + static_cast<T>(y)) + static_cast<T>(i)) - static_cast<T>(half)) + T(1);
  const T xmax = static_cast<T>(Win - 1);
  const T ymax = static_cast<T>(Hin - 1);
  const T px = clamp_value(ux, T(0), xmax);
  const T py = clamp_value(uy, T(0), ymax);
  const T fx = bounded_floor(ux, xmax);
  const T fy = bounded_floor(uy, ymax);
  const T left = clamp_value(fx, T(0), xmax);
  const T right = clamp_value(fx + T(1), T(0), xmax);
  const T top = clamp_value(fy, T(0), ymax);
  const T bottom = clamp_value(fy + T(1), T(0), ymax);
  t.wl = T(1) + (left - px);
  t.wr = T(1) - (right - px);
  t.wt = T(1) + (top - py);
  t.wb = T(1) - (bottom - py);
  t.left = clamp_index(fx, xmax);
  t.right = clamp_index(fx + T(1), xmax);
  t.top = clamp_index(fy, ymax);
  t.bottom = clamp_index(fy + T(1), ymax);
  // torch.clamp's gradient passes where lo <= u <= hi (inclusive)
  t.x_inside = ux >= T(0) && ux <= xmax;
  t.y_inside = uy >= T(0) && uy <= ymax;
  return t;
}

// Bilinear sample of a plane in the reference's order:
// ((tl*wl)*wt + (tr*wr)*wt) + (bl*wl)*wb + (br*wr)*wb
template <typename T>
inline T bilinear(T tl, T tr, T bl, T br, const Tap<T>& t) {
  return tl * t.wl * t.wt + tr * t.wr * t.wt + bl * t.wl * t.wb + br * t.wr * t.wb;
}

}  // namespace cpu
}  // namespace ops
}  // namespace ldmvfi_fast
