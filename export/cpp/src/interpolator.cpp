// ldmvfi_fast::Interpolator: manifest checks, op library, padding, DDIM from the manifest's tables,
// cropping and clamping. The tensor operations mirror ldmvfi_fast/pipeline.py and
// ldmvfi_fast/sampling.py op for op (same ATen kernels, same order, same float32 coefficients),
// so the result equals the Python pipeline's up to the engines' own rounding.
#include "ldmvfi_fast/interpolator.h"

#include <ATen/Context.h>
#include <ATen/core/Generator.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/reflection_pad2d.h>
#include <ATen/ops/replication_pad2d.h>
#include <ATen/ops/rsub.h>
#include <ATen/ops/tensor.h>
#include <c10/core/InferenceMode.h>
#include <dlfcn.h>
#include <sys/stat.h>
#include <sys/utsname.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "engine.h"
#include "json.h"

#ifndef LDMVFI_FAST_DEFAULT_OPS_LIBRARY
#define LDMVFI_FAST_DEFAULT_OPS_LIBRARY ""
#endif

namespace ldmvfi_fast {

namespace {

constexpr const char* kFormat = "ldmvfi_fast.engines";
constexpr int kFormatVersion = 2;  // 2: the manifest carries contract_hash (checked by the Python side)
constexpr const char* kManifest = "manifest.json";
constexpr double kRangeTolerance = 1e-3;  // pipeline.RANGE_TOLERANCE

bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}
std::string shape_str(at::IntArrayRef s) {
  std::ostringstream o;
  o << "(";
  for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
  o << (s.size() == 1 ? ",)" : ")");
  return o.str();
}

// -- manifest access with clear errors ------------------------------------------------------
struct Manifest {
  std::string where;
  json::Value root;

  const json::Value& get(const json::Value& obj, const std::string& key, const std::string& path) const {
    const json::Value* v = obj.find(key);
    if (!v) throw Error(where + ": missing " + path + " (not a valid manifest; export the engines again)");
    return *v;
  }
  const json::Value& at(const std::string& dotted) const {
    const json::Value* cur = &root;
    std::string path;
    std::stringstream ss(dotted);
    std::string part;
    while (std::getline(ss, part, '.')) {
      path += (path.empty() ? "" : ".") + part;
      cur = &get(*cur, part, path);
    }
    return *cur;
  }
  std::string str(const std::string& key) const {
    const auto& v = at(key);
    if (!v.is_string()) throw Error(where + ": " + key + " must be a string");
    return v.string;
  }
  int64_t integer(const std::string& key) const {
    const auto& v = at(key);
    if (!v.is_number() || v.number != std::floor(v.number)) throw Error(where + ": " + key + " must be an integer");
    return static_cast<int64_t>(v.number);
  }
  const json::Value& array(const std::string& key) const {
    const auto& v = at(key);
    if (!v.is_array()) throw Error(where + ": " + key + " must be a list");
    return v;
  }
};

std::vector<float> floats(const json::Value& v, const std::string& what) {
  if (!v.is_array()) throw Error(what + " must be a list of numbers");
  std::vector<float> out;
  out.reserve(v.array.size());
  for (const auto& x : v.array) {
    if (!x.is_number()) throw Error(what + " must be a list of numbers");
    out.push_back(static_cast<float>(x.number));  // exact: Python wrote the float32 values
  }
  return out;
}

at::Tensor float_tensor(const std::vector<float>& v, const at::Device& dev) {
  return at::tensor(at::ArrayRef<float>(v), at::TensorOptions().dtype(at::kFloat)).to(dev);
}

// -- build machine --------------------------------------------------------------------------
std::set<std::string> cpu_flags() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    key.erase(key.find_last_not_of(" \t") + 1);
    if (key == "flags" || key == "Features") {
      std::istringstream words(line.substr(colon + 1));
      std::set<std::string> out;
      std::string w;
      while (words >> w) out.insert(w);
      return out;
    }
  }
  return {};
}

