// Host emulation of the CUDA built-ins used by csrc/kernels/*.cuh, for a host C++17
// compiler (g++ / clang++ on Linux). It lets the UNCHANGED kernel sources (and the C API
// csrc/kernels/c_api.cu compiled with `-x c++`) run on the CPU, so that tests can check
// their indexing and algorithms against the references without a GPU
// (tests/test_cuda_emulated.py).
//
// Use: add csrc/emulation/include to the include path (before any CUDA toolkit): the
// headers <cuda_runtime.h>, <cuda_runtime_api.h>, <cuda_fp16.h>, <cuda_bf16.h>, <mma.h>
// there all resolve to this file. The kernels launch through LDMVFI_LAUNCH
// (csrc/kernels/common.cuh), which this file defines first.
//
// Execution model
// * A launch runs the grid synchronously (streams are ignored): blocks one after the
//   other, in order; the threads of a block as cooperative user-level threads (ucontext
//   fibers, one OS thread). A fiber runs until it exits or reaches __syncthreads() or a warp
//   collective; the scheduler then runs the next one.
// * __syncthreads(): a block barrier; threads that have exited count as arrived (as on
//   sm_70+).
// * Warp collectives (__shfl_*_sync, __ballot_sync, __any_sync, __all_sync, __syncwarp,
//   the WMMA functions): every lane named in the mask must arrive (lockstep); the last one
//   to arrive computes the results of all lanes. A lane of the mask that has exited, lanes
//   that disagree on the mask or the operation, or threads waiting on each other forever
//   (deadlock) abort the launch: cudaGetLastError() returns cudaErrorLaunchFailure and the
//   reason goes to stderr.
// * __shared__ variables are function-local statics (thread_local): one copy shared by
//   the threads of the running block, reused (not cleared) by the next block, like shared
//   memory. extern (dynamic) shared memory is not supported.
// * atomicAdd is a plain read-modify-write: fibers never run at the same time, so it is
//   atomic here, and the accumulation order is deterministic (block order, then thread
//   order between barriers), unlike on a GPU.
// * half / bfloat16 storage types with round-to-nearest-even conversions.
// * nvcuda::wmma (16x16x16, half/bf16 -> float): a fragment holds the WHOLE tile in every
//   lane (the real layout is opaque, so code that only loads, multiplies, fills and stores
//   fragments, or applies the same operation to every element, behaves the same);
//   products are accumulated in float, in k order (tensor cores may round differently).
//
// What this proves: indexing, bounds, barrier placement (a thread that skips a barrier
// deadlocks here), warp-collective usage and the arithmetic of the kernels, in fp32 on the
// host. What it does NOT prove: speed, occupancy, memory ordering or races between real
// concurrent threads (fibers switch only at barriers and collectives, so a missing
// __syncthreads between a shared-memory write and a read by ANOTHER thread of the same
// phase can go unnoticed), shared-memory bank conflicts, register spills, launch limits of
// real hardware, the tensor-core fragment layout, and the device math library (expf etc.
// are the host libm's).
#pragma once

#include <ucontext.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define LDMVFI_HOST_EMULATION 1

// ---------------------------------------------------------------------------------------
// Keywords
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static thread_local
#define __constant__ static

// ---------------------------------------------------------------------------------------
// Runtime types
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
};
typedef struct CUstream_st* cudaStream_t;

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};
struct __attribute__((aligned(8))) float2 {
  float x, y;
};

inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;
constexpr int warpSize = 32;

// ---------------------------------------------------------------------------------------
// half / bfloat16 storage
struct __half {
  unsigned short __x;
};
struct __nv_bfloat16 {
  unsigned short __x;
};
typedef __half half;

