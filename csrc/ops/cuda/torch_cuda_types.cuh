// Shared helpers of the torch glue of the CUDA kernels: the CUDA storage type of an ATen
// scalar type, and typed raw pointers of tensors (checked by the callers beforehand).
#pragma once

#include <ATen/core/Tensor.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace ldmvfi_fast {
namespace ops {
namespace cuda {

template <typename scalar_t>
struct CudaType {
  using type = scalar_t;
};
template <>
struct CudaType<at::Half> {
  using type = __half;
};
template <>
struct CudaType<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename T>
inline const T* cptr(const at::Tensor& t) {
  return reinterpret_cast<const T*>(t.const_data_ptr());
}

template <typename T>
inline T* mptr(at::Tensor& t) {
  return reinterpret_cast<T*>(t.mutable_data_ptr());
}

}  // namespace cuda
}  // namespace ops
}  // namespace ldmvfi_fast
