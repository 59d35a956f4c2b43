// Deformable separable convolution (DSepConv) and the fused decoder output of LDMVFI, as
// torch-free CUDA templates. Used by the CMake library (csrc/kernels/c_api.cu) and by the
// torch ops (csrc/ops/cuda/*.cu); both instantiate the same code.
//
// Semantics: ldmvfi_fast/ops/dsepconv_ref.py (the tap geometry is defined once there, in
// tap_position / tap_corners) and decoder_output_ref.py, including the
// quirks of the original kernel (tap origin pixel + tap - (K-1)/2 + 1; offset_x displaces
// rows, offset_y columns; the position is clamped into the input; the corners come from
// the floor of the UNclamped position, then are clamped; the bilinear weights use the
// clamped position; position computed as ((delta + x) + tap) - half + 1 in that order).
//
// Design
// * One thread per output pixel, blocks of 32 x 8 pixels (coalesced along x). For each tap
//   the sample geometry (corners, 4 bilinear weights, v*h*mask) is computed ONCE and
//   reused for every channel: the original kernel recomputed it per (channel, pixel).
//   Channels are processed 4 per thread (register accumulators); C > 4 runs as several
//   channel chunks along grid z.
// * K = 5 (LDMVFI) is a compile-time instantiation: the 25 taps are fully unrolled, so
//   the loads of the per-pixel planes (offsets, mask) are issued well ahead of their use
//   (memory-level parallelism). Other K run a generic loop (forward any K; backward
//   K <= kMaxRuntimeK).
// * Per-pixel planes (heads) are read exactly once: streaming loads (__ldcs, evict-first)
//   so that they do not evict the frames, which are gathered through the read-only path
//   (__ldg) and are re-read by up to K*K*4 neighbouring taps.
// * Arithmetic in float (double for double storage); float/half/bf16 storage.
// * decoder_output fuses: replication padding (by clamping the corner index instead of
//   building padded copies: padded p -> clamp(p - (K-1)/2, 0, size-1)), both warps, the
//   mask blend (m and 1 - m, mask read once per tap for both), and the residual. One pass
//   over 2*(K*K*2 + 2*K) + K*K + C planes per pixel (148 for K=5, C=3) + C written: it is
//   memory-bandwidth bound (~1.25 GB of traffic per 1080p frame in fp32) plus L1/L2
//   traffic for the gathers.
// * Backward: per-pixel gradients (vertical, horizontal, offsets, mask) are owned by the
//   pixel's thread (no races); the input gradient is a scatter done with atomicAdd into an
//   Acc<T> buffer (float for half/bf16: the caller casts it back). Not deterministic
//   bit-for-bit across runs (atomic order), within float rounding.
//
// * Instruction count (the kernels are issue-bound, not DRAM-bound): 32-bit offsets from
//   per-plane base pointers, fminf/fmaxf clamps with one NaN test per tap, one floor and
//   one float-to-int per axis (see tap_axis / make_tap).
//
// Limits: K*K*H*W < 2^31 and 4*(H+K-1)*(W+K-1) < 2^31 (32-bit offsets); B * ceil(C/4) is
// looped over grid z (no limit); K odd for decoder_output; backward with K != 5 needs K <= kMaxRuntimeK. The frame gathers are not
// staged in shared memory (the offsets are learned and unbounded); a channel-interleaved
// copy of the frames (one 16-byte gather per corner instead of 3) is the next step if
// profiling shows the gathers, not DRAM, limit decoder_output.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common.cuh"