void check_build_machine(const Manifest& m, const std::string& folder) {
  const json::Value* aoti = m.root.find("aoti");
  const json::Value* built = aoti ? aoti->find("build_machine") : nullptr;
  if (!built) return;
  struct utsname u {};
  if (const json::Value* mach = built->find("machine"); mach && mach->is_string() && ::uname(&u) == 0 &&
                                                         !mach->string.empty() && mach->string != u.machine)
    throw Error("the AOTInductor packages in " + folder + " were compiled for " + mach->string +
                ", this machine is " + u.machine + ": build them again here (export/build_aoti.py)");
  const json::Value* flags = built->find("isa_flags");
  std::set<std::string> here = cpu_flags();
  if (!flags || !flags->is_array() || here.empty()) return;
  std::string missing;
  for (const auto& f : flags->array)
    if (f.is_string() && !here.count(f.string)) missing += (missing.empty() ? "" : ", ") + f.string;
  if (!missing.empty())
    throw Error("the AOTInductor packages in " + folder + " were compiled for a processor with " + missing +
                ", which this one lacks (the code would stop on an illegal instruction): build them again "
                "here (export/build_aoti.py)");
}

// -- op library -----------------------------------------------------------------------------
std::vector<std::string> missing_ops(const std::vector<std::string>& ops) {
  std::vector<std::string> out;
  for (const auto& op : ops)
    if (!c10::Dispatcher::singleton().findSchema(c10::OperatorName("ldmvfi_fast::" + op, "")).has_value())
      out.push_back("ldmvfi_fast::" + op);
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void load_ops(const std::vector<std::string>& ops, const std::string& requested) {
  if (ops.empty() || missing_ops(ops).empty()) return;
  std::vector<std::string> candidates;
  if (!requested.empty()) {
    candidates.push_back(requested);
  } else if (const char* env = std::getenv("LDMVFI_FAST_OPS_LIBRARY"); env && *env) {
    candidates.push_back(env);
  } else {
    if (*LDMVFI_FAST_DEFAULT_OPS_LIBRARY && is_file(LDMVFI_FAST_DEFAULT_OPS_LIBRARY))
      candidates.push_back(LDMVFI_FAST_DEFAULT_OPS_LIBRARY);
    candidates.push_back("libldmvfi_fast_ops.so");  // the run path / LD_LIBRARY_PATH
  }
  std::string errors;
  for (const auto& lib : candidates) {
    if (lib.find('/') != std::string::npos && !is_file(lib)) {
      errors += "\n  " + lib + ": no such file";
      continue;
    }
    // RTLD_GLOBAL: the ops' symbols stay visible; the static initializers register the ops
    if (void* h = ::dlopen(lib.c_str(), RTLD_NOW | RTLD_GLOBAL); h != nullptr) {
      auto still = missing_ops(ops);
      if (still.empty()) return;
      errors += "\n  " + lib + ": loaded, but it does not register " + joined(still);
    } else {
      const char* e = ::dlerror();
      errors += "\n  " + lib + ": " + (e ? e : "cannot be loaded");
    }
  }
  throw Error("the engines call the ops " + joined(missing_ops(ops)) +
              ", which no loaded library registers. Pass --ops-library (Options::ops_library) or set "
              "LDMVFI_FAST_OPS_LIBRARY to the libldmvfi_fast_ops.so built with this program. Tried:" + errors);
}

// -- padding (ldmvfi_fast/padding.py) -------------------------------------------------------
std::pair<int64_t, int64_t> pad_amounts(int64_t H, int64_t W, const std::string& mode, int64_t arch_unit) {
  if (mode == "minimal") return {((-H) % arch_unit + arch_unit) % arch_unit, ((-W) % arch_unit + arch_unit) % arch_unit};
  if (mode != "reference") throw Error("padding must be reference or minimal, got '" + mode + "'");
  const int64_t unit = H <= 256 ? 256 : 512;
  auto amount = [unit](int64_t n) {
    int64_t p = (unit - n % unit) % unit;
    return p == n ? int64_t{0} : p;
  };
  const int64_t ph = amount(H), pw = amount(W);
  const std::pair<int64_t, int64_t> sides[2] = {{H, ph}, {W, pw}};
  for (int i = 0; i < 2; ++i) {
    const auto [n, p] = sides[i];
    const std::string axis = i == 0 ? "height" : "width";
    if (p >= n)
      throw Error("frame " + axis + " " + std::to_string(n) + " is too small for the original's reflect padding to " +
                  std::to_string(unit) + " (pad " + std::to_string(p) + " >= " + std::to_string(n) +
                  "); use --padding minimal");
    if ((n + p) % arch_unit)
      throw Error("the original's padding leaves the " + axis + " at " + std::to_string(n + p) +
                  ", not a multiple of " + std::to_string(arch_unit) + " that the model needs; use --padding minimal");
  }
  return {ph, pw};
}

at::Tensor reflect_pad(at::Tensor x, int64_t ph, int64_t pw) {
  while (ph > 0 || pw > 0) {
    const int64_t sh = std::min(ph, x.size(-2) - 1), sw = std::min(pw, x.size(-1) - 1);
    if ((ph && sh <= 0) || (pw && sw <= 0)) {  // 1-pixel dimension: nothing to reflect
      x = at::replication_pad2d(x, {0, pw, 0, ph});
      break;
    }
    x = at::reflection_pad2d(x, {0, sw, 0, sh});
    ph -= sh;
    pw -= sw;
  }
  return x;
}

void check_frames(const at::Tensor& f0, const at::Tensor& f1) {
  const at::Tensor* fs[2] = {&f0, &f1};
  for (int i = 0; i < 2; ++i) {
    const at::Tensor& f = *fs[i];
    const std::string name = "frame " + std::to_string(i);
    if (!f.defined()) throw Error(name + " is an undefined tensor");
    if (f.dim() != 4) throw Error(name + " must be (B, 3, H, W), got shape " + shape_str(f.sizes()));
    if (f.size(1) != 3) throw Error(name + " has " + std::to_string(f.size(1)) + " channels; LDMVFI needs RGB (3)");
    if (!f.is_floating_point()) throw Error(name + " must hold floats in [-1, 1]");
    if (f.sizes() != f0.sizes())
      throw Error("frame sizes differ: frame 0 is " + shape_str(f0.sizes()) + ", frame 1 is " + shape_str(f.sizes()));
    if (f.numel() == 0) throw Error(name + " is empty: shape " + shape_str(f.sizes()));
    at::Tensor c = f.detach().to(at::kCPU, at::kFloat).contiguous();
    const float* p = c.const_data_ptr<float>();
    float lo = p[0], hi = p[0];
    for (int64_t k = 0; k < c.numel(); ++k) {
      if (!std::isfinite(p[k])) throw Error(name + " contains NaN or infinite values");
      lo = std::min(lo, p[k]);
      hi = std::max(hi, p[k]);
    }
    if (lo < -1.0 - kRangeTolerance || hi > 1.0 + kRangeTolerance)
      throw Error(name + " has values in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                  "]; frames must be in [-1, 1]");
  }
}

struct DdimTable {
  std::vector<int64_t> timesteps;  // sampling order
  at::Tensor sqrt_alphas, sqrt_one_minus_alphas, sqrt_alphas_prev, dir_coef, sigmas;  // (S,) float32
};

}  // namespace

