// TensorRT backend of the Engine interface (src/engine.h): runs the engine folders of
// export/build_trt.py (manifest runtime "tensorrt") with TensorRT 10's C++ runtime.
//
// * Checks before loading: a CUDA device; the manifest's TensorRT version equals the linked
//   library's (getInferLibVersion); the GPU name and compute capability equal the build's
//   (the Python runtime also recomputes the sha256 engine key; here deserialization refuses
//   plans of another TensorRT and the checks above name the cause).
// * The ldmvfi_fast plugin library (when the manifest names one) is loaded with
//   IPluginRegistry::loadLibrary from $LDMVFI_FAST_TRT_PLUGINS or beside the engines.
// * encode / decode: outputs allocated per call (ATen, the engine's output shapes), one
//   enqueueV3 on ATen's current CUDA stream.
// * denoise (called once per sampling step at one shape): static input and output buffers;
//   after one plain run per shape, the enqueueV3 is captured in a CUDA graph and replayed
//   (falls back to plain runs if capture fails).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <NvInferRuntime.h>

#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "engine.h"
#include "ldmvfi_fast/interpolator.h"

namespace ldmvfi_fast {
namespace {

class Logger final : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* msg) noexcept override {
    if (severity <= Severity::kWARNING) std::fprintf(stderr, "TensorRT: %s\n", msg);
    if (severity <= Severity::kERROR) last_error = msg;
  }
  std::string last_error;
};

const json::Value* field(const json::Value* v, const char* key) { return v ? v->find(key) : nullptr; }

std::string str_field(const json::Value* v, const char* key) {
  const json::Value* f = field(v, key);
  return f && f->is_string() ? f->string : std::string();
}

void cuda_check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) throw Error(what + ": " + cudaGetErrorString(e));
}

