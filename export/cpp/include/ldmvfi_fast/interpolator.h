// ldmvfi_fast C++ library: LDMVFI frame interpolation from an engine folder (the one public header).
//
// An engine folder is what `python export/build_aoti.py` writes: encoder.pt2, unet_step.pt2,
// decoder.pt2 (AOTInductor packages) and manifest.json (format "ldmvfi_fast.engines",
// format_version 2). Everything the C++ side needs comes from the manifest: graph files, pad unit,
// accepted sizes, prediction type, alphas_cumprod and the DDIM coefficient tables (`ddim`); the
// DDIM timestep rule is NOT re-derived here.
//
//   ldmvfi_fast::Interpolator interp("engines/", {/*device*/ "cpu"});
//   at::Tensor mid = interp.interpolate(frame0, frame1, {/*steps*/ 200});  // (1, 3, H, W) in [-1, 1]
//
// Numerics are those of the Python pipeline (`ldmvfi_fast.pipeline.Interpolator`): reflect padding
// (mode "reference" by default), one encode per frame, DDIM as the original, decode, crop, clamp.
// Random numbers come from ATen's generator of the device seeded with `seed`: on CPU this is the
// stream of `torch.Generator().manual_seed(seed)`, drawn in the same order as the Python pipeline
// (x_T first unless given, then one draw per step), so `seed` alone reproduces
// `Interpolator.interpolate(frame0, frame1, seed=seed)`.
//
// All errors are thrown as ldmvfi_fast::Error (a std::runtime_error) with a message for the user.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ldmvfi_fast {

/// A user-facing error (bad engine folder, bad input, bad option); the message says what to do.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Options {
  /// "cpu", "cuda" or "cuda:N": must be the device the packages were compiled for.
  std::string device = "cpu";
  /// Shared library registering the ldmvfi_fast ops (torch.ops.ldmvfi_fast.*) that the packages call.
  /// Empty: $LDMVFI_FAST_OPS_LIBRARY, else the libldmvfi_fast_ops built with this library.
  /// Not loaded when the ops are registered already.
  std::string ops_library;
  /// "reference" (the Python default: the original's rule) or "minimal".
  std::string padding = "reference";
};

struct SampleOptions {
  /// DDIM steps: a count with a table in the manifest (see Interpolator::step_counts()).
  int steps = 200;
  /// DDIM eta: a value with a table in the manifest (build_aoti writes 0 and 1; 1 is the paper's).
  double eta = 1.0;
  /// Seed of the device generator (x_T when not given, and the per-step noise).
  uint64_t seed = 0;
  /// Initial latent noise (B, latent_channels, Hp/f, Wp/f) float32; empty: drawn from the generator.
  std::optional<at::Tensor> x_T;
  /// Called after each DDIM step with (done, total); empty: nothing.
  std::function<void(int, int)> progress;
};

class Engine;  // the three graphs behind encode / denoise / decode (internal; src/engine.h)

class Interpolator {
 public:
  /// Load an engine folder: reads and checks manifest.json, loads the op library, the packages.
  explicit Interpolator(const std::string& engine_dir, const Options& options = Options());
  ~Interpolator();
  Interpolator(const Interpolator&) = delete;
  Interpolator& operator=(const Interpolator&) = delete;

  /// Middle frame between two (B, 3, H, W) (or (3, H, W)) float frames in [-1, 1] of one size.
  /// Returns the frame in [-1, 1] (float32, CPU), same shape as the inputs.
  at::Tensor interpolate(const at::Tensor& frame0, const at::Tensor& frame1,
                         const SampleOptions& options = SampleOptions());

  /// (Hp, Wp) after padding an H x W frame (throws Error when the mode cannot pad it).
  std::pair<int64_t, int64_t> padded_size(int64_t height, int64_t width) const;
  /// Shape of x_T for a batch of H x W frames: (B, C, Hp/f, Wp/f).
  std::vector<int64_t> noise_shape(int64_t batch, int64_t height, int64_t width) const;
  /// DDIM step counts and etas the manifest has coefficient tables for.
  std::vector<int> step_counts() const;
  std::vector<double> etas() const;
  /// The manifest's runtime ("aoti") and device of the engines.
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ldmvfi_fast