std::string graph_path(const EngineSpec& spec, const std::string& graph) {
  const json::Value* graphs = spec.manifest->find("graphs");
  const json::Value* g = graphs ? graphs->find(graph) : nullptr;
  const json::Value* file = g ? g->find("file") : nullptr;
  if (!file || !file->is_string()) throw Error(join(spec.folder, kManifest) + ": graphs." + graph + ".file missing");
  std::string path = join(spec.folder, file->string);
  if (!is_file(path))
    throw Error("engine file missing: " + path + " (the folder " + spec.folder +
                " is incomplete; build it again with export/build_aoti.py)");
  return path;
}

struct Interpolator::Impl {
  std::string folder;
  Manifest m;
  Options opt;
  at::Device device{at::kCPU};
  std::unique_ptr<Engine> engine;
  std::string runtime, prediction, dtype;
  int64_t pad_unit = 0, latent_factor = 0, latent_channels = 0, levels = 0;
  int64_t min_h = 0, max_h = 0, min_w = 0, max_w = 0, multiple = 1, max_batch = 1;
  at::Tensor alphas_cumprod;  // (T,) float32 on the device
  std::vector<double> etas;

  DdimTable table(int steps, double eta) const {
    const json::Value* ddim = m.root.find("ddim");
    if (!ddim)
      throw Error(m.where + " has no DDIM tables ('ddim'): the engines were built by an older ldmvfi_fast; "
                  "build them again with export/build_aoti.py");
    const json::Value* sched = ddim->find("schedules");
    const json::Value* s = sched ? sched->find(std::to_string(steps)) : nullptr;
    if (!s) {
      std::string have;
      if (sched)
        for (const auto& kv : sched->object) have += (have.empty() ? "" : ", ") + kv.first;
      throw Error("no DDIM table for " + std::to_string(steps) + " steps in " + m.where + " (it has: " + have +
                  "); build the engines with those step counts (build_aoti(..., ddim_steps=...))");
    }
    size_t k = 0;
    while (k < etas.size() && std::fabs(etas[k] - eta) > 1e-12) ++k;
    if (k == etas.size()) {
      std::ostringstream have;
      for (size_t j = 0; j < etas.size(); ++j) have << (j ? ", " : "") << etas[j];
      throw Error("no DDIM table for eta " + std::to_string(eta) + " in " + m.where + " (it has eta " + have.str() + ")");
    }
    const std::string w = m.where + ": ddim.schedules." + std::to_string(steps);
    auto field = [&](const char* name) -> const json::Value& {
      const json::Value* v = s->find(name);
      if (!v) throw Error(w + "." + name + " missing");
      return *v;
    };
    auto per_eta = [&](const char* name) {
      const json::Value& v = field(name);
      if (!v.is_array() || v.array.size() != etas.size()) throw Error(w + "." + name + " must have one list per eta");
      return floats(v.array[k], w + "." + name);
    };
    DdimTable t;
    for (const auto& x : field("timesteps").array) t.timesteps.push_back(static_cast<int64_t>(x.number));
    std::vector<float> cols[5] = {floats(field("sqrt_alphas"), w), floats(field("sqrt_one_minus_alphas"), w),
                                  floats(field("sqrt_alphas_prev"), w), per_eta("dir_coef"), per_eta("sigmas")};
    for (const auto& c : cols)
      if (c.size() != t.timesteps.size() || c.empty()) throw Error(w + ": the coefficient lists differ in length");
    for (int64_t ts : t.timesteps)
      if (ts < 0 || ts >= alphas_cumprod.size(0)) throw Error(w + ": timestep " + std::to_string(ts) + " out of range");
    t.sqrt_alphas = float_tensor(cols[0], device);
    t.sqrt_one_minus_alphas = float_tensor(cols[1], device);
    t.sqrt_alphas_prev = float_tensor(cols[2], device);
    t.dir_coef = float_tensor(cols[3], device);
    t.sigmas = float_tensor(cols[4], device);
    return t;
  }

