// Fused MaxViT block / grid windowed multi-head attention with relative-position bias, as
// torch-free CUDA templates (used by csrc/kernels/c_api.cu and csrc/ops/cuda/).
//
// Semantics: ldmvfi_fast/ops/maxvit_ref.py. q, k, v, out are channel-last (B, H, W, C),
// C = heads * head_dim; windows of w x w tokens, either contiguous tiles ("block") or a
// lattice with stride (H/w, W/w) ("grid"); token order inside a window is row-major;
// bias[i, j] = table[(i1 - i2 + w - 1) * (2w - 1) + (j1 - j2 + w - 1), head];
// out = softmax(scale * q k^T + bias) v. Self- and cross-attention are the same kernel
// (q, k, v are three independent pointers).
//
// What is fused: window gather (index arithmetic on the (B, H, W, C) tensors, any row
// strides, channel stride 1: e.g. q/k/v sliced out of one qkv projection need no copy),
// QK^T * scale + bias, fp32 softmax, PV and the scatter back to (B, H, W, C). One kernel,
// no rearrange copies, no (windows, heads, n, n) score tensor in device memory.
//
// Two kernels:
// * block kernel, any window w <= 8 (n = w*w <= 64 tokens), head_dim % 32 == 0: one thread
//   block (256 threads) per (window, head). Phase 1 streams q and k in 32-channel chunks
//   into shared memory (fp32, rows padded to 36 floats: conflict-free float4 reads) and
//   accumulates the 64 x 64 scores in registers (4 x 4 per thread); scores + bias go to
//   shared memory, softmax one warp per row. Phase 2 streams v in 32-channel chunks
//   (one lane per channel: coalesced loads and stores) and each thread produces 8 tokens
//   x 1 channel. Shared memory ~35 KB (static, fits the default 48 KB on every arch), so
//   several blocks per SM hide the global-load latency. Global traffic: q, k, v read
//   once, out written once.
// * warp kernel, w = 2 (n = 4 tokens, U-Net levels), head_dim in {32, 64, 128, 256}: one
//   warp per (window, head), 8 per block; each lane holds head_dim/32 channels of the 4
//   tokens in registers, scores are reduced with warp shuffles. Avoids a 256-thread block
//   for a 4 x 4 problem.
//
// * block kernel, half/bf16 storage on sm_80+: tensor cores (WMMA 16x16x16, fp32
//   accumulate), see attention_block_mma below; float storage (and older archs) keep the
//   CUDA-core (FFMA) body described above.
//
// Precision: float storage: all arithmetic fp32 (products, softmax, PV). half/bf16 block
// kernel: q k^T from half/bf16 operands with fp32 accumulation, fp32 scale/bias/softmax, P
// rounded to the storage type, P v with fp32 accumulation. Warp kernel: fp32 throughout.
// Limits: window <= 8, head_dim % 32 == 0. Not yet measured on a GPU (the tensor-core
// path is compile-checked for sm_80/sm_90 and run under the host emulation only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common.cuh"

// Tensor-core (WMMA, 16x16x16, fp16/bf16 in, fp32 accumulate) block kernel for half and
// bf16 storage on sm_80+ (bf16 WMMA needs sm_80). Older architectures and float storage
// compile the CUDA-core (FFMA) path. The host emulation runs the WMMA path.
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define LDMVFI_ATTN_MMA 1
#include <mma.h>
#else
#define LDMVFI_ATTN_MMA 0
#endif

