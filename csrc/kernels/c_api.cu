// C API of the ldmvfi_fast CUDA kernels (csrc/include/ldmvfi_fast/c_api.h): thin wrappers
// that validate pointers/sizes and call the launchers of dsepconv.cuh and
// maxvit_attention.cuh (the same templates the torch ops instantiate). Every launch is
// checked with cudaGetLastError() inside the launcher and its code returned.
#include "ldmvfi_fast/c_api.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "dsepconv.cuh"
#include "maxvit_attention.cuh"

namespace {

using ldmvfi::kernels::launch_decoder_output;
using ldmvfi::kernels::launch_dsepconv_backward;
using ldmvfi::kernels::launch_dsepconv_forward;
using ldmvfi::kernels::launch_maxvit_attention_contiguous;

template <typename T>
const T* as(const void* p) {
  return reinterpret_cast<const T*>(p);
}
template <typename T>
T* as_mut(void* p) {
  return reinterpret_cast<T*>(p);
}

bool any_null(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (p == nullptr) return true;
  return false;
}

template <typename T>
int dsepconv_forward(const void* input, const void* vertical, const void* horizontal, const void* offset_x,
                     const void* offset_y, const void* mask, void* output, int B, int C, int K, int H, int W,
                     cudaStream_t stream) {
  const bool empty = B == 0 || C == 0 || H == 0 || W == 0;
  if (!empty && any_null({input, vertical, horizontal, offset_x, offset_y, mask, output}))
    return static_cast<int>(cudaErrorInvalidValue);
  return static_cast<int>(launch_dsepconv_forward<T>(as<T>(input), as<T>(vertical), as<T>(horizontal),
                                                     as<T>(offset_x), as<T>(offset_y), as<T>(mask),
                                                     as_mut<T>(output), B, C, K, H, W, stream));
}

template <typename T>
int decoder_output(const void* frame0, const void* frame1, const void* vertical0, const void* horizontal0,
                   const void* offset_x0, const void* offset_y0, const void* vertical1, const void* horizontal1,
                   const void* offset_x1, const void* offset_y1, const void* mask, const void* residual,
                   void* output, int B, int C, int K, int H, int W, cudaStream_t stream) {
  const bool empty = B == 0 || C == 0 || H == 0 || W == 0;
  if (!empty && any_null({frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0, vertical1, horizontal1,
                          offset_x1, offset_y1, mask, residual, output}))
    return static_cast<int>(cudaErrorInvalidValue);
  return static_cast<int>(launch_decoder_output<T>(
      as<T>(frame0), as<T>(frame1), as<T>(vertical0), as<T>(horizontal0), as<T>(offset_x0), as<T>(offset_y0),
      as<T>(vertical1), as<T>(horizontal1), as<T>(offset_x1), as<T>(offset_y1), as<T>(mask), as<T>(residual),
      as_mut<T>(output), B, C, K, H, W, stream));
}

template <typename T>
int maxvit_attention(const void* q, const void* k, const void* v, const float* bias_table, void* output, int B,
                     int H, int W, int C, int window, int grid, int num_heads, float scale, cudaStream_t stream) {
  const bool empty = B == 0 || H == 0 || W == 0 || C == 0;
  if (!empty && any_null({q, k, v, bias_table, output})) return static_cast<int>(cudaErrorInvalidValue);
  return static_cast<int>(launch_maxvit_attention_contiguous<T>(as<T>(q), as<T>(k), as<T>(v), bias_table,
                                                                as_mut<T>(output), B, H, W, C, window, grid != 0,
                                                                num_heads, scale, stream));
}

}  // namespace

