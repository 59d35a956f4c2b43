// Self-test kernels of the host emulation (csrc/emulation/cuda_host.h), linked into the
// emulated kernel library by tests/test_cuda_emulated.py. Each entry point launches one
// small kernel through LDMVFI_LAUNCH and returns cudaGetLastError() as int; the test
// compares the outputs with what a GPU computes.
#include <cuda_runtime.h>

#include "common.cuh"

namespace {

// out[t] for a 64-thread block (2 warps), 6 values per thread:
// xor-butterfly sum, shfl_down(3), shfl_up(5), shfl(lane 7), ballot(lane odd), any/all.
__global__ void warp_ops_kernel(const float* in, float* out) {
  const int t = threadIdx.x, lane = t & 31;
  const float v = in[t];
  float s = v;
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  out[t * 6 + 0] = s;
  out[t * 6 + 1] = __shfl_down_sync(0xffffffffu, v, 3);
  out[t * 6 + 2] = __shfl_up_sync(0xffffffffu, v, 5);
  out[t * 6 + 3] = __shfl_sync(0xffffffffu, v, 7);
  out[t * 6 + 4] = static_cast<float>(__ballot_sync(0xffffffffu, lane & 1) == 0xaaaaaaaau);
  out[t * 6 + 5] = static_cast<float>(__any_sync(0xffffffffu, lane == 31) + 2 * __all_sync(0xffffffffu, lane < 31));
}

// Shared memory + __syncthreads: out[b * n + t] = in[b * n + (n - 1 - t)] + block sum, for
// blocks of n = blockDim.x * blockDim.y threads (2-D blocks).
__global__ void shared_reverse_kernel(const float* in, float* out) {
  __shared__ float buf[256];
  __shared__ float total;
  const int n = blockDim.x * blockDim.y;
  const int t = threadIdx.y * blockDim.x + threadIdx.x;
  const int base = blockIdx.x * n;
  buf[t] = in[base + t];
  if (t == 0) total = 0.f;
  __syncthreads();
  if (t == 0)
    for (int u = 0; u < n; ++u) total += buf[u];
  __syncthreads();
  const float r = buf[n - 1 - t] + total;
  __syncthreads();  // everybody has read buf before the next phase overwrites it
  buf[t] = 0.f;
  out[base + t] = r;
}

// Misuse: lanes 0-15 shuffle while lanes 16-31 wait at __syncthreads (deadlock on a GPU).
__global__ void split_warp_kernel(float* out) {
  const int lane = threadIdx.x & 31;
  if (lane < 16) {
    out[lane] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
  } else {
    __syncthreads();
  }
}

// Misuse: lane 0 exits, the others shuffle with a full mask.
__global__ void exited_lane_kernel(float* out) {
  if (threadIdx.x == 0) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.f, 1);
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int ldmvfi_emul_warp_ops(const float* in, float* out) {
  LDMVFI_LAUNCH(dim3(1), dim3(64), 0, nullptr, warp_ops_kernel)(in, out);
  return static_cast<int>(cudaGetLastError());
}

__attribute__((visibility("default"))) int ldmvfi_emul_shared_reverse(const float* in, float* out, int blocks) {
  LDMVFI_LAUNCH(dim3(blocks), dim3(16, 8), 0, nullptr, shared_reverse_kernel)(in, out);
  return static_cast<int>(cudaGetLastError());
}

__attribute__((visibility("default"))) int ldmvfi_emul_split_warp(float* out) {
  LDMVFI_LAUNCH(dim3(1), dim3(32), 0, nullptr, split_warp_kernel)(out);
  return static_cast<int>(cudaGetLastError());
}

__attribute__((visibility("default"))) int ldmvfi_emul_exited_lane(float* out) {
  LDMVFI_LAUNCH(dim3(1), dim3(32), 0, nullptr, exited_lane_kernel)(out);
  return static_cast<int>(cudaGetLastError());
}

__attribute__((visibility("default"))) int ldmvfi_emul_bad_config(float* out) {
  LDMVFI_LAUNCH(dim3(1), dim3(2048), 0, nullptr, exited_lane_kernel)(out);
  return static_cast<int>(cudaGetLastError());
}

}  // extern "C"