namespace ldmvfi {
namespace kernels {

template <typename T>
struct AttnParams {
  const T* q;
  const T* k;
  const T* v;
  T* out;
  int64_t q_sb, q_sh, q_sw;  // strides (elements) of dims B, H, W; channel stride must be 1
  int64_t k_sb, k_sh, k_sw;
  int64_t v_sb, v_sh, v_sw;
  int64_t o_sb, o_sh, o_sw;
  const float* bias;  // ((2w-1)^2, heads) float32, contiguous
  int heads, head_dim, window, nh, nw;
  bool grid;
  float scale;
  int64_t num_items;  // B * nh * nw * heads
};

namespace detail {

constexpr int kAttnThreads = 256;
constexpr int kAttnMaxTokens = 64;
constexpr int kAttnDChunk = 32;
constexpr int kAttnQKStride = kAttnDChunk + 4;     // floats per smem row of q/k/v chunks
constexpr int kAttnSStride = kAttnMaxTokens + 4;   // floats per smem row of scores
constexpr int kAttnWarpsPerBlock = kAttnThreads / 32;

// (row, col) in the image of token t of window (wx, wy).
__device__ __forceinline__ void token_rc(int t, int w, int wx, int wy, int nh, int nw, bool grid, int& r, int& c) {
  const int i1 = t / w, j1 = t - i1 * w;
  if (grid) {
    r = i1 * nh + wx;
    c = j1 * nw + wy;
  } else {
    r = wx * w + i1;
    c = wy * w + j1;
  }
}

__device__ __forceinline__ int rel_index(int i, int j, int w) {
  const int i1 = i / w, j1 = i - i1 * w, i2 = j / w, j2 = j - i2 * w;
  return (i1 - i2 + w - 1) * (2 * w - 1) + (j1 - j2 + w - 1);
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// CUDA-core body (all storage types; the only one for float).
template <typename T>
__device__ __forceinline__ void attention_block_ffma(const AttnParams<T>& P) {
  __shared__ __align__(16) float Qs[kAttnMaxTokens * kAttnQKStride];
  __shared__ __align__(16) float Ks[kAttnMaxTokens * kAttnQKStride];  // k chunk, then v chunk
  __shared__ __align__(16) float S[kAttnMaxTokens * kAttnSStride];

  const int64_t item = blockIdx.x;
  const int head = static_cast<int>(item % P.heads);
  const int64_t wi = item / P.heads;
  const int64_t per_b = static_cast<int64_t>(P.nh) * P.nw;
  const int64_t b = wi / per_b;
  const int rem = static_cast<int>(wi - b * per_b);
  const int wx = rem / P.nw, wy = rem - (rem / P.nw) * P.nw;
  const int w = P.window, n = w * w, d = P.head_dim;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int ty = tid >> 4, tx = tid & 15;
  const int ch0 = head * d;

  const T* qb = P.q + b * P.q_sb + ch0 + lane;
  const T* kb = P.k + b * P.k_sb + ch0 + lane;
  const T* vb = P.v + b * P.v_sb + ch0 + lane;
  T* ob = P.out + b * P.o_sb + ch0 + lane;

  // ---- phase 1: scores = q k^T, 32 channels at a time
  float acc[4][4];
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int c = 0; c < 4; ++c) acc[a][c] = 0.f;

  for (int dc = 0; dc < d; dc += kAttnDChunk) {
    if (dc) __syncthreads();  // previous chunk fully consumed
#pragma unroll
    for (int a = 0; a < kAttnMaxTokens / kAttnWarpsPerBlock; ++a) {
      const int t = warp + kAttnWarpsPerBlock * a;
      float qv = 0.f, kv = 0.f;
      if (t < n) {
        int r, c;
        token_rc(t, w, wx, wy, P.nh, P.nw, P.grid, r, c);
        qv = load_ro(qb + r * P.q_sh + c * P.q_sw + dc);
        kv = load_ro(kb + r * P.k_sh + c * P.k_sw + dc);
      }
      Qs[t * kAttnQKStride + lane] = qv;
      Ks[t * kAttnQKStride + lane] = kv;
    }
    __syncthreads();
#pragma unroll
    for (int c4 = 0; c4 < kAttnDChunk; c4 += 4) {
      float4 qa[4], kc[4];
#pragma unroll
      for (int a = 0; a < 4; ++a) qa[a] = *reinterpret_cast<const float4*>(&Qs[(ty + 16 * a) * kAttnQKStride + c4]);
#pragma unroll
      for (int c = 0; c < 4; ++c) kc[c] = *reinterpret_cast<const float4*>(&Ks[(tx + 16 * c) * kAttnQKStride + c4]);
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int c = 0; c < 4; ++c) {
          float s = acc[a][c];
          s = fmaf(qa[a].x, kc[c].x, s);
          s = fmaf(qa[a].y, kc[c].y, s);
          s = fmaf(qa[a].z, kc[c].z, s);
          s = fmaf(qa[a].w, kc[c].w, s);
          acc[a][c] = s;
        }
    }
  }