inline float __half2float(__half h) {
  _Float16 f;
  std::memcpy(&f, &h.__x, 2);
  return static_cast<float>(f);
}
inline __half __float2half_rn(float v) {
  const _Float16 f = static_cast<_Float16>(v);  // round to nearest even
  __half h;
  std::memcpy(&h.__x, &f, 2);
  return h;
}
inline float __bfloat162float(__nv_bfloat16 b) {
  const uint32_t u = static_cast<uint32_t>(b.__x) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  __nv_bfloat16 b;
  if (std::isnan(v)) {
    b.__x = static_cast<unsigned short>((u >> 16) | 0x40u);  // quiet NaN
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    b.__x = static_cast<unsigned short>(u >> 16);
  }
  return b;
}
inline __half __ushort_as_half(unsigned short v) { return __half{v}; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short v) { return __nv_bfloat16{v}; }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }

// ---------------------------------------------------------------------------------------
// Loads, math
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}
template <typename T>
inline T __ldcs(const T* p) {
  return *p;
}
template <typename T>
inline void __stcs(T* p, T v) {
  *p = v;
}

using std::isfinite;  // CUDA declares these in the global namespace
using std::isinf;
using std::isnan;

inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline float __expf(float v) { return std::exp(v); }
inline float __logf(float v) { return std::log(v); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float v) { return 1.0f / v; }
inline float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
inline float __saturatef(float v) { return v < 0.f ? 0.f : (v > 1.f ? 1.f : v); }
inline int __float2int_rd(float v) { return static_cast<int>(std::floor(v)); }
inline int __float2int_rz(float v) { return static_cast<int>(v); }
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __ffs(int v) { return __builtin_ffs(v); }

template <typename T>
inline T atomicAdd(T* p, T v) {  // fibers never run concurrently: a plain add is atomic
  const T old = *p;
  *p = old + v;
  return old;
}