std::string version_string(int32_t v) {
  // getInferLibVersion(): major * 10000 + minor * 100 + patch (TensorRT 10)
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

std::vector<char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot read " + path);
  return std::vector<char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

at::ScalarType scalar_type(nvinfer1::DataType t, const std::string& name) {
  switch (t) {
    case nvinfer1::DataType::kFLOAT: return at::kFloat;
    case nvinfer1::DataType::kHALF: return at::kHalf;
    case nvinfer1::DataType::kBF16: return at::kBFloat16;
    case nvinfer1::DataType::kINT32: return at::kInt;
    case nvinfer1::DataType::kINT64: return at::kLong;
    default: throw Error("engine tensor " + name + " has a data type this backend does not handle");
  }
}

struct Deleter {
  template <typename T>
  void operator()(T* p) const noexcept { delete p; }
};
template <typename T>
using Ptr = std::unique_ptr<T, Deleter>;

// One engine, its execution context and names of its I/O tensors in engine order.
class Graph {
 public:
  Graph(nvinfer1::IRuntime& runtime, const std::string& path, const std::string& name, Logger& logger)
      : name_(name), logger_(logger) {
    std::vector<char> plan = read_file(path);
    engine_.reset(runtime.deserializeCudaEngine(plan.data(), plan.size()));
    if (!engine_) throw Error("TensorRT could not deserialize " + path + ": " + logger_.last_error);
    context_.reset(engine_->createExecutionContext());
    if (!context_) throw Error("TensorRT could not create an execution context for " + name + ": " + logger_.last_error);
    for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
      const char* n = engine_->getIOTensorName(i);
      (engine_->getTensorIOMode(n) == nvinfer1::TensorIOMode::kINPUT ? inputs_ : outputs_).push_back(n);
    }
  }
  ~Graph() {
    if (exec_) cudaGraphExecDestroy(exec_);
  }

  // Plain run: inputs as given (made contiguous, cast to the engine's types), fresh outputs.
  std::vector<at::Tensor> run(const std::vector<at::Tensor>& in, cudaStream_t stream) {
    std::vector<at::Tensor> keep = bind_inputs(in);
    std::vector<at::Tensor> outs;
    for (const auto& n : outputs_) {
      at::Tensor o = at::empty(out_shape(n), in.at(0).options().dtype(scalar_type(engine_->getTensorDataType(n.c_str()), n)));
      context_->setTensorAddress(n.c_str(), o.data_ptr());
      outs.push_back(o);
    }
    enqueue(stream);
    return outs;
  }

  // Static buffers + CUDA graph replay (the U-Net step).
  std::vector<at::Tensor> run_static(const std::vector<at::Tensor>& in, cudaStream_t stream) {
    std::vector<std::vector<int64_t>> shapes;
    for (const auto& t : in) shapes.emplace_back(t.sizes().begin(), t.sizes().end());
    if (shapes != shapes_ || static_in_.empty()) {  // new shapes: new buffers, no graph yet
      if (exec_) cudaGraphExecDestroy(exec_);
      exec_ = nullptr;
      warm_ = false;
      static_in_.clear();
      static_out_.clear();
      for (size_t i = 0; i < in.size(); ++i) {
        auto dt = scalar_type(engine_->getTensorDataType(inputs_.at(i).c_str()), inputs_[i]);
        static_in_.push_back(at::empty(in[i].sizes(), in[i].options().dtype(dt)));
      }
      bind(static_in_);
      for (const auto& n : outputs_) {
        auto dt = scalar_type(engine_->getTensorDataType(n.c_str()), n);
        static_out_.push_back(at::empty(out_shape(n), in.at(0).options().dtype(dt)));
        context_->setTensorAddress(n.c_str(), static_out_.back().data_ptr());
      }
      shapes_ = shapes;
    }
    for (size_t i = 0; i < in.size(); ++i) static_in_[i].copy_(in[i], /*non_blocking=*/true);
    if (exec_) {
      cuda_check(cudaGraphLaunch(exec_, stream), name_ + ": CUDA graph launch");
    } else if (warm_ && use_graph_) {
      capture(stream);
    } else {
      enqueue(stream);
      warm_ = true;
    }
    std::vector<at::Tensor> outs;
    for (const auto& o : static_out_) outs.push_back(o.clone());
    return outs;
  }

 private:
  std::string name_;
  Logger& logger_;
  Ptr<nvinfer1::ICudaEngine> engine_;
  Ptr<nvinfer1::IExecutionContext> context_;
  std::vector<std::string> inputs_, outputs_;
  std::vector<at::Tensor> static_in_, static_out_;
  std::vector<std::vector<int64_t>> shapes_;
  cudaGraphExec_t exec_ = nullptr;
  bool warm_ = false, use_graph_ = true;

  std::vector<at::Tensor> bind_inputs(const std::vector<at::Tensor>& in) {
    std::vector<at::Tensor> keep;
    for (size_t i = 0; i < in.size(); ++i) {
      auto dt = scalar_type(engine_->getTensorDataType(inputs_.at(i).c_str()), inputs_[i]);
      keep.push_back(in[i].to(dt).contiguous());
    }
    bind(keep);
    return keep;
  }

  void bind(const std::vector<at::Tensor>& in) {
    if (in.size() != inputs_.size())
      throw Error(name_ + ": " + std::to_string(in.size()) + " inputs given, the engine has " +
                  std::to_string(inputs_.size()));
    for (size_t i = 0; i < in.size(); ++i) {
      nvinfer1::Dims d{};
      d.nbDims = static_cast<int32_t>(in[i].dim());
      for (int32_t k = 0; k < d.nbDims; ++k) d.d[k] = in[i].size(k);
      if (!context_->setInputShape(inputs_[i].c_str(), d))
        throw Error(name_ + ": input " + inputs_[i] + " of shape " + c10::str(in[i].sizes()) +
                    " is outside the engine's profile (build it with a larger --profile)");
      context_->setTensorAddress(inputs_[i].c_str(), in[i].data_ptr());
    }
  }

  std::vector<int64_t> out_shape(const std::string& n) {
    nvinfer1::Dims d = context_->getTensorShape(n.c_str());
    if (d.nbDims < 0) throw Error(name_ + ": TensorRT could not infer the shape of " + n);
    return std::vector<int64_t>(d.d, d.d + d.nbDims);
  }

  void enqueue(cudaStream_t stream) {
    if (!context_->enqueueV3(stream)) throw Error("TensorRT failed to run " + name_ + ": " + logger_.last_error);
  }

  void capture(cudaStream_t stream) {
    cudaGraph_t graph = nullptr;
    bool ok = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
    if (ok) {
      bool enq = context_->enqueueV3(stream);
      ok = cudaStreamEndCapture(stream, &graph) == cudaSuccess && enq;
    }
    if (ok) ok = cudaGraphInstantiate(&exec_, graph, 0) == cudaSuccess;
    if (graph) cudaGraphDestroy(graph);
    if (!ok) {
      std::fprintf(stderr, "ldmvfi_fast: %s: CUDA graph capture failed; running without CUDA graphs\n", name_.c_str());
      cudaGetLastError();  // clear the capture error
      exec_ = nullptr;
      use_graph_ = false;
      enqueue(stream);
      return;
    }
    cuda_check(cudaGraphLaunch(exec_, stream), name_ + ": CUDA graph launch");
  }
};