  // ---- scores * scale + bias -> shared; padding columns -inf
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int i = ty + 16 * a, j = tx + 16 * c;
      float s = -INFINITY;
      if (i < n && j < n) s = fmaf(acc[a][c], P.scale, __ldg(P.bias + rel_index(i, j, w) * P.heads + head));
      S[i * kAttnSStride + j] = s;
    }
  __syncthreads();

  // ---- softmax, one warp per row (fp32)
  for (int r = warp; r < n; r += kAttnWarpsPerBlock) {
    float* row = S + r * kAttnSStride;
    const float v0 = row[lane], v1 = row[lane + 32];
    const float m = warp_max(fmaxf(v0, v1));  // finite: column 0 is always valid
    const float e0 = expf(v0 - m), e1 = expf(v1 - m);
    const float inv = 1.f / warp_sum(e0 + e1);
    row[lane] = e0 * inv;
    row[lane + 32] = e1 * inv;
  }

  // ---- phase 2: out = P v, 32 channels at a time; lane = channel, warp = 8 tokens
  const int nj = (n + 3) & ~3;
  for (int dc = 0; dc < d; dc += kAttnDChunk) {
    __syncthreads();  // softmax written / previous v chunk consumed
#pragma unroll
    for (int a = 0; a < kAttnMaxTokens / kAttnWarpsPerBlock; ++a) {
      const int t = warp + kAttnWarpsPerBlock * a;
      float vv = 0.f;
      if (t < n) {
        int r, c;
        token_rc(t, w, wx, wy, P.nh, P.nw, P.grid, r, c);
        vv = load_ro(vb + r * P.v_sh + c * P.v_sw + dc);
      }
      Ks[t * kAttnQKStride + lane] = vv;  // zero rows beyond n (P there is 0, avoid 0 * garbage)
    }
    __syncthreads();
    float o[kAttnMaxTokens / kAttnWarpsPerBlock];
#pragma unroll
    for (int a = 0; a < kAttnMaxTokens / kAttnWarpsPerBlock; ++a) o[a] = 0.f;
    for (int j4 = 0; j4 < nj; j4 += 4) {
      const float v0 = Ks[(j4 + 0) * kAttnQKStride + lane];
      const float v1 = Ks[(j4 + 1) * kAttnQKStride + lane];
      const float v2 = Ks[(j4 + 2) * kAttnQKStride + lane];
      const float v3 = Ks[(j4 + 3) * kAttnQKStride + lane];
#pragma unroll
      for (int a = 0; a < kAttnMaxTokens / kAttnWarpsPerBlock; ++a) {
        const float4 pr = *reinterpret_cast<const float4*>(&S[(warp + kAttnWarpsPerBlock * a) * kAttnSStride + j4]);
        float s = o[a];
        s = fmaf(pr.x, v0, s);
        s = fmaf(pr.y, v1, s);
        s = fmaf(pr.z, v2, s);
        s = fmaf(pr.w, v3, s);
        o[a] = s;
      }
    }
#pragma unroll
    for (int a = 0; a < kAttnMaxTokens / kAttnWarpsPerBlock; ++a) {
      const int t = warp + kAttnWarpsPerBlock * a;
      if (t < n) {
        int r, c;
        token_rc(t, w, wx, wy, P.nh, P.nw, P.grid, r, c);
        store(ob + r * P.o_sh + c * P.o_sw + dc, o[a]);
      }
    }
  }
}

#if LDMVFI_ATTN_MMA
// Tensor-core body for half / bf16 storage. Same item decomposition as the FFMA body (one
// block of 8 warps per (window, head)); q, k, v are staged in shared memory in their
// storage type, 64 channels at a time. Tokens padded to nt = ceil(n/16) tiles of 16:
// S = q k^T (nt x nt tiles, 2 per warp) accumulates in fp32 fragments; scale + bias +
// softmax in fp32 (as the FFMA body); P is rounded to the storage type (as PyTorch's
// half/bf16 attention does: softmax output in the input dtype) and O = P v (nt x 4 tiles
// per 64-channel chunk) accumulates in fp32 before the final rounding. Shared memory
// ~45 KB static (< 48 KB).
constexpr int kMmaD = 64;              // channels per staged chunk
constexpr int kMmaLd = kMmaD + 8;      // elements per smem row of q/k/v/P (16-byte multiple)
constexpr int kMmaSLd = kAttnMaxTokens + 4;  // floats per smem row of S / O staging

template <typename T>
__device__ __forceinline__ void attention_block_mma(const AttnParams<T>& P) {
  using namespace nvcuda;
  __shared__ __align__(32) T Qh[kAttnMaxTokens * kMmaLd];
  __shared__ __align__(32) T Kh[kAttnMaxTokens * kMmaLd];  // k chunk, then v chunk
  __shared__ __align__(32) T Ph[kAttnMaxTokens * kMmaLd];
  __shared__ __align__(32) float S[kAttnMaxTokens * kMmaSLd];  // scores, then O staging

  const int64_t item = blockIdx.x;
  const int head = static_cast<int>(item % P.heads);
  const int64_t wi = item / P.heads;
  const int64_t per_b = static_cast<int64_t>(P.nh) * P.nw;
  const int64_t b = wi / per_b;
  const int rem = static_cast<int>(wi - b * per_b);
  const int wx = rem / P.nw, wy = rem - (rem / P.nw) * P.nw;
  const int w = P.window, n = w * w, d = P.head_dim;
  const int nt = (n + 15) / 16, np = nt * 16;  // token tiles, padded token count
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int ch0 = head * d;
  const T zero = from_acc<T>(0.f);
  // this warp's two 16x16 output tiles: row tile rt, column tiles ct0, ct0 + 1
  const int rt = warp >> 1, ct0 = (warp & 1) * 2;

  const T* qb = P.q + b * P.q_sb + ch0;
  const T* kb = P.k + b * P.k_sb + ch0;
  const T* vb = P.v + b * P.v_sb + ch0;
  T* ob = P.out + b * P.o_sb + ch0;

  // ---- S = q k^T
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> sacc[2];
  wmma::fill_fragment(sacc[0], 0.f);
  wmma::fill_fragment(sacc[1], 0.f);
  for (int dc = 0; dc < d; dc += kMmaD) {
    const int dl = min(kMmaD, d - dc);  // multiple of 32
    if (dc) __syncthreads();  // previous chunk consumed
    for (int e = tid; e < np * kMmaD; e += kAttnThreads) {
      const int t = e / kMmaD, c = e - (e / kMmaD) * kMmaD;
      T qv = zero, kv = zero;
      if (t < n && c < dl) {
        int r, cc;
        token_rc(t, w, wx, wy, P.nh, P.nw, P.grid, r, cc);
        qv = qb[r * P.q_sh + cc * P.q_sw + dc + c];
        kv = kb[r * P.k_sh + cc * P.k_sw + dc + c];
      }
      Qh[t * kMmaLd + c] = qv;
      Kh[t * kMmaLd + c] = kv;
    }
    __syncthreads();
    if (rt < nt) {
      for (int kk = 0; kk < dl; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a;
        wmma::load_matrix_sync(a, Qh + rt * 16 * kMmaLd + kk, kMmaLd);
#pragma unroll
        for (int u = 0; u < 2; ++u) {
          if (ct0 + u < nt) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bk;  // k^T
            wmma::load_matrix_sync(bk, Kh + (ct0 + u) * 16 * kMmaLd + kk, kMmaLd);
            wmma::mma_sync(sacc[u], a, bk, sacc[u]);
          }
        }
      }
    }
  }
  if (rt < nt) {
#pragma unroll
    for (int u = 0; u < 2; ++u)
      if (ct0 + u < nt)
        wmma::store_matrix_sync(S + rt * 16 * kMmaSLd + (ct0 + u) * 16, sacc[u], kMmaSLd, wmma::mem_row_major);
  }
  __syncthreads();