extern "C" {

int ldmvfi_api_version(void) { return (1 << 16) | 0; }

const char* ldmvfi_error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

int ldmvfi_dsepconv_forward_f32(const float* input, const float* vertical, const float* horizontal,
                                const float* offset_x, const float* offset_y, const float* mask, float* output, int B,
                                int C, int K, int H, int W, cudaStream_t stream) {
  return dsepconv_forward<float>(input, vertical, horizontal, offset_x, offset_y, mask, output, B, C, K, H, W,
                                 stream);
}

int ldmvfi_dsepconv_forward_f16(const ldmvfi_f16* input, const ldmvfi_f16* vertical, const ldmvfi_f16* horizontal,
                                const ldmvfi_f16* offset_x, const ldmvfi_f16* offset_y, const ldmvfi_f16* mask,
                                ldmvfi_f16* output, int B, int C, int K, int H, int W, cudaStream_t stream) {
  return dsepconv_forward<__half>(input, vertical, horizontal, offset_x, offset_y, mask, output, B, C, K, H, W,
                                  stream);
}

int ldmvfi_dsepconv_forward_bf16(const ldmvfi_bf16* input, const ldmvfi_bf16* vertical,
                                 const ldmvfi_bf16* horizontal, const ldmvfi_bf16* offset_x,
                                 const ldmvfi_bf16* offset_y, const ldmvfi_bf16* mask, ldmvfi_bf16* output, int B,
                                 int C, int K, int H, int W, cudaStream_t stream) {
  return dsepconv_forward<__nv_bfloat16>(input, vertical, horizontal, offset_x, offset_y, mask, output, B, C, K, H,
                                         W, stream);
}

int ldmvfi_dsepconv_backward_f32(const float* grad_output, const float* input, const float* vertical,
                                 const float* horizontal, const float* offset_x, const float* offset_y,
                                 const float* mask, float* grad_input, float* grad_vertical, float* grad_horizontal,
                                 float* grad_offset_x, float* grad_offset_y, float* grad_mask, int B, int C, int K,
                                 int H, int W, cudaStream_t stream) {
  cudaError_t err = ldmvfi::kernels::detail::check_dims(B, C, K, H, W);
  if (err != cudaSuccess) return static_cast<int>(err);
  if (B == 0 || H == 0 || W == 0) return static_cast<int>(cudaSuccess);
  if (any_null({grad_output, input, vertical, horizontal, offset_x, offset_y, mask, grad_vertical, grad_horizontal,
                grad_offset_x, grad_offset_y, grad_mask}) ||
      (C > 0 && grad_input == nullptr))
    return static_cast<int>(cudaErrorInvalidValue);
  if (C > 0) {
    const size_t bytes = sizeof(float) * static_cast<size_t>(B) * C * (H + K - 1) * (W + K - 1);
    err = cudaMemsetAsync(grad_input, 0, bytes, stream);
    if (err != cudaSuccess) return static_cast<int>(err);
  }
  return static_cast<int>(launch_dsepconv_backward<float>(grad_output, input, vertical, horizontal, offset_x,
                                                          offset_y, mask, grad_input, grad_vertical,
                                                          grad_horizontal, grad_offset_x, grad_offset_y, grad_mask,
                                                          B, C, K, H, W, stream));
}

int ldmvfi_decoder_output_f32(const float* frame0, const float* frame1, const float* vertical0,
                              const float* horizontal0, const float* offset_x0, const float* offset_y0,
                              const float* vertical1, const float* horizontal1, const float* offset_x1,
                              const float* offset_y1, const float* mask, const float* residual, float* output, int B,
                              int C, int K, int H, int W, cudaStream_t stream) {
  return decoder_output<float>(frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0, vertical1, horizontal1,
                               offset_x1, offset_y1, mask, residual, output, B, C, K, H, W, stream);
}

int ldmvfi_decoder_output_f16(const ldmvfi_f16* frame0, const ldmvfi_f16* frame1, const ldmvfi_f16* vertical0,
                              const ldmvfi_f16* horizontal0, const ldmvfi_f16* offset_x0, const ldmvfi_f16* offset_y0,
                              const ldmvfi_f16* vertical1, const ldmvfi_f16* horizontal1,
                              const ldmvfi_f16* offset_x1, const ldmvfi_f16* offset_y1, const ldmvfi_f16* mask,
                              const ldmvfi_f16* residual, ldmvfi_f16* output, int B, int C, int K, int H, int W,
                              cudaStream_t stream) {
  return decoder_output<__half>(frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0, vertical1,
                                horizontal1, offset_x1, offset_y1, mask, residual, output, B, C, K, H, W, stream);
}

int ldmvfi_decoder_output_bf16(const ldmvfi_bf16* frame0, const ldmvfi_bf16* frame1, const ldmvfi_bf16* vertical0,
                               const ldmvfi_bf16* horizontal0, const ldmvfi_bf16* offset_x0,
                               const ldmvfi_bf16* offset_y0, const ldmvfi_bf16* vertical1,
                               const ldmvfi_bf16* horizontal1, const ldmvfi_bf16* offset_x1,
                               const ldmvfi_bf16* offset_y1, const ldmvfi_bf16* mask, const ldmvfi_bf16* residual,
                               ldmvfi_bf16* output, int B, int C, int K, int H, int W, cudaStream_t stream) {
  return decoder_output<__nv_bfloat16>(frame0, frame1, vertical0, horizontal0, offset_x0, offset_y0, vertical1,
                                       horizontal1, offset_x1, offset_y1, mask, residual, output, B, C, K, H, W,
                                       stream);
}

int ldmvfi_maxvit_attention_f32(const float* q, const float* k, const float* v, const float* bias_table,
                                float* output, int B, int H, int W, int C, int window, int grid, int num_heads,
                                float scale, cudaStream_t stream) {
  return maxvit_attention<float>(q, k, v, bias_table, output, B, H, W, C, window, grid, num_heads, scale, stream);
}

int ldmvfi_maxvit_attention_f16(const ldmvfi_f16* q, const ldmvfi_f16* k, const ldmvfi_f16* v,
                                const float* bias_table, ldmvfi_f16* output, int B, int H, int W, int C, int window,
                                int grid, int num_heads, float scale, cudaStream_t stream) {
  return maxvit_attention<__half>(q, k, v, bias_table, output, B, H, W, C, window, grid, num_heads, scale, stream);
}

int ldmvfi_maxvit_attention_bf16(const ldmvfi_bf16* q, const ldmvfi_bf16* k, const ldmvfi_bf16* v,
                                 const float* bias_table, ldmvfi_bf16* output, int B, int H, int W, int C,
                                 int window, int grid, int num_heads, float scale, cudaStream_t stream) {
  return maxvit_attention<__nv_bfloat16>(q, k, v, bias_table, output, B, H, W, C, window, grid, num_heads, scale,
                                         stream);
}

}  // extern "C"