  // sampling.eps_from: the noise implied by a v / x0 prediction
  at::Tensor eps_from(const at::Tensor& pred, const at::Tensor& x, const at::Tensor& t) const {
    if (prediction == "eps") return pred;
    at::Tensor a = alphas_cumprod.index_select(0, t).to(at::kFloat).view({-1, 1, 1, 1});
    at::Tensor sa = a.sqrt(), s1a = at::rsub(a, 1.0).sqrt();
    at::Tensor xf = x.to(at::kFloat), pf = pred.to(at::kFloat);
    if (prediction == "x0") return xf.sub(sa.mul(pf)).div(s1a).to(x.scalar_type());
    return sa.mul(pf).add(s1a.mul(xf)).to(x.scalar_type());
  }
};

Interpolator::Interpolator(const std::string& engine_dir, const Options& options) : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.folder = engine_dir;
  d.opt = options;
  if (!is_dir(engine_dir)) throw Error("engine folder not found: " + engine_dir);
  const std::string mpath = join(engine_dir, kManifest);
  if (!is_file(mpath))
    throw Error(engine_dir + " has no " + kManifest + ": not an engine folder (make one with export/build_aoti.py)");
  std::ifstream in(mpath, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  if (!in.good() && !in.eof()) throw Error(mpath + " cannot be read");
  d.m.where = mpath;
  try {
    d.m.root = json::parse(buf.str());
  } catch (const std::runtime_error& e) {
    throw Error(mpath + " cannot be read: " + e.what());
  }
  const Manifest& m = d.m;
  if (!m.root.is_object()) throw Error(mpath + ": not a JSON object");
  const json::Value* fmt = m.root.find("format");
  if (!fmt || !fmt->is_string() || fmt->string != kFormat)
    throw Error(mpath + ": format is not '" + std::string(kFormat) + "' (not an ldmvfi_fast engine folder)");
  const int64_t version = m.integer("format_version");
  if (version > kFormatVersion)
    throw Error(mpath + ": format version " + std::to_string(version) + " is newer than this program reads (" +
                std::to_string(kFormatVersion) + "); rebuild ldmvfi_interpolate from a matching ldmvfi_fast, or "
                "export the engines again with this version");
  if (version < 1) throw Error(mpath + ": format version " + std::to_string(version) + " is not valid");
  d.runtime = m.str("runtime");
  d.prediction = m.str("prediction");
  d.dtype = m.str("dtype");
  if (d.prediction != "eps" && d.prediction != "v" && d.prediction != "x0")
    throw Error(mpath + ": prediction '" + d.prediction + "' is not eps, v or x0");
  if (d.dtype != "float32")
    throw Error(mpath + ": engines of dtype " + d.dtype + " are not supported by this program (float32 only)");
  d.pad_unit = m.integer("pad_unit");
  d.latent_factor = m.integer("latent_factor");
  d.latent_channels = m.integer("latent_channels");
  d.min_h = m.integer("sizes.min_height");
  d.max_h = m.integer("sizes.max_height");
  d.min_w = m.integer("sizes.min_width");
  d.max_w = m.integer("sizes.max_width");
  d.multiple = m.integer("sizes.multiple");
  d.max_batch = m.integer("sizes.max_batch");
  if (d.pad_unit <= 0 || d.latent_factor <= 0 || d.multiple <= 0) throw Error(mpath + ": invalid sizes");
  d.levels = static_cast<int64_t>(m.array("graphs.encoder.outputs").array.size()) - 1;
  if (static_cast<int64_t>(m.array("graphs.decoder.inputs").array.size()) != 2 * d.levels + 3)
    throw Error(mpath + ": the decoder's inputs do not match the encoder's outputs");
  if (const json::Value* ddim = m.root.find("ddim"))
    if (const json::Value* e = ddim->find("etas"); e && e->is_array())
      for (const auto& x : e->array) d.etas.push_back(x.number);

  // device: the kind compiled for
  const std::string built_for = m.str("device");
  try {
    d.device = at::Device(options.device);
  } catch (const std::exception&) {
    throw Error("device must be cpu, cuda or cuda:N, got '" + options.device + "'");
  }
  if (d.device.type() != at::kCPU && d.device.type() != at::kCUDA)
    throw Error("device must be cpu or cuda, got '" + options.device + "'");
  if (at::DeviceTypeName(d.device.type(), true) != built_for)
    throw Error("the packages in " + engine_dir + " are compiled for " + built_for + ", not " + options.device +
                ": build them again with --device " + options.device);
  if (d.device.is_cuda()) {
    if (!at::hasCUDA()) throw Error("the packages are compiled for cuda, and this libtorch sees no CUDA device");
    if (!d.device.has_index()) d.device = at::Device(at::kCUDA, 0);
  }
  if (d.runtime == "aoti") check_build_machine(m, engine_dir);

  // ops before the packages: the proxy executor looks the ops up when a package loads
  std::vector<std::string> ops;
  const json::Value* aoti = m.root.find("aoti");
  const json::Value* listed = aoti && aoti->find("proxy_executor_ops") ? aoti->find("proxy_executor_ops")
                                                                       : m.root.find("custom_ops");
  if (listed && listed->is_array())
    for (const auto& o : listed->array)
      if (o.is_string()) ops.push_back(o.string);
  load_ops(ops, options.ops_library);

  EngineSpec spec{engine_dir, &m.root, d.device.is_cuda() ? "cuda" : "cpu",
                  d.device.is_cuda() ? static_cast<int>(d.device.index()) : -1};
  for (const char* g : {"encoder", "unet_step", "decoder"}) graph_path(spec, g);  // all present before loading
  c10::InferenceMode guard;
  d.alphas_cumprod = float_tensor(floats(m.array("alphas_cumprod"), mpath + ": alphas_cumprod"), d.device);
  if (d.runtime == "aoti") {
    d.engine = make_aoti_engine(spec);
#ifdef LDMVFI_FAST_WITH_TENSORRT
  } else if (d.runtime == "tensorrt") {
    d.engine = make_tensorrt_engine(spec);
#endif
  } else {
    throw Error("the engines in " + engine_dir + " are of runtime '" + d.runtime +
                "'; this program runs AOTInductor packages (runtime 'aoti', from export/build_aoti.py)");
  }
}