  // ---- scale + bias (fp32), padding -inf; softmax one warp per row -> P (storage type)
  for (int e = tid; e < np * kAttnMaxTokens; e += kAttnThreads) {
    const int i = e / kAttnMaxTokens, j = e - (e / kAttnMaxTokens) * kAttnMaxTokens;
    float s = -INFINITY;
    if (i < n && j < n) s = fmaf(S[i * kMmaSLd + j], P.scale, __ldg(P.bias + rel_index(i, j, w) * P.heads + head));
    S[i * kMmaSLd + j] = s;
  }
  __syncthreads();
  for (int r = warp; r < np; r += kAttnWarpsPerBlock) {
    if (r < n) {
      const float* row = S + r * kMmaSLd;
      const float v0 = row[lane], v1 = row[lane + 32];
      const float m = warp_max(fmaxf(v0, v1));  // finite: column 0 is always valid
      const float e0 = expf(v0 - m), e1 = expf(v1 - m);
      const float inv = 1.f / warp_sum(e0 + e1);
      Ph[r * kMmaLd + lane] = from_acc<T>(e0 * inv);
      Ph[r * kMmaLd + lane + 32] = from_acc<T>(e1 * inv);
    } else {  // padding rows: finite zeros (their outputs are not stored)
      Ph[r * kMmaLd + lane] = zero;
      Ph[r * kMmaLd + lane + 32] = zero;
    }
  }