// ---------------------------------------------------------------------------------------
// Scheduler
namespace cuda_host {

enum class State { Runnable, AtBarrier, AtWarp, Done };
enum class WarpOp { None, Shfl, Ballot, Sync, Wmma };

struct Fiber {
  ucontext_t ctx;
  uint3 tid;
  State state = State::Runnable;
  // warp collective in progress
  WarpOp op = WarpOp::None;
  unsigned mask = 0;
  int src = 0;        // shuffle source lane
  uint64_t in = 0;    // this lane's value (bits)
  uint64_t out = 0;   // result (bits)
  int pred = 0;       // ballot predicate
  const void* wmma_key = nullptr;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t sched;
  int current = -1;
  bool failed = false;
};

inline thread_local Block* g_block = nullptr;
inline thread_local cudaError_t g_last_error = cudaSuccess;
inline thread_local void (*g_entry)(void*) = nullptr;
inline thread_local void* g_entry_arg = nullptr;

constexpr size_t kStackBytes = 256 * 1024;

struct StackPool {
  std::vector<std::unique_ptr<char[]>> stacks;
  char* get(size_t i) {
    while (stacks.size() <= i) stacks.emplace_back(new char[kStackBytes]);  // untouched pages stay uncommitted
    return stacks[i].get();
  }
};
inline thread_local StackPool g_stacks;

inline void fail(const char* what) {
  Block* b = g_block;
  if (b && !b->failed) {
    std::fprintf(stderr, "[cuda_host emulation] launch aborted: %s (block %u,%u,%u thread %u,%u,%u)\n", what,
                 blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
    b->failed = true;
  }
}

inline void yield_to_scheduler() {
  Block* b = g_block;
  swapcontext(&b->fibers[b->current].ctx, &b->sched);
}

inline int linear_tid(const uint3& t) {
  return static_cast<int>(t.x + blockDim.x * (t.y + blockDim.y * t.z));
}

inline void fiber_main() {
  g_entry(g_entry_arg);
  Block* b = g_block;
  b->fibers[b->current].state = State::Done;
  swapcontext(&b->fibers[b->current].ctx, &b->sched);  // never resumed
}

// Resolve a warp collective of warp `w` whose lanes (those of the mask of a waiting lane)
// have all arrived. Returns true if one was resolved (its lanes made runnable).
inline bool try_resolve_group(Block& b, int base, const Fiber& f0);

inline bool try_resolve_warp(Block& b, int w) {
  const int n = static_cast<int>(b.fibers.size());
  const int base = w * 32;
  for (int l = 0; l < 32 && base + l < n && !b.failed; ++l)
    if (b.fibers[base + l].state == State::AtWarp && try_resolve_group(b, base, b.fibers[base + l])) return true;
  return false;
}

inline bool try_resolve_group(Block& b, int base, const Fiber& f0) {
  const int n = static_cast<int>(b.fibers.size());
  const unsigned mask = f0.mask;
  for (int l = 0; l < 32; ++l) {
    if (!((mask >> l) & 1u)) continue;
    if (base + l >= n) {
      fail("warp collective mask names a lane beyond the block");
      return false;
    }
    const Fiber& f = b.fibers[base + l];
    if (f.state == State::Done) {
      fail("warp collective: a lane of the mask has exited");
      return false;
    }
    if (f.state != State::AtWarp) return false;  // not arrived yet
    if (f.mask != mask || f.op != f0.op || f.wmma_key != f0.wmma_key) {
      fail("warp collective: lanes of the mask disagree on the mask, the operation or the operands");
      return false;
    }
  }
  unsigned ballot = 0;
  for (int l = 0; l < 32; ++l)
    if (((mask >> l) & 1u) && b.fibers[base + l].pred) ballot |= 1u << l;
  for (int l = 0; l < 32; ++l) {
    if (!((mask >> l) & 1u)) continue;
    Fiber& f = b.fibers[base + l];
    if (f.op == WarpOp::Shfl) {
      const int s = f.src;  // an inactive source lane gives an undefined value on the GPU: flag it
      if (s < 0 || s >= 32 || !((mask >> s) & 1u)) {
        fail("shuffle reads a lane outside the mask");
        return false;
      }
      f.out = b.fibers[base + s].in;
    } else {
      f.out = f.op == WarpOp::Ballot ? ballot : 0;
    }
  }
  for (int l = 0; l < 32; ++l) {
    if (!((mask >> l) & 1u)) continue;
    b.fibers[base + l].state = State::Runnable;
    b.fibers[base + l].op = WarpOp::None;
  }
  return true;
}

// Arrive at a warp collective and wait for the others; returns the lane's result.
inline uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t in, int src, int pred,
                                const void* key = nullptr) {
  Block* b = g_block;
  Fiber& f = b->fibers[b->current];
  const int lane = b->current & 31;
  if (!((mask >> lane) & 1u)) fail("warp collective called by a lane outside its mask");
  f.op = op;
  f.mask = mask;
  f.in = in;
  f.src = src;
  f.pred = pred;
  f.wmma_key = key;
  f.state = State::AtWarp;
  yield_to_scheduler();
  return b->fibers[b->current].out;
}

template <typename F>
struct Launch;

template <typename... P>
struct Launch<void (*)(P...)> {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;

  template <typename... A>
  void operator()(A&&... a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    std::tuple<std::decay_t<P>...> args(static_cast<std::decay_t<P>>(std::forward<A>(a))...);
    run(args);
  }

  template <typename Tup>
  void run(Tup& args) const {
    const uint64_t nthreads = uint64_t(block.x) * block.y * block.z;
    if (nthreads == 0 || nthreads > 1024 || block.z > 64 || grid.x == 0 || grid.y == 0 || grid.z == 0 ||
        grid.y > 65535 || grid.z > 65535 || smem > 0) {
      g_last_error = cudaErrorInvalidConfiguration;
      return;
    }
    struct Entry {
      void (*kernel)(P...);
      Tup* args;
      static void call(void* p) {
        Entry* e = static_cast<Entry*>(p);
        std::apply(e->kernel, *e->args);
      }
    } entry{kernel, &args};

    Block blk;
    Block* saved_block = g_block;
    g_block = &blk;
    g_entry = &Entry::call;
    g_entry_arg = &entry;
    blockDim = block;
    gridDim = grid;
    const int n = static_cast<int>(nthreads);
    blk.fibers.resize(n);
    for (unsigned bz = 0; bz < grid.z && !blk.failed; ++bz)
      for (unsigned by = 0; by < grid.y && !blk.failed; ++by)
        for (unsigned bx = 0; bx < grid.x && !blk.failed; ++bx) {
          blockIdx = uint3{bx, by, bz};
          run_block(blk, n);
        }
    if (blk.failed) g_last_error = cudaErrorLaunchFailure;
    g_block = saved_block;
  }

