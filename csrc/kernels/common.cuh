// Small device helpers shared by the ldmvfi_fast CUDA kernels (torch-free).
//
// Storage types: float, double, __half, __nv_bfloat16. Arithmetic is done in Acc<T>::type:
// float for float/half/bf16, double for double (double exists so that the torch ops can be
// checked with torch.autograd.gradcheck). Conversions use the explicit intrinsics only, so
// the code compiles under torch's -D__CUDA_NO_HALF_CONVERSIONS__ / -D__CUDA_NO_HALF_OPERATORS__
// / -D__CUDA_NO_BFLOAT16_CONVERSIONS__ flags.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

// Kernel launch seam: every launch in csrc/kernels is written
//   LDMVFI_LAUNCH(grid, block, shared_bytes, stream, kernel)(args...);
// nvcc expands it to kernel<<<grid, block, shared_bytes, stream>>>(args...); the host
// emulation (csrc/emulation/cuda_host.h, included through its <cuda_runtime.h> shim) defines
// it first and runs the grid on the CPU.
#ifndef LDMVFI_LAUNCH
#define LDMVFI_LAUNCH(grid, block, smem, stream, ...) __VA_ARGS__<<<grid, block, smem, stream>>>
#endif

namespace ldmvfi {
namespace kernels {

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

template <typename T>
__device__ __forceinline__ typename Acc<T>::type to_acc(T v);
template <>
__device__ __forceinline__ float to_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double to_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ float to_acc<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_acc<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_acc(typename Acc<T>::type v);
template <>
__device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <>
__device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Load through the read-only (non-coherent) data path: data that is re-read by
// neighbouring threads (frames gathered by bilinear taps, q/k/v rows).
template <typename T>
__device__ __forceinline__ typename Acc<T>::type load_ro(const T* p);
template <>
__device__ __forceinline__ float load_ro<float>(const float* p) { return __ldg(p); }
template <>
__device__ __forceinline__ double load_ro<double>(const double* p) { return __ldg(p); }
template <>
__device__ __forceinline__ float load_ro<__half>(const __half* p) {
  return __half2float(__ushort_as_half(__ldg(reinterpret_cast<const unsigned short*>(p))));
}
template <>
__device__ __forceinline__ float load_ro<__nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat162float(__ushort_as_bfloat16(__ldg(reinterpret_cast<const unsigned short*>(p))));
}

// Streaming load (evict-first): per-pixel planes that are read exactly once, so that they
// do not push the gathered frames out of L1/L2.
template <typename T>
__device__ __forceinline__ typename Acc<T>::type load_stream(const T* p);
template <>
__device__ __forceinline__ float load_stream<float>(const float* p) { return __ldcs(p); }
template <>
__device__ __forceinline__ double load_stream<double>(const double* p) { return __ldcs(p); }
template <>
__device__ __forceinline__ float load_stream<__half>(const __half* p) {
  return __half2float(__ushort_as_half(__ldcs(reinterpret_cast<const unsigned short*>(p))));
}
template <>
__device__ __forceinline__ float load_stream<__nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat162float(__ushort_as_bfloat16(__ldcs(reinterpret_cast<const unsigned short*>(p))));
}

// Typed storage helper.
template <typename T>
__device__ __forceinline__ void store(T* p, typename Acc<T>::type v) {
  *p = from_acc<T>(v);
}

}  // namespace kernels
}  // namespace ldmvfi