  // ---- O = P v, 64 channels at a time
  for (int dc = 0; dc < d; dc += kMmaD) {
    const int dl = min(kMmaD, d - dc);
    __syncthreads();  // P written / previous chunk's O staging read out
    for (int e = tid; e < np * kMmaD; e += kAttnThreads) {
      const int t = e / kMmaD, c = e - (e / kMmaD) * kMmaD;
      T vv = zero;  // zero padding rows: P there is 0, avoid 0 * garbage
      if (t < n && c < dl) {
        int r, cc;
        token_rc(t, w, wx, wy, P.nh, P.nw, P.grid, r, cc);
        vv = vb[r * P.v_sh + cc * P.v_sw + dc + c];
      }
      Kh[t * kMmaLd + c] = vv;
    }
    __syncthreads();
    if (rt < nt) {
#pragma unroll
      for (int u = 0; u < 2; ++u) {
        if ((ct0 + u) * 16 < dl) {
          wmma::fragment<wmma::accumulator, 16, 16, 16, float> oacc;
          wmma::fill_fragment(oacc, 0.f);
          for (int kk = 0; kk < np; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa;
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vbf;
            wmma::load_matrix_sync(pa, Ph + rt * 16 * kMmaLd + kk, kMmaLd);
            wmma::load_matrix_sync(vbf, Kh + kk * kMmaLd + (ct0 + u) * 16, kMmaLd);
            wmma::mma_sync(oacc, pa, vbf, oacc);
          }
          wmma::store_matrix_sync(S + rt * 16 * kMmaSLd + (ct0 + u) * 16, oacc, kMmaSLd, wmma::mem_row_major);
        }
      }
    }
    __syncthreads();
    for (int e = tid; e < n * kMmaD; e += kAttnThreads) {
      const int t = e / kMmaD, c = e - (e / kMmaD) * kMmaD;
      if (c < dl) {
        int r, cc;
        token_rc(t, w, wx, wy, P.nh, P.nw, P.grid, r, cc);
        store(ob + r * P.o_sh + cc * P.o_sw + dc + c, S[t * kMmaSLd + c]);
      }
    }
  }
}
#endif  // LDMVFI_ATTN_MMA

template <typename T>
__global__ void __launch_bounds__(kAttnThreads) maxvit_attention_block_kernel(const AttnParams<T> P) {
#if LDMVFI_ATTN_MMA
  if constexpr (!std::is_same<T, float>::value)
    attention_block_mma<T>(P);
  else
#endif
    attention_block_ffma<T>(P);
}