Interpolator::~Interpolator() = default;

std::pair<int64_t, int64_t> Interpolator::padded_size(int64_t height, int64_t width) const {
  auto [ph, pw] = pad_amounts(height, width, impl_->opt.padding, impl_->pad_unit);
  return {height + ph, width + pw};
}

std::vector<int64_t> Interpolator::noise_shape(int64_t batch, int64_t height, int64_t width) const {
  auto [hp, wp] = padded_size(height, width);
  return {batch, impl_->latent_channels, hp / impl_->latent_factor, wp / impl_->latent_factor};
}

std::vector<int> Interpolator::step_counts() const {
  std::vector<int> out;
  const json::Value* ddim = impl_->m.root.find("ddim");
  if (const json::Value* s = ddim ? ddim->find("schedules") : nullptr)
    for (const auto& kv : s->object) out.push_back(std::atoi(kv.first.c_str()));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<double> Interpolator::etas() const { return impl_->etas; }

std::string Interpolator::describe() const {
  return impl_->runtime + " engines on " + impl_->device.str() + " from " + impl_->folder;
}

at::Tensor Interpolator::interpolate(const at::Tensor& frame0_in, const at::Tensor& frame1_in,
                                     const SampleOptions& so) {
  Impl& d = *impl_;
  c10::InferenceMode guard;
  const bool squeeze = frame0_in.defined() && frame1_in.defined() && frame0_in.dim() == 3 && frame1_in.dim() == 3;
  at::Tensor f0 = squeeze ? frame0_in.unsqueeze(0) : frame0_in;
  at::Tensor f1 = squeeze ? frame1_in.unsqueeze(0) : frame1_in;
  check_frames(f0, f1);
  const DdimTable sched = d.table(so.steps, so.eta);  // option errors before any work
  const int64_t B = f0.size(0), H = f0.size(2), W = f0.size(3);
  auto [ph, pw] = pad_amounts(H, W, d.opt.padding, d.pad_unit);
  const int64_t Hp = H + ph, Wp = W + pw;
  if (!(d.min_h <= Hp && Hp <= d.max_h && d.min_w <= Wp && Wp <= d.max_w && Hp % d.multiple == 0 &&
        Wp % d.multiple == 0 && 1 <= B && B <= d.max_batch))
    throw Error("padded frames " + std::to_string(Hp) + "x" + std::to_string(Wp) + " (batch " + std::to_string(B) +
                ") are outside what the engines accept: heights " + std::to_string(d.min_h) + ".." +
                std::to_string(d.max_h) + ", widths " + std::to_string(d.min_w) + ".." + std::to_string(d.max_w) +
                ", multiples of " + std::to_string(d.multiple) + ", batch <= " + std::to_string(d.max_batch));
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(d.device);
  const std::vector<int64_t> shape = {B, d.latent_channels, Hp / d.latent_factor, Wp / d.latent_factor};
  if (so.x_T.has_value() && so.x_T->sizes() != at::IntArrayRef(shape))
    throw Error("x_T must have shape " + shape_str(shape) + ", got " + shape_str(so.x_T->sizes()));

  // the generator of torch.Generator(device).manual_seed(seed)
  at::Generator gen = at::globalContext().defaultGenerator(d.device).clone();
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_current_seed(so.seed);
  }

  // encode each frame once (pipeline.Interpolator.encode)
  at::Tensor p0 = reflect_pad(f0.to(opts), ph, pw), p1 = reflect_pad(f1.to(opts), ph, pw);
  std::vector<at::Tensor> e0 = d.engine->encode(p0), e1 = d.engine->encode(p1);
  if (static_cast<int64_t>(e0.size()) != d.levels + 1 || static_cast<int64_t>(e1.size()) != d.levels + 1)
    throw Error("the encoder returned " + std::to_string(e0.size()) + " outputs, the manifest names " +
                std::to_string(d.levels + 1));
  at::Tensor cond = at::cat({e0[0], e1[0]}, 1);

  // sampling.ddim_sample
  at::Tensor x = so.x_T.has_value() ? so.x_T->to(opts) : at::randn(shape, gen, opts);
  const int64_t S = static_cast<int64_t>(sched.timesteps.size());
  for (int64_t i = 0; i < S; ++i) {
    at::Tensor t = at::full({B}, sched.timesteps[i], at::TensorOptions().dtype(at::kLong).device(d.device));
    at::Tensor e = d.eps_from(d.engine->denoise(x, t, cond), x, t);
    at::Tensor pred_x0 = x.sub(sched.sqrt_one_minus_alphas[i].mul(e)).div(sched.sqrt_alphas[i]);
    at::Tensor noise = sched.sigmas[i].mul(at::randn(x.sizes(), gen, opts));  // drawn every step, as the original
    x = sched.sqrt_alphas_prev[i].mul(pred_x0).add(sched.dir_coef[i].mul(e)).add(noise);
    if (so.progress) so.progress(static_cast<int>(i + 1), static_cast<int>(S));
  }

  // decode against both frames' features, crop, clamp
  std::vector<at::Tensor> dec = {x};
  dec.insert(dec.end(), e0.begin() + 1, e0.end());
  dec.insert(dec.end(), e1.begin() + 1, e1.end());
  dec.push_back(p0);
  dec.push_back(p1);
  at::Tensor out = d.engine->decode(dec);
  out = out.slice(2, 0, H).slice(3, 0, W).clamp(-1.0, 1.0).to(at::kCPU, at::kFloat).contiguous();
  return squeeze ? out.squeeze(0) : out;
}

}  // namespace ldmvfi_fast
