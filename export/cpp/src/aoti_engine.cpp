// AOTInductor backend of the Engine interface: one AOTIModelPackageLoader per graph.
// The ldmvfi_fast ops the packages call are resolved by the proxy executor through the
// dispatcher: the interpolator registers them (op library) before this runs.
#include <ATen/core/Tensor.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <memory>
#include <string>
#include <vector>

#include "engine.h"
#include "ldmvfi_fast/interpolator.h"

namespace ldmvfi_fast {
namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

class AotiEngine final : public Engine {
 public:
  explicit AotiEngine(const EngineSpec& spec) {
    for (const char* g : {"encoder", "unet_step", "decoder"}) {
      std::string path = graph_path(spec, g);
      try {
        loaders_.push_back(std::make_unique<torch::inductor::AOTIModelPackageLoader>(
            path, "model", false, 1, static_cast<c10::DeviceIndex>(spec.device_index)));
      } catch (const std::exception& e) {
        throw Error("cannot load " + path + ": " + first_line(e.what()));
      }
    }
  }

  std::vector<at::Tensor> encode(const at::Tensor& frame) override { return run(0, {frame.contiguous()}); }

  at::Tensor denoise(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& cond) override {
    return run(1, {x_t.contiguous(), t.contiguous(), cond.contiguous()}).at(0);
  }

  at::Tensor decode(const std::vector<at::Tensor>& inputs) override {
    std::vector<at::Tensor> in;
    in.reserve(inputs.size());
    for (const auto& t : inputs) in.push_back(t.contiguous());  // compiled code assumes dense inputs
    return run(2, in).at(0);
  }

 private:
  std::vector<std::unique_ptr<torch::inductor::AOTIModelPackageLoader>> loaders_;

  std::vector<at::Tensor> run(size_t i, const std::vector<at::Tensor>& inputs) {
    return loaders_[i]->run(inputs);
  }
};

}  // namespace

std::unique_ptr<Engine> make_aoti_engine(const EngineSpec& spec) { return std::make_unique<AotiEngine>(spec); }

}  // namespace ldmvfi_fast