// w = 2: one warp per (window, head); CPL = head_dim / 32 channels per lane.
template <typename T, int CPL>
__global__ void __launch_bounds__(kAttnThreads) maxvit_attention_w2_kernel(const AttnParams<T> P) {
  constexpr int N = 4, w = 2;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kAttnWarpsPerBlock + (threadIdx.x >> 5);
  if (item >= P.num_items) return;  // uniform per warp: the shuffles below stay full-warp
  const int lane = threadIdx.x & 31;
  const int head = static_cast<int>(item % P.heads);
  const int64_t wi = item / P.heads;
  const int64_t per_b = static_cast<int64_t>(P.nh) * P.nw;
  const int64_t b = wi / per_b;
  const int rem = static_cast<int>(wi - b * per_b);
  const int wx = rem / P.nw, wy = rem - (rem / P.nw) * P.nw;
  const int ch0 = head * P.head_dim + lane;

  int rr[N], cc[N];
  float q[N][CPL], k[N][CPL], v[N][CPL];
#pragma unroll
  for (int t = 0; t < N; ++t) {
    token_rc(t, w, wx, wy, P.nh, P.nw, P.grid, rr[t], cc[t]);
    const T* qp = P.q + b * P.q_sb + rr[t] * P.q_sh + cc[t] * P.q_sw + ch0;
    const T* kp = P.k + b * P.k_sb + rr[t] * P.k_sh + cc[t] * P.k_sw + ch0;
    const T* vp = P.v + b * P.v_sb + rr[t] * P.v_sh + cc[t] * P.v_sw + ch0;
#pragma unroll
    for (int u = 0; u < CPL; ++u) {
      q[t][u] = load_ro(qp + 32 * u);
      k[t][u] = load_ro(kp + 32 * u);
      v[t][u] = load_ro(vp + 32 * u);
    }
  }
  float s[N][N];
#pragma unroll
  for (int i = 0; i < N; ++i)
#pragma unroll
    for (int j = 0; j < N; ++j) {
      float a = 0.f;
#pragma unroll
      for (int u = 0; u < CPL; ++u) a = fmaf(q[i][u], k[j][u], a);
      s[i][j] = a;
    }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
      for (int j = 0; j < N; ++j) s[i][j] += __shfl_xor_sync(0xffffffffu, s[i][j], o);
#pragma unroll
  for (int i = 0; i < N; ++i) {
    float m = -INFINITY;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      s[i][j] = fmaf(s[i][j], P.scale, __ldg(P.bias + rel_index(i, j, w) * P.heads + head));
      m = fmaxf(m, s[i][j]);
    }
    float sum = 0.f;
#pragma unroll
    for (int j = 0; j < N; ++j) {
      s[i][j] = expf(s[i][j] - m);
      sum += s[i][j];
    }
    const float inv = 1.f / sum;
    T* op = P.out + b * P.o_sb + rr[i] * P.o_sh + cc[i] * P.o_sw + ch0;
#pragma unroll
    for (int u = 0; u < CPL; ++u) {
      float a = 0.f;
#pragma unroll
      for (int j = 0; j < N; ++j) a = fmaf(s[i][j], v[j][u], a);
      store(op + 32 * u, a * inv);
    }
  }
}

}  // namespace detail

// cudaSuccess if the configuration is supported, else cudaErrorInvalidValue (bad shape)
// or cudaErrorNotSupported (window > 8 or head_dim not a multiple of 32).
inline cudaError_t check_maxvit_attention_config(int64_t B, int64_t H, int64_t W, int64_t C, int64_t window,
                                                 int64_t heads) {
  if (B < 0 || H < 0 || W < 0 || C < 0 || window < 1 || heads < 1) return cudaErrorInvalidValue;
  if (H % window || W % window || C % heads) return cudaErrorInvalidValue;
  if (window > 8 || (C / heads) % 32 != 0) return cudaErrorNotSupported;
  if (H > INT32_MAX || W > INT32_MAX || C > INT32_MAX) return cudaErrorInvalidValue;
  return cudaSuccess;
}