  static void run_block(Block& blk, int n) {
    for (int t = 0; t < n; ++t) {
      Fiber& f = blk.fibers[t];
      f = Fiber();
      f.tid = uint3{static_cast<unsigned>(t % blockDim.x), static_cast<unsigned>((t / blockDim.x) % blockDim.y),
                    static_cast<unsigned>(t / (blockDim.x * blockDim.y))};
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = g_stacks.get(t);
      f.ctx.uc_stack.ss_size = kStackBytes;
      f.ctx.uc_link = nullptr;
      makecontext(&f.ctx, reinterpret_cast<void (*)()>(&fiber_main), 0);
    }
    const int nwarps = (n + 31) / 32;
    for (;;) {
      bool ran = false;
      for (int t = 0; t < n && !blk.failed; ++t) {
        if (blk.fibers[t].state != State::Runnable) continue;
        blk.current = t;
        threadIdx = blk.fibers[t].tid;
        swapcontext(&blk.sched, &blk.fibers[t].ctx);
        ran = true;
      }
      if (blk.failed) return;
      if (ran) continue;
      // nothing runnable: resolve warp collectives, then the block barrier
      bool progressed = false;
      for (int w = 0; w < nwarps && !blk.failed; ++w) progressed |= try_resolve_warp(blk, w);
      if (blk.failed) return;
      if (progressed) continue;
      int done = 0, at_barrier = 0;
      for (const Fiber& f : blk.fibers) {
        done += f.state == State::Done;
        at_barrier += f.state == State::AtBarrier;
      }
      if (done == n) return;
      if (done + at_barrier == n) {
        for (Fiber& f : blk.fibers)
          if (f.state == State::AtBarrier) f.state = State::Runnable;
        continue;
      }
      blk.current = -1;
      fail(at_barrier ? "deadlock: threads wait at __syncthreads while others wait in a warp collective"
                      : "deadlock: a warp collective can never complete");
      return;
    }
  }
};

template <typename... P>
Launch<void (*)(P...)> make_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, void (*kernel)(P...)) {
  return Launch<void (*)(P...)>{kernel, grid, block, smem};
}

template <typename T>
inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a type over 8 bytes");
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <typename T>
inline T from_bits(uint64_t u) {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

inline int current_lane() { return g_block->current & 31; }

}  // namespace cuda_host

// ---------------------------------------------------------------------------------------
// Launch seam (see csrc/kernels/common.cuh)
#define LDMVFI_LAUNCH(grid, block, smem, stream, ...) \
  ::cuda_host::make_launch((grid), (block), (smem), (stream), &__VA_ARGS__)

// ---------------------------------------------------------------------------------------
// Barriers and warp collectives
inline void __syncthreads() {
  cuda_host::Block* b = cuda_host::g_block;
  b->fibers[b->current].state = cuda_host::State::AtBarrier;
  cuda_host::yield_to_scheduler();
}
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  cuda_host::warp_collective(cuda_host::WarpOp::Sync, mask, 0, 0, 0);
}
inline void __threadfence_block() {}
inline void __threadfence() {}

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src_lane, int width = 32) {
  const int lane = cuda_host::current_lane();
  const int src = (lane & ~(width - 1)) + (src_lane & (width - 1));
  return cuda_host::from_bits<T>(
      cuda_host::warp_collective(cuda_host::WarpOp::Shfl, mask, cuda_host::to_bits(v), src, 0));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  const int lane = cuda_host::current_lane();
  int src = lane ^ lane_mask;
  if (src >= ((lane & ~(width - 1)) + width)) src = lane;
  return cuda_host::from_bits<T>(
      cuda_host::warp_collective(cuda_host::WarpOp::Shfl, mask, cuda_host::to_bits(v), src, 0));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = cuda_host::current_lane();
  int src = lane + static_cast<int>(delta);
  if (src >= ((lane & ~(width - 1)) + width)) src = lane;
  return cuda_host::from_bits<T>(
      cuda_host::warp_collective(cuda_host::WarpOp::Shfl, mask, cuda_host::to_bits(v), src, 0));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  const int lane = cuda_host::current_lane();
  int src = lane - static_cast<int>(delta);
  if (src < (lane & ~(width - 1))) src = lane;
  return cuda_host::from_bits<T>(
      cuda_host::warp_collective(cuda_host::WarpOp::Shfl, mask, cuda_host::to_bits(v), src, 0));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return static_cast<unsigned>(cuda_host::warp_collective(cuda_host::WarpOp::Ballot, mask, 0, 0, pred != 0));
}
inline int __any_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return __ballot_sync(mask, pred) == mask; }
inline unsigned __activemask() { return 0xffffffffu; }

