// The engine interface behind ldmvfi_fast::Interpolator (internal header).
//
// An Engine runs the three graphs of an engine folder; the interpolator does everything else
// (padding, DDIM, cropping). Inputs and outputs follow manifest.json's graphs:
//   encode(frame (B,3,Hp,Wp))                       -> [z, phi_0 .. phi_{L-1}]
//   denoise(x_t (B,C,h,w), t (B,) int64, cond)      -> model output (eps / v / x0: manifest "prediction")
//   decode([z, phi0..., phi1..., frame0, frame1])   -> frame (B,3,Hp,Wp), not clamped
//
// Backends: AOTInductor (aoti_engine.cpp, manifest runtime "aoti"). A TensorRT backend goes in
// export/cpp/trt/ (its CMakeLists.txt is included when -DTENSORRT_ROOT=... is given and defines
// LDMVFI_FAST_WITH_TENSORRT); it implements make_tensorrt_engine for runtime "tensorrt".
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "json.h"

namespace ldmvfi_fast {

class Engine {
 public:
  virtual ~Engine() = default;
  virtual std::vector<at::Tensor> encode(const at::Tensor& frame) = 0;
  virtual at::Tensor denoise(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& cond) = 0;
  virtual at::Tensor decode(const std::vector<at::Tensor>& inputs) = 0;
};

/// What an engine factory gets: the folder, its parsed manifest, the device ("cpu", "cuda:0").
struct EngineSpec {
  std::string folder;
  const json::Value* manifest = nullptr;
  std::string device_type;  // "cpu" | "cuda"
  int device_index = -1;
};

/// Graph files of the manifest, checked present (throws Error naming a missing file).
std::string graph_path(const EngineSpec& spec, const std::string& graph);

std::unique_ptr<Engine> make_aoti_engine(const EngineSpec& spec);
#ifdef LDMVFI_FAST_WITH_TENSORRT
std::unique_ptr<Engine> make_tensorrt_engine(const EngineSpec& spec);
#endif

}  // namespace ldmvfi_fast