// out (B, H, W, C) = windowed attention of q, k, v (B, H, W, C) with the given strides
// (elements, dims B, H, W; channel stride 1). bias_table: ((2w-1)^2, heads) float32 on the
// device, contiguous. Launches on `stream`; returns cudaGetLastError() after the launch.
template <typename T>
cudaError_t launch_maxvit_attention(const T* q, const int64_t q_strides[3], const T* k, const int64_t k_strides[3],
                                    const T* v, const int64_t v_strides[3], const float* bias_table, T* out,
                                    const int64_t out_strides[3], int64_t B, int64_t H, int64_t W, int64_t C,
                                    int64_t window, bool grid, int64_t heads, float scale, cudaStream_t stream) {
  cudaError_t err = check_maxvit_attention_config(B, H, W, C, window, heads);
  if (err != cudaSuccess) return err;
  if (B == 0 || H == 0 || W == 0 || C == 0) return cudaSuccess;
  AttnParams<T> P;
  P.q = q;
  P.k = k;
  P.v = v;
  P.out = out;
  P.q_sb = q_strides[0], P.q_sh = q_strides[1], P.q_sw = q_strides[2];
  P.k_sb = k_strides[0], P.k_sh = k_strides[1], P.k_sw = k_strides[2];
  P.v_sb = v_strides[0], P.v_sh = v_strides[1], P.v_sw = v_strides[2];
  P.o_sb = out_strides[0], P.o_sh = out_strides[1], P.o_sw = out_strides[2];
  P.bias = bias_table;
  P.heads = static_cast<int>(heads);
  P.head_dim = static_cast<int>(C / heads);
  P.window = static_cast<int>(window);
  P.nh = static_cast<int>(H / window);
  P.nw = static_cast<int>(W / window);
  P.grid = grid;
  P.scale = scale;
  P.num_items = B * (H / window) * (W / window) * heads;
  const int d = P.head_dim;
  if (window == 2 && (d == 32 || d == 64 || d == 128 || d == 256)) {
    const int64_t blocks = (P.num_items + detail::kAttnWarpsPerBlock - 1) / detail::kAttnWarpsPerBlock;
    if (blocks > INT32_MAX) return cudaErrorInvalidValue;
    const dim3 g(static_cast<unsigned>(blocks));
    switch (d) {
      case 32: LDMVFI_LAUNCH(g, detail::kAttnThreads, 0, stream, detail::maxvit_attention_w2_kernel<T, 1>)(P); break;
      case 64: LDMVFI_LAUNCH(g, detail::kAttnThreads, 0, stream, detail::maxvit_attention_w2_kernel<T, 2>)(P); break;
      case 128: LDMVFI_LAUNCH(g, detail::kAttnThreads, 0, stream, detail::maxvit_attention_w2_kernel<T, 4>)(P); break;
      default: LDMVFI_LAUNCH(g, detail::kAttnThreads, 0, stream, detail::maxvit_attention_w2_kernel<T, 8>)(P); break;
    }
  } else {
    if (P.num_items > INT32_MAX) return cudaErrorInvalidValue;
    LDMVFI_LAUNCH(static_cast<unsigned>(P.num_items), detail::kAttnThreads, 0, stream,
                  detail::maxvit_attention_block_kernel<T>)(P);
  }
  return cudaGetLastError();
}

// Contiguous (B, H, W, C) q, k, v, out.
template <typename T>
cudaError_t launch_maxvit_attention_contiguous(const T* q, const T* k, const T* v, const float* bias_table, T* out,
                                               int64_t B, int64_t H, int64_t W, int64_t C, int64_t window,
                                               bool grid, int64_t heads, float scale, cudaStream_t stream) {
  const int64_t s[3] = {H * W * C, W * C, C};
  return launch_maxvit_attention<T>(q, s, k, s, v, s, bias_table, out, s, B, H, W, C, window, grid, heads, scale,
                                    stream);
}

}  // namespace kernels
}  // namespace ldmvfi
