/* Plain C API of the ldmvfi_fast CUDA kernels (library `ldmvfi_fast_kernels`).
 *
 * For C/C++ applications and plugins (e.g. a TensorRT plugin) that do not link torch.
 * Every function:
 *   - takes DEVICE pointers to contiguous arrays (NCHW for DSepConv / decoder output,
 *     channel-last (B, H, W, C) for attention);
 *   - enqueues its kernel(s) on `stream` (0 = the legacy default stream) and does not
 *     synchronize;
 *   - returns a cudaError_t value as int: 0 (cudaSuccess) on success,
 *     cudaErrorInvalidValue (1) for invalid sizes or null pointers, cudaErrorNotSupported
 *     for an unsupported configuration, or the launch error (cudaGetLastError()).
 *     ldmvfi_error_string() turns it into text.
 * Half-precision arrays are passed as ldmvfi_f16 / ldmvfi_bf16 (16-bit storage: reinterpret
 * a __half* / __nv_bfloat16* pointer). All arithmetic is float32.
 *
 * Semantics: ldmvfi_fast/ops/dsepconv_ref.py, decoder_output_ref.py, maxvit_ref.py.
 */
#ifndef LDMVFI_FAST_C_API_H_
#define LDMVFI_FAST_C_API_H_

#include <cuda_runtime_api.h>
#include <stdint.h>

#if defined(_WIN32)
#if defined(LDMVFI_FAST_KERNELS_BUILD)
#define LDMVFI_API __declspec(dllexport)
#else
#define LDMVFI_API __declspec(dllimport)
#endif
#else
#define LDMVFI_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t ldmvfi_f16;  /* IEEE binary16 storage */
typedef uint16_t ldmvfi_bf16; /* bfloat16 storage */

/* Version of the C API: (major << 16) | minor. */
LDMVFI_API int ldmvfi_api_version(void);

/* Text for a code returned by this API (a cudaError_t value). Never NULL. */
LDMVFI_API const char* ldmvfi_error_string(int code);

/* DSepConv forward: output (B, C, H, W).
 *   input (B, C, H+K-1, W+K-1): frame padded by (K-1)/2;
 *   vertical, horizontal (B, K, H, W); offset_x (row displacement), offset_y (column
 *   displacement), mask (B, K*K, H, W). */
LDMVFI_API int ldmvfi_dsepconv_forward_f32(const float* input, const float* vertical, const float* horizontal,
                                           const float* offset_x, const float* offset_y, const float* mask,
                                           float* output, int B, int C, int K, int H, int W, cudaStream_t stream);
LDMVFI_API int ldmvfi_dsepconv_forward_f16(const ldmvfi_f16* input, const ldmvfi_f16* vertical,
                                           const ldmvfi_f16* horizontal, const ldmvfi_f16* offset_x,
                                           const ldmvfi_f16* offset_y, const ldmvfi_f16* mask, ldmvfi_f16* output,
                                           int B, int C, int K, int H, int W, cudaStream_t stream);
LDMVFI_API int ldmvfi_dsepconv_forward_bf16(const ldmvfi_bf16* input, const ldmvfi_bf16* vertical,
                                            const ldmvfi_bf16* horizontal, const ldmvfi_bf16* offset_x,
                                            const ldmvfi_bf16* offset_y, const ldmvfi_bf16* mask,
                                            ldmvfi_bf16* output, int B, int C, int K, int H, int W,
                                            cudaStream_t stream);

/* DSepConv backward (float32): given grad_output (B, C, H, W), writes the gradients of
 * input (B, C, H+K-1, W+K-1; zeroed then accumulated by this call), vertical, horizontal
 * (B, K, H, W), offset_x, offset_y, mask (B, K*K, H, W). K = 5 or K <= 15. */
LDMVFI_API int ldmvfi_dsepconv_backward_f32(const float* grad_output, const float* input, const float* vertical,
                                            const float* horizontal, const float* offset_x, const float* offset_y,
                                            const float* mask, float* grad_input, float* grad_vertical,
                                            float* grad_horizontal, float* grad_offset_x, float* grad_offset_y,
                                            float* grad_mask, int B, int C, int K, int H, int W,
                                            cudaStream_t stream);