namespace ldmvfi {
namespace kernels {

constexpr int kDSepBlockX = 32;
constexpr int kDSepBlockY = 8;
constexpr int kDSepChannelsPerThread = 4;
constexpr int kMaxRuntimeK = 15;  // backward, K other than the compiled ones

namespace detail {

template <typename A>
__device__ __forceinline__ A dev_floor(A v);
template <>
__device__ __forceinline__ float dev_floor<float>(float v) { return floorf(v); }
template <>
__device__ __forceinline__ double dev_floor<double>(double v) { return floor(v); }

// min / max that return the non-NaN operand (one FMNMX each, no compare + select)
template <typename A>
__device__ __forceinline__ A dev_min(A a, A b);
template <>
__device__ __forceinline__ float dev_min<float>(float a, float b) { return fminf(a, b); }
template <>
__device__ __forceinline__ double dev_min<double>(double a, double b) { return fmin(a, b); }
template <typename A>
__device__ __forceinline__ A dev_max(A a, A b);
template <>
__device__ __forceinline__ float dev_max<float>(float a, float b) { return fmaxf(a, b); }
template <>
__device__ __forceinline__ double dev_max<double>(double a, double b) { return fmax(a, b); }

template <typename A>
struct TapGeom {
  int fx, fy;                    // floor of the unclamped position, clamped to [-1, size-1]
  int top, bottom, left, right;  // corners in the (padded) input, clamped
  A wl, wr, wt, wb;              // bilinear weights from the clamped position
  bool x_inside, y_inside;       // unclamped position in [0, size-1]: offset gradient passes
};

// One axis: u the unclamped position, m = size - 1. Reference semantics (tap_corners):
// p = clamp(u, 0, m), lo = clamp(floor(u), 0, m), hi = clamp(floor(u) + 1, 0, m),
// weights 1 + (lo - p) and 1 - (hi - p). One floor and one float-to-int conversion per
// axis (the corner pair is max(f, 0), min(f + 1, m) in integers); fminf/fmaxf clamps map a
// NaN u to 0 (a valid index): make_tap's single NaN test restores NaN weights.
template <typename A>
__device__ __forceinline__ void tap_axis(A u, A m, int& f, A& w_lo, A& w_hi) {
  const A fl = dev_floor(u);
  const A p = dev_min(dev_max(u, A(0)), m);
  const A lo = dev_min(dev_max(fl, A(0)), m);
  const A hi = dev_min(dev_max(fl + A(1), A(0)), m);
  w_lo = A(1) + (lo - p);
  w_hi = A(1) - (hi - p);
  f = static_cast<int>(dev_min(dev_max(fl, A(-1)), m));  // integer-valued: exact conversion
}

// Geometry of tap (i, j) of output pixel (y, x); same float-op order as the reference.
template <typename A>
__device__ __forceinline__ TapGeom<A> make_tap(A offset_x, A offset_y, int y, int x, int i, int j, int half,
                                               int Hin, int Win) {
  TapGeom<A> t;
  const A ux = (((offset_y + static_cast<A>(x)) + static_cast<A>(j)) - static_cast<A>(half)) + A(1);
  const A uy = (((offset_x + static_cast<A>(y)) + static_cast<A>(i)) - static_cast<A>(half)) + A(1);
  const A xmax = static_cast<A>(Win - 1);
  const A ymax = static_cast<A>(Hin - 1);
  tap_axis(ux, xmax, t.fx, t.wl, t.wr);
  tap_axis(uy, ymax, t.fy, t.wt, t.wb);
  if (isnan(ux) || isnan(uy)) {  // NaN offset: NaN weights (torch.clamp keeps NaN)
    const A nan = ux + uy;
    t.wl = t.wr = t.wt = t.wb = nan;
  }
  t.left = max(t.fx, 0);
  t.right = min(t.fx + 1, Win - 1);
  t.top = max(t.fy, 0);
  t.bottom = min(t.fy + 1, Hin - 1);
  t.x_inside = ux >= A(0) && ux <= xmax;  // torch.clamp's gradient mask (inclusive)
  t.y_inside = uy >= A(0) && uy <= ymax;
  return t;
}

__device__ __forceinline__ int clamp_int(int v, int lo, int hi) { return min(max(v, lo), hi); }

// Addressing: 64-bit per-plane base pointers are formed once per (batch, channel chunk);
// everything per tap and per gather is a 32-bit offset from them (check_dims guarantees
// K*K*H*W and 4*(H+K-1)*(W+K-1) < 2^31).

// ---------------------------------------------------------------------------------------
// Forward: input (B, C, H+K-1, W+K-1) padded; heads (B, K, H, W), (B, K*K, H, W).
template <typename T, int KT>
__global__ void __launch_bounds__(kDSepBlockX* kDSepBlockY)
    dsepconv_forward_kernel(const T* __restrict__ input, const T* __restrict__ vertical,
                            const T* __restrict__ horizontal, const T* __restrict__ offset_x,
                            const T* __restrict__ offset_y, const T* __restrict__ mask, T* __restrict__ out,
                            int C, int K_rt, int H, int W, int chunks, int Z) {
  using A = typename Acc<T>::type;
  constexpr int CPT = kDSepChannelsPerThread;
  const int K = KT > 0 ? KT : K_rt;
  const int x = blockIdx.x * kDSepBlockX + threadIdx.x;
  const int y = blockIdx.y * kDSepBlockY + threadIdx.y;
  if (x >= W || y >= H) return;
  const int Hin = H + K - 1, Win = W + K - 1, half = (K - 1) / 2;
  const int HW = H * W;
  const int plane = Hin * Win;
  const int p = y * W + x;

  for (int z = blockIdx.z; z < Z; z += gridDim.z) {
    const int64_t b = z / chunks;
    const int c0 = (z % chunks) * CPT;
    const int nc = min(CPT, C - c0);
    const T* v_p = vertical + b * K * HW + p;
    const T* h_p = horizontal + b * K * HW + p;
    const int64_t kk_base = b * K * K * HW + p;
    const T* ox_p = offset_x + kk_base;
    const T* oy_p = offset_y + kk_base;
    const T* m_p = mask + kk_base;
    const T* in_b = input + (b * C + c0) * plane;

    A vreg[KT > 0 ? KT : 1], hreg[KT > 0 ? KT : 1];
    if (KT > 0) {
#pragma unroll
      for (int k = 0; k < (KT > 0 ? KT : 1); ++k) {
        vreg[k] = load_stream(v_p + k * HW);
        hreg[k] = load_stream(h_p + k * HW);
      }
    }
    A acc[CPT];
#pragma unroll
    for (int cc = 0; cc < CPT; ++cc) acc[cc] = A(0);

#pragma unroll
    for (int i = 0; i < K; ++i) {
      const A vi = KT > 0 ? vreg[KT > 0 ? i : 0] : load_ro(v_p + i * HW);
#pragma unroll
      for (int j = 0; j < K; ++j) {
        const A hj = KT > 0 ? hreg[KT > 0 ? j : 0] : load_ro(h_p + j * HW);
        const int q = (i * K + j) * HW;
        const A mt = load_stream(m_p + q);
        const TapGeom<A> t = make_tap(load_stream(ox_p + q), load_stream(oy_p + q), y, x, i, j, half, Hin, Win);
        const A coef = (vi * hj) * mt;
        const A wtl = t.wl * t.wt, wtr = t.wr * t.wt, wbl = t.wl * t.wb, wbr = t.wr * t.wb;
        const int itl = t.top * Win + t.left, itr = t.top * Win + t.right;
        const int ibl = t.bottom * Win + t.left, ibr = t.bottom * Win + t.right;
#pragma unroll
        for (int cc = 0; cc < CPT; ++cc) {
          if (cc < nc) {
            const int o = cc * plane;
            const A val = load_ro(in_b + (o + itl)) * wtl + load_ro(in_b + (o + itr)) * wtr +
                          load_ro(in_b + (o + ibl)) * wbl + load_ro(in_b + (o + ibr)) * wbr;
            acc[cc] += val * coef;
          }
        }
      }
    }
    T* out_p = out + (b * C + c0) * HW + p;
#pragma unroll
    for (int cc = 0; cc < CPT; ++cc)
      if (cc < nc) store(out_p + cc * HW, acc[cc]);
  }
}

// ---------------------------------------------------------------------------------------
// Backward. grad_input_acc (B, C, Hin, Win) of Acc<T> must be zeroed; it is accumulated
// with atomicAdd. The other gradients are written (every element).
template <typename T, int KT>
__global__ void __launch_bounds__(kDSepBlockX* kDSepBlockY)
    dsepconv_backward_kernel(const T* __restrict__ grad_out, const T* __restrict__ input,
                             const T* __restrict__ vertical, const T* __restrict__ horizontal,
                             const T* __restrict__ offset_x, const T* __restrict__ offset_y,
                             const T* __restrict__ mask, typename Acc<T>::type* __restrict__ grad_input_acc,
                             T* __restrict__ g_vertical, T* __restrict__ g_horizontal, T* __restrict__ g_offset_x,
                             T* __restrict__ g_offset_y, T* __restrict__ g_mask, int C, int K_rt, int H, int W,
                             int B) {
  using A = typename Acc<T>::type;
  constexpr int KA = KT > 0 ? KT : kMaxRuntimeK;
  const int K = KT > 0 ? KT : K_rt;
  const int x = blockIdx.x * kDSepBlockX + threadIdx.x;
  const int y = blockIdx.y * kDSepBlockY + threadIdx.y;
  if (x >= W || y >= H) return;
  const int Hin = H + K - 1, Win = W + K - 1, half = (K - 1) / 2;
  const int HW = H * W;
  const int plane = Hin * Win;
  const int p = y * W + x;

  for (int bi = blockIdx.z; bi < B; bi += gridDim.z) {
    const int64_t b = bi;
    const int64_t k_base = b * K * HW + p;
    const int64_t kk_base = b * K * K * HW + p;
    const T* in_b = input + b * C * plane;
    A* gin_b = grad_input_acc + b * C * plane;
    const T* go_p = grad_out + b * C * HW + p;
    const T* v_p = vertical + k_base;
    const T* ox_p = offset_x + kk_base;
    const T* oy_p = offset_y + kk_base;
    const T* m_p = mask + kk_base;
    T* gm_p = g_mask + kk_base;
    T* gox_p = g_offset_x + kk_base;
    T* goy_p = g_offset_y + kk_base;

    A hreg[KA], gh[KA];
#pragma unroll
    for (int k = 0; k < KA; ++k) {
      if (k < K) hreg[k] = load_ro(horizontal + k_base + k * HW);
      gh[k] = A(0);
    }
#pragma unroll
    for (int i = 0; i < K; ++i) {
      const A vi = load_ro(v_p + i * HW);
      A gv = A(0);
#pragma unroll
      for (int j = 0; j < K; ++j) {
        const A hj = hreg[j];
        const int q = (i * K + j) * HW;
        const A mt = load_stream(m_p + q);
        const TapGeom<A> t = make_tap(load_stream(ox_p + q), load_stream(oy_p + q), y, x, i, j, half, Hin, Win);
        const A coef = (vi * hj) * mt;
        const A wtl = t.wl * t.wt, wtr = t.wr * t.wt, wbl = t.wl * t.wb, wbr = t.wr * t.wb;
        const int itl = t.top * Win + t.left, itr = t.top * Win + t.right;
        const int ibl = t.bottom * Win + t.left, ibr = t.bottom * Win + t.right;
        A s = A(0), sx = A(0), sy = A(0);  // sum_c g*val, sum_c g*dval/dpx, sum_c g*dval/dpy
        const T* pl = in_b;
        A* gpl = gin_b;
        for (int c = 0; c < C; ++c, pl += plane, gpl += plane) {
          const A g = load_ro(go_p + static_cast<int64_t>(c) * HW);
          const A tl = load_ro(pl + itl), tr = load_ro(pl + itr);
          const A bl = load_ro(pl + ibl), br = load_ro(pl + ibr);
          s += g * (tl * wtl + tr * wtr + bl * wbl + br * wbr);
          sx += g * (t.wt * (tr - tl) + t.wb * (br - bl));
          sy += g * (t.wl * (bl - tl) + t.wr * (br - tr));
          const A gc = g * coef;
          atomicAdd(gpl + itl, gc * wtl);
          atomicAdd(gpl + itr, gc * wtr);
          atomicAdd(gpl + ibl, gc * wbl);
          atomicAdd(gpl + ibr, gc * wbr);
        }
        store(gm_p + q, s * vi * hj);
        gv += s * hj * mt;
        gh[j] += s * vi * mt;
        store(goy_p + q, t.x_inside ? sx * coef : A(0));
        store(gox_p + q, t.y_inside ? sy * coef : A(0));
      }
      store(g_vertical + k_base + i * HW, gv);
    }
#pragma unroll
    for (int k = 0; k < KA; ++k)
      if (k < K) store(g_horizontal + k_base + k * HW, gh[k]);
  }
}

// ---------------------------------------------------------------------------------------
// Fused decoder output: frames (B, C, H, W) UNPADDED; replication padding by clamping.
template <typename T, int KT>
__global__ void __launch_bounds__(kDSepBlockX* kDSepBlockY)
    decoder_output_kernel(const T* __restrict__ frame0, const T* __restrict__ frame1,
                          const T* __restrict__ vertical0, const T* __restrict__ horizontal0,
                          const T* __restrict__ offset_x0, const T* __restrict__ offset_y0,
                          const T* __restrict__ vertical1, const T* __restrict__ horizontal1,
                          const T* __restrict__ offset_x1, const T* __restrict__ offset_y1,
                          const T* __restrict__ mask, const T* __restrict__ residual, T* __restrict__ out, int C,
                          int K_rt, int H, int W, int chunks, int Z) {
  using A = typename Acc<T>::type;
  constexpr int CPT = kDSepChannelsPerThread;
  const int K = KT > 0 ? KT : K_rt;
  const int x = blockIdx.x * kDSepBlockX + threadIdx.x;
  const int y = blockIdx.y * kDSepBlockY + threadIdx.y;
  if (x >= W || y >= H) return;
  const int half = (K - 1) / 2;
  const int Hin = H + K - 1, Win = W + K - 1;  // padded geometry, as the reference
  const int HW = H * W;
  const int p = y * W + x;

  for (int z = blockIdx.z; z < Z; z += gridDim.z) {
    const int64_t b = z / chunks;
    const int c0 = (z % chunks) * CPT;
    const int nc = min(CPT, C - c0);
    const int64_t k_base = b * K * HW + p;
    const int64_t kk_base = b * K * K * HW + p;
    const T* f0 = frame0 + (b * C + c0) * HW;
    const T* f1 = frame1 + (b * C + c0) * HW;
    const T* ox0_p = offset_x0 + kk_base;
    const T* oy0_p = offset_y0 + kk_base;
    const T* ox1_p = offset_x1 + kk_base;
    const T* oy1_p = offset_y1 + kk_base;
    const T* m_p = mask + kk_base;

    A v0r[KT > 0 ? KT : 1], h0r[KT > 0 ? KT : 1], v1r[KT > 0 ? KT : 1], h1r[KT > 0 ? KT : 1];
    if (KT > 0) {
#pragma unroll
      for (int k = 0; k < (KT > 0 ? KT : 1); ++k) {
        v0r[k] = load_stream(vertical0 + k_base + k * HW);
        h0r[k] = load_stream(horizontal0 + k_base + k * HW);
        v1r[k] = load_stream(vertical1 + k_base + k * HW);
        h1r[k] = load_stream(horizontal1 + k_base + k * HW);
      }
    }
    A acc[CPT];
#pragma unroll
    for (int cc = 0; cc < CPT; ++cc) acc[cc] = A(0);

#pragma unroll
    for (int i = 0; i < K; ++i) {
      const A vi0 = KT > 0 ? v0r[KT > 0 ? i : 0] : load_ro(vertical0 + k_base + i * HW);
      const A vi1 = KT > 0 ? v1r[KT > 0 ? i : 0] : load_ro(vertical1 + k_base + i * HW);
#pragma unroll
      for (int j = 0; j < K; ++j) {
        const A hj0 = KT > 0 ? h0r[KT > 0 ? j : 0] : load_ro(horizontal0 + k_base + j * HW);
        const A hj1 = KT > 0 ? h1r[KT > 0 ? j : 0] : load_ro(horizontal1 + k_base + j * HW);
        const int q = (i * K + j) * HW;
        const A m = load_stream(m_p + q);
        const TapGeom<A> t0 = make_tap(load_stream(ox0_p + q), load_stream(oy0_p + q), y, x, i, j, half, Hin, Win);
        const TapGeom<A> t1 = make_tap(load_stream(ox1_p + q), load_stream(oy1_p + q), y, x, i, j, half, Hin, Win);
        const A coef0 = (vi0 * hj0) * m;
        const A coef1 = (vi1 * hj1) * (A(1) - m);
        // padded corner -> frame index (replication padding): clamp(clamp(f, 0, size_in-1) - half,
        // 0, size-1) == clamp(f - half, 0, size-1) since size_in-1-half = size-1+half
        const int r0t = clamp_int(t0.fy - half, 0, H - 1), r0b = clamp_int(t0.fy + 1 - half, 0, H - 1);
        const int c0l = clamp_int(t0.fx - half, 0, W - 1), c0r = clamp_int(t0.fx + 1 - half, 0, W - 1);
        const int r1t = clamp_int(t1.fy - half, 0, H - 1), r1b = clamp_int(t1.fy + 1 - half, 0, H - 1);
        const int c1l = clamp_int(t1.fx - half, 0, W - 1), c1r = clamp_int(t1.fx + 1 - half, 0, W - 1);
        const int a_tl = r0t * W + c0l, a_tr = r0t * W + c0r, a_bl = r0b * W + c0l, a_br = r0b * W + c0r;
        const int b_tl = r1t * W + c1l, b_tr = r1t * W + c1r, b_bl = r1b * W + c1l, b_br = r1b * W + c1r;
        const A w0tl = t0.wl * t0.wt, w0tr = t0.wr * t0.wt, w0bl = t0.wl * t0.wb, w0br = t0.wr * t0.wb;
        const A w1tl = t1.wl * t1.wt, w1tr = t1.wr * t1.wt, w1bl = t1.wl * t1.wb, w1br = t1.wr * t1.wb;
#pragma unroll
        for (int cc = 0; cc < CPT; ++cc) {
          if (cc < nc) {
            const int o = cc * HW;
            const A val0 = load_ro(f0 + (o + a_tl)) * w0tl + load_ro(f0 + (o + a_tr)) * w0tr +
                           load_ro(f0 + (o + a_bl)) * w0bl + load_ro(f0 + (o + a_br)) * w0br;
            const A val1 = load_ro(f1 + (o + b_tl)) * w1tl + load_ro(f1 + (o + b_tr)) * w1tr +
                           load_ro(f1 + (o + b_bl)) * w1bl + load_ro(f1 + (o + b_br)) * w1br;
            acc[cc] += val0 * coef0 + val1 * coef1;
          }
        }
      }
    }
    const int64_t o = (b * C + c0) * HW + p;
#pragma unroll
    for (int cc = 0; cc < CPT; ++cc)
      if (cc < nc) store(out + o + cc * HW, acc[cc] + load_stream(residual + o + cc * HW));
  }
}

template <typename T>
__global__ void cast_kernel(const typename Acc<T>::type* __restrict__ src, T* __restrict__ dst, int64_t n) {
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[k] = from_acc<T>(src[k]);
}

inline dim3 pixel_grid(int64_t H, int64_t W, int64_t Z) {
  return dim3(static_cast<unsigned>((W + kDSepBlockX - 1) / kDSepBlockX),
              static_cast<unsigned>((H + kDSepBlockY - 1) / kDSepBlockY),
              static_cast<unsigned>(std::min<int64_t>(Z, 65535)));
}

// Shared validation: returns cudaSuccess or cudaErrorInvalidValue.
inline cudaError_t check_dims(int64_t B, int64_t C, int64_t K, int64_t H, int64_t W) {
  if (B < 0 || C < 0 || K < 1 || H < 0 || W < 0) return cudaErrorInvalidValue;
  const int64_t Hin = H + K - 1, Win = W + K - 1;
  // 32-bit offsets inside a (batch, channel chunk): see the kernels' addressing comment
  if (kDSepChannelsPerThread * Hin * Win >= (int64_t(1) << 31) || K * K * H * W >= (int64_t(1) << 31) ||
      K * K >= 65536 || (H + 7) / 8 > 65535)
    return cudaErrorInvalidValue;
  if (B > (int64_t(1) << 30) || C > (int64_t(1) << 30)) return cudaErrorInvalidValue;
  return cudaSuccess;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Host launchers. All pointers are device pointers to contiguous (NCHW) arrays; launches
// go on `stream`; the return value is cudaGetLastError() after the launch (or
// cudaErrorInvalidValue for bad sizes). Empty problems launch nothing.

// out (B, C, H, W) = dsepconv(input (B, C, H+K-1, W+K-1), ...)
template <typename T>
cudaError_t launch_dsepconv_forward(const T* input, const T* vertical, const T* horizontal, const T* offset_x,
                                    const T* offset_y, const T* mask, T* out, int64_t B, int64_t C, int64_t K,
                                    int64_t H, int64_t W, cudaStream_t stream) {
  cudaError_t err = detail::check_dims(B, C, K, H, W);
  if (err != cudaSuccess) return err;
  if (B == 0 || C == 0 || H == 0 || W == 0) return cudaSuccess;
  const int64_t chunks = (C + kDSepChannelsPerThread - 1) / kDSepChannelsPerThread;
  const int64_t Z = B * chunks;
  if (Z > INT32_MAX) return cudaErrorInvalidValue;
  const dim3 block(kDSepBlockX, kDSepBlockY);
  const dim3 grid = detail::pixel_grid(H, W, Z);
  if (K == 5) {
    LDMVFI_LAUNCH(grid, block, 0, stream, detail::dsepconv_forward_kernel<T, 5>)(
        input, vertical, horizontal, offset_x, offset_y, mask, out, int(C), int(K), int(H), int(W), int(chunks),
        int(Z));
  } else {
    LDMVFI_LAUNCH(grid, block, 0, stream, detail::dsepconv_forward_kernel<T, 0>)(
        input, vertical, horizontal, offset_x, offset_y, mask, out, int(C), int(K), int(H), int(W), int(chunks),
        int(Z));
  }
  return cudaGetLastError();
}

// Gradients of dsepconv. grad_input_acc (B, C, H+K-1, W+K-1) of Acc<T> (float, or double
// for double) must be ZEROED by the caller; it receives the input gradient. For T = float
// or double it can be the final gradient tensor itself; for half/bf16 cast it with
// launch_cast_from_acc. The five other gradients are fully written.
template <typename T>
cudaError_t launch_dsepconv_backward(const T* grad_out, const T* input, const T* vertical, const T* horizontal,
                                     const T* offset_x, const T* offset_y, const T* mask,
                                     typename Acc<T>::type* grad_input_acc, T* g_vertical, T* g_horizontal,
                                     T* g_offset_x, T* g_offset_y, T* g_mask, int64_t B, int64_t C, int64_t K,
                                     int64_t H, int64_t W, cudaStream_t stream) {
  cudaError_t err = detail::check_dims(B, C, K, H, W);
  if (err != cudaSuccess) return err;
  if (K != 5 && K > kMaxRuntimeK) return cudaErrorNotSupported;
  if (B == 0 || H == 0 || W == 0) return cudaSuccess;
  const dim3 block(kDSepBlockX, kDSepBlockY);
  const dim3 grid = detail::pixel_grid(H, W, B);
  if (K == 5) {
    LDMVFI_LAUNCH(grid, block, 0, stream, detail::dsepconv_backward_kernel<T, 5>)(
        grad_out, input, vertical, horizontal, offset_x, offset_y, mask, grad_input_acc, g_vertical, g_horizontal,
        g_offset_x, g_offset_y, g_mask, int(C), int(K), int(H), int(W), int(B));
  } else {
    LDMVFI_LAUNCH(grid, block, 0, stream, detail::dsepconv_backward_kernel<T, 0>)(
        grad_out, input, vertical, horizontal, offset_x, offset_y, mask, grad_input_acc, g_vertical, g_horizontal,
        g_offset_x, g_offset_y, g_mask, int(C), int(K), int(H), int(W), int(B));
  }
  return cudaGetLastError();
}

// dst[k] = T(src[k]) for k < n.
template <typename T>
cudaError_t launch_cast_from_acc(const typename Acc<T>::type* src, T* dst, int64_t n, cudaStream_t stream) {
  if (n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((n + threads - 1) / threads, 65536);
  LDMVFI_LAUNCH(static_cast<unsigned>(blocks), threads, 0, stream, detail::cast_kernel<T>)(src, dst, n);
  return cudaGetLastError();
}

// out (B, C, H, W) = warp(pad(frame0), heads0, mask) + warp(pad(frame1), heads1, 1 - mask)
//                    + residual; frames and residual (B, C, H, W) unpadded; K odd.
template <typename T>
cudaError_t launch_decoder_output(const T* frame0, const T* frame1, const T* vertical0, const T* horizontal0,
                                  const T* offset_x0, const T* offset_y0, const T* vertical1, const T* horizontal1,
                                  const T* offset_x1, const T* offset_y1, const T* mask, const T* residual, T* out,
                                  int64_t B, int64_t C, int64_t K, int64_t H, int64_t W, cudaStream_t stream) {
  cudaError_t err = detail::check_dims(B, C, K, H, W);
  if (err != cudaSuccess) return err;
  if (K % 2 == 0) return cudaErrorInvalidValue;
  if (B == 0 || C == 0 || H == 0 || W == 0) return cudaSuccess;
  const int64_t chunks = (C + kDSepChannelsPerThread - 1) / kDSepChannelsPerThread;
  const int64_t Z = B * chunks;
  if (Z > INT32_MAX) return cudaErrorInvalidValue;
  const dim3 block(kDSepBlockX, kDSepBlockY);
  const dim3 grid = detail::pixel_grid(H, W, Z);
  if (K == 5) {
    LDMVFI_LAUNCH(grid, block, 0, stream, detail::decoder_output_kernel<T, 5>)(
        frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0, vertical1, horizontal1, offset_x1, offset_y1,
        mask, residual, out, int(C), int(K), int(H), int(W), int(chunks), int(Z));
  } else {
    LDMVFI_LAUNCH(grid, block, 0, stream, detail::decoder_output_kernel<T, 0>)(
        frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0, vertical1, horizontal1, offset_x1, offset_y1,
        mask, residual, out, int(C), int(K), int(H), int(W), int(chunks), int(Z));
  }
  return cudaGetLastError();
}

}  // namespace kernels
}  // namespace ldmvfi