class TrtEngine final : public Engine {
 public:
  explicit TrtEngine(const EngineSpec& spec) : device_(spec.device_index < 0 ? 0 : spec.device_index) {
    if (spec.device_type != "cuda") throw Error("TensorRT engines run on a CUDA device, not " + spec.device_type);
    const json::Value* rec = field(spec.manifest, "tensorrt");
    if (!rec || !rec->is_object())
      throw Error(spec.folder + ": the manifest has no 'tensorrt' build record (build it with export/build_trt.py)");
    check_build(*rec);
    load_plugins(spec, *rec);
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    if (!runtime_) throw Error("TensorRT could not create a runtime");
    for (const char* g : {"encoder", "unet_step", "decoder"})
      graphs_.push_back(std::make_unique<Graph>(*runtime_, graph_path(spec, g), g, logger_));
  }

  std::vector<at::Tensor> encode(const at::Tensor& frame) override { return graphs_[0]->run({frame}, stream()); }

  at::Tensor denoise(const at::Tensor& x_t, const at::Tensor& t, const at::Tensor& cond) override {
    return graphs_[1]->run_static({x_t, t, cond}, stream()).at(0);
  }

  at::Tensor decode(const std::vector<at::Tensor>& inputs) override { return graphs_[2]->run(inputs, stream()).at(0); }

 private:
  int device_;
  Logger logger_;
  Ptr<nvinfer1::IRuntime> runtime_;
  std::vector<std::unique_ptr<Graph>> graphs_;

  cudaStream_t stream() const { return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_)).stream(); }

  void check_build(const json::Value& rec) {
    std::string built = str_field(&rec, "version");
    std::string here = version_string(getInferLibVersion());
    if (built.rfind(here, 0) != 0)
      throw Error("stale TensorRT engines: built with TensorRT " + built + ", this program has " + here +
                  "; build them again with export/build_trt.py");
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, device_), "cannot query CUDA device " + std::to_string(device_));
    const json::Value* gpu = field(&rec, "gpu");
    std::string cc = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    if (str_field(gpu, "name") != prop.name || str_field(gpu, "compute_capability") != cc)
      throw Error("stale TensorRT engines: built on " + str_field(gpu, "name") + " (sm " +
                  str_field(gpu, "compute_capability") + "), this GPU is " + prop.name + " (sm " + cc +
                  "); build them again on this GPU with export/build_trt.py");
  }

  void load_plugins(const EngineSpec& spec, const json::Value& rec) {
    const json::Value* plugins = field(&rec, "plugins");
    if (!plugins || plugins->is_null()) return;
    const char* env = std::getenv("LDMVFI_FAST_TRT_PLUGINS");
    std::string path = env && *env ? env : spec.folder + "/" + str_field(plugins, "file");
    if (!std::ifstream(path).good())
      throw Error("the engines use the ldmvfi_fast TensorRT plugins, but the library " + path +
                  " is missing (set LDMVFI_FAST_TRT_PLUGINS)");
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    if (!registry || !registry->loadLibrary(path.c_str()))
      throw Error("TensorRT could not load the plugin library " + path + ": " + logger_.last_error);
  }
};

}  // namespace

std::unique_ptr<Engine> make_tensorrt_engine(const EngineSpec& spec) { return std::make_unique<TrtEngine>(spec); }

}  // namespace ldmvfi_fast