/* Fused decoder output (B, C, H, W):
 *   warp(pad(frame0), vertical0, horizontal0, offset_x0, offset_y0, mask)
 * + warp(pad(frame1), vertical1, horizontal1, offset_x1, offset_y1, 1 - mask) + residual
 * frames, residual (B, C, H, W) UNPADDED (replication padding by (K-1)/2 is implicit);
 * vertical*, horizontal* (B, K, H, W); offset_*, mask (B, K*K, H, W); K odd. */
LDMVFI_API int ldmvfi_decoder_output_f32(const float* frame0, const float* frame1, const float* vertical0,
                                         const float* horizontal0, const float* offset_x0, const float* offset_y0,
                                         const float* vertical1, const float* horizontal1, const float* offset_x1,
                                         const float* offset_y1, const float* mask, const float* residual,
                                         float* output, int B, int C, int K, int H, int W, cudaStream_t stream);
LDMVFI_API int ldmvfi_decoder_output_f16(const ldmvfi_f16* frame0, const ldmvfi_f16* frame1,
                                         const ldmvfi_f16* vertical0, const ldmvfi_f16* horizontal0,
                                         const ldmvfi_f16* offset_x0, const ldmvfi_f16* offset_y0,
                                         const ldmvfi_f16* vertical1, const ldmvfi_f16* horizontal1,
                                         const ldmvfi_f16* offset_x1, const ldmvfi_f16* offset_y1,
                                         const ldmvfi_f16* mask, const ldmvfi_f16* residual, ldmvfi_f16* output,
                                         int B, int C, int K, int H, int W, cudaStream_t stream);
LDMVFI_API int ldmvfi_decoder_output_bf16(const ldmvfi_bf16* frame0, const ldmvfi_bf16* frame1,
                                          const ldmvfi_bf16* vertical0, const ldmvfi_bf16* horizontal0,
                                          const ldmvfi_bf16* offset_x0, const ldmvfi_bf16* offset_y0,
                                          const ldmvfi_bf16* vertical1, const ldmvfi_bf16* horizontal1,
                                          const ldmvfi_bf16* offset_x1, const ldmvfi_bf16* offset_y1,
                                          const ldmvfi_bf16* mask, const ldmvfi_bf16* residual,
                                          ldmvfi_bf16* output, int B, int C, int K, int H, int W,
                                          cudaStream_t stream);

/* MaxViT windowed attention, output (B, H, W, C):
 *   q, k, v (B, H, W, C) contiguous channel-last (self-attention: k, v from the same
 *   tokens as q; cross-attention: from the context), C = num_heads * head_dim,
 *   head_dim % 32 == 0; H, W multiples of window; window <= 8;
 *   grid = 0: block windows (contiguous tiles), 1: grid windows (stride H/w, W/w);
 *   bias_table ((2*window-1)^2, num_heads) float32 on the device, contiguous;
 *   scale: softmax scale (usually head_dim^-0.5), applied to q k^T. */
LDMVFI_API int ldmvfi_maxvit_attention_f32(const float* q, const float* k, const float* v, const float* bias_table,
                                           float* output, int B, int H, int W, int C, int window, int grid,
                                           int num_heads, float scale, cudaStream_t stream);
LDMVFI_API int ldmvfi_maxvit_attention_f16(const ldmvfi_f16* q, const ldmvfi_f16* k, const ldmvfi_f16* v,
                                           const float* bias_table, ldmvfi_f16* output, int B, int H, int W, int C,
                                           int window, int grid, int num_heads, float scale, cudaStream_t stream);
LDMVFI_API int ldmvfi_maxvit_attention_bf16(const ldmvfi_bf16* q, const ldmvfi_bf16* k, const ldmvfi_bf16* v,
                                            const float* bias_table, ldmvfi_bf16* output, int B, int H, int W,
                                            int C, int window, int grid, int num_heads, float scale,
                                            cudaStream_t stream);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LDMVFI_FAST_C_API_H_ */