// ---------------------------------------------------------------------------------------
// WMMA (nvcuda::wmma), 16x16x16 with half / bf16 inputs and float accumulators. Every lane
// holds the whole tile (see the header comment); each call is a warp collective (all 32
// lanes must call it with the same pointer), then every lane computes the same result.
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

namespace detail {
inline float to_f(float v) { return v; }
inline float to_f(__half v) { return __half2float(v); }
inline float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename Use, int M, int N, int K>
struct dims;
template <int M, int N, int K>
struct dims<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct dims<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct dims<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};
inline void collective(const void* key) {
  cuda_host::warp_collective(cuda_host::WarpOp::Wmma, 0xffffffffu, 0, 0, 0, key);
}
}  // namespace detail

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "emulated wmma: 16x16x16 only");
  static constexpr int rows = detail::dims<Use, M, N, K>::rows, cols = detail::dims<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  float x[num_elements];  // row-major tile, values converted to float
};

template <typename Use, int M, int N, int K, typename T, typename L>
inline void fill_fragment(fragment<Use, M, N, K, T, L>& f, float v) {
  for (float& e : f.x) e = v;
}

template <typename Use, int M, int N, int K, typename T, typename L, typename P>
inline void load_matrix_sync(fragment<Use, M, N, K, T, L>& f, const P* p, unsigned ldm) {
  detail::collective(p);
  using F = fragment<Use, M, N, K, T, L>;
  constexpr bool col = std::is_same<L, col_major>::value;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = detail::to_f(col ? p[c * ldm + r] : p[r * ldm + c]);
}

template <int M, int N, int K, typename T>
inline void load_matrix_sync(fragment<accumulator, M, N, K, T, void>& f, const float* p, unsigned ldm, layout_t l) {
  detail::collective(p);
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) f.x[r * N + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
}

template <int M, int N, int K, typename T>
inline void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, T, void>& f, unsigned ldm, layout_t l) {
  detail::collective(p);
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * N + c];
}

template <int M, int N, int K, typename TA, typename LA, typename TB, typename LB, typename TC>
inline void mma_sync(fragment<accumulator, M, N, K, TC, void>& d, const fragment<matrix_a, M, N, K, TA, LA>& a,
                     const fragment<matrix_b, M, N, K, TB, LB>& b, const fragment<accumulator, M, N, K, TC, void>& c) {
  detail::collective(nullptr);
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s = std::fma(a.x[i * K + k], b.x[k * N + j], s);
      out[i * N + j] = s;
    }
  std::memcpy(d.x, out, sizeof(out));
}
}  // namespace wmma
}  // namespace nvcuda

// ---------------------------------------------------------------------------------------
// Runtime API subset
inline cudaError_t cudaGetLastError() {
  const cudaError_t e = cuda_host::g_last_error;
  cuda_host::g_last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return cuda_host::g_last_error; }
inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure (host emulation: see stderr)";
    case cudaErrorNotSupported: return "operation not supported";
  }
  return "unrecognized error code";
}
inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  if (bytes && p == nullptr) return cudaErrorInvalidValue;
  if (bytes) std::memset(p, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, int = 0, cudaStream_t = nullptr) {
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
