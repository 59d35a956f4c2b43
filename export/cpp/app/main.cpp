// ldmvfi_interpolate FRAME0 FRAME1 -o OUT --engines DIR [options]: the middle frame of two PNG frames
// through an AOTInductor engine folder (export/build_aoti.py). See export/cpp/README.md.
// Exit status: 0 done, 2 user error (one line "error: ..." on stderr), 1 unexpected failure.
#include <ATen/ops/from_blob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "image_io.h"
#include "ldmvfi_fast/interpolator.h"

namespace {

constexpr const char* kUsage =
    "usage: ldmvfi_interpolate FRAME0 FRAME1 -o OUT --engines DIR [--steps N] [--eta E] [--seed S]\n"
    "                          [--noise FILE] [--device cpu|cuda[:N]] [--padding reference|minimal]\n"
    "                          [--ops-library LIB] [--raw-out FILE] [--overwrite] [--quiet]\n"
    "\n"
    "Interpolates the middle frame of two 8-bit PNG frames with LDMVFI engines (AOTInductor packages\n"
    "and manifest.json from export/build_aoti.py) and writes it as an 8-bit RGB PNG.\n"
    "\n"
    "  -o, --out OUT        output PNG (refused if it exists, unless --overwrite)\n"
    "  --engines DIR        engine folder (encoder.pt2, unet_step.pt2, decoder.pt2, manifest.json)\n"
    "  --steps N            DDIM steps (default 200); the manifest must have a table for N\n"
    "  --eta E              DDIM eta (default 1.0, the paper's; tables for 0 and 1)\n"
    "  --seed S             seed of the generator (default 0): x_T unless --noise, and the per-step\n"
    "                       noise; on CPU the same stream as torch.Generator().manual_seed(S)\n"
    "  --noise FILE         x_T, float32 (1, C, Hp/f, Wp/f): .npy ('<f4', C order) or raw little-endian\n"
    "  --device D           cpu (default) or cuda[:N]: what the packages were compiled for\n"
    "  --padding P          reference (default, the original's rule) or minimal\n"
    "  --ops-library LIB    library registering the ldmvfi_fast ops (default: $LDMVFI_FAST_OPS_LIBRARY,\n"
    "                       else the libldmvfi_fast_ops.so built with this program)\n"
    "  --raw-out FILE       also write the float32 frame (1, 3, H, W) in [-1, 1] (.npy or raw)\n"
    "  --overwrite          replace existing output files\n"
    "  --quiet              no progress on stderr\n";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

std::string parent(const std::string& p) {
  auto k = p.rfind('/');
  return k == std::string::npos ? "." : (k == 0 ? "/" : p.substr(0, k));
}

long long to_int(const std::string& opt, const std::string& v, long long lo, long long hi) {
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end || errno || x < lo || x > hi)
    throw UsageError(opt + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
                     v + "'");
  return x;
}

void check_output(const std::string& path, bool overwrite, const std::string& what) {
  if (exists(path) && !overwrite) throw UsageError(what + " " + path + " exists; pass --overwrite to replace it");
  struct stat st {};
  if (exists(path) && ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    throw UsageError(what + " " + path + " is a folder");
  const std::string dir = parent(path);
  if (!exists(dir)) throw UsageError("the folder " + dir + " of the " + what + " does not exist");
  if (::access(dir.c_str(), W_OK) != 0) throw UsageError("cannot write to " + dir);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> pos;
  std::string out, engines, noise, raw_out;
  ldmvfi_fast::Options opt;
  ldmvfi_fast::SampleOptions so;
  bool overwrite = false, quiet = false;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto value = [&](const std::string& name) -> std::string {
        if (i + 1 >= argc) throw UsageError(name + " needs a value");
        return argv[++i];
      };
      if (a == "-h" || a == "--help") {
        std::cout << kUsage;
        return 0;
      } else if (a == "-o" || a == "--out") out = value(a);
      else if (a == "--engines") engines = value(a);
      else if (a == "--steps") so.steps = static_cast<int>(to_int(a, value(a), 1, 1000000));
      else if (a == "--seed") so.seed = static_cast<uint64_t>(to_int(a, value(a), 0, INT64_MAX));
      else if (a == "--eta") {
        std::string v = value(a);
        char* end = nullptr;
        so.eta = std::strtod(v.c_str(), &end);
        if (v.empty() || *end || !(so.eta >= 0.0 && so.eta <= 1.0)) throw UsageError("--eta must be a number in [0, 1], got '" + v + "'");
      } else if (a == "--noise") noise = value(a);
      else if (a == "--device") opt.device = value(a);
      else if (a == "--padding") opt.padding = value(a);
      else if (a == "--ops-library") opt.ops_library = value(a);
      else if (a == "--raw-out") raw_out = value(a);
      else if (a == "--overwrite") overwrite = true;
      else if (a == "--quiet") quiet = true;
      else if (!a.empty() && a[0] == '-' && a != "-") throw UsageError("unknown option " + a);
      else pos.push_back(a);
    }
    if (pos.size() != 2) throw UsageError("give two frames (FRAME0 FRAME1), got " + std::to_string(pos.size()));
    if (out.empty()) throw UsageError("-o OUT is required");
    if (engines.empty()) throw UsageError("--engines DIR is required");
    if (opt.padding != "reference" && opt.padding != "minimal")
      throw UsageError("--padding must be reference or minimal, got '" + opt.padding + "'");
    check_output(out, overwrite, "output");
    if (!raw_out.empty()) check_output(raw_out, overwrite, "raw output");

    // inputs first: a bad frame is reported before the engines load
    std::string note0, note1;
    ldmvfi_app::Image im0 = ldmvfi_app::read_png(pos[0], &note0);
    ldmvfi_app::Image im1 = ldmvfi_app::read_png(pos[1], &note1);
    for (const auto& n : {note0, note1})
      if (!n.empty() && !quiet) std::cerr << "note: " << n << "\n";
    if (im0.height != im1.height || im0.width != im1.width)
      throw UsageError("frame sizes differ: " + pos[0] + " is " + std::to_string(im0.width) + "x" +
                       std::to_string(im0.height) + ", " + pos[1] + " is " + std::to_string(im1.width) + "x" +
                       std::to_string(im1.height) + " (width x height)");

    const auto t0 = std::chrono::steady_clock::now();
    ldmvfi_fast::Interpolator interp(engines, opt);
    const int64_t H = im0.height, W = im0.width;
    std::vector<float> x_T;
    if (!noise.empty()) {
      auto shape = interp.noise_shape(1, H, W);
      x_T = ldmvfi_app::read_f32(noise, shape);
      so.x_T = at::from_blob(x_T.data(), shape, at::TensorOptions().dtype(at::kFloat)).clone();
    }
    if (!quiet && ::isatty(2))
      so.progress = [](int done, int total) {
        std::fprintf(stderr, "\rsampling %d/%d", done, total);
        if (done == total) std::fprintf(stderr, "\n");
      };
    // utils.video.to_tensor: uint8 -> float / 127.5 - 1
    auto frame = [&](ldmvfi_app::Image& im) {
      return at::from_blob(im.rgb.data(), {H, W, 3}, at::TensorOptions().dtype(at::kByte))
          .permute({2, 0, 1})
          .unsqueeze(0)
          .to(at::kFloat)
          .div(127.5)
          .sub(1.0);
    };
    at::Tensor mid = interp.interpolate(frame(im0), frame(im1), so);  // (1, 3, H, W) in [-1, 1]
    // video.from_tensor: ((x.clamp(-1, 1) + 1) * 127.5).round() -> uint8
    at::Tensor u8 = mid.clamp(-1, 1).add(1.0).mul(127.5).round().to(at::kByte)[0].permute({1, 2, 0}).contiguous();
    ldmvfi_app::Image res;
    res.height = static_cast<int>(H);
    res.width = static_cast<int>(W);
    res.rgb.assign(u8.const_data_ptr<uint8_t>(), u8.const_data_ptr<uint8_t>() + u8.numel());
    ldmvfi_app::write_png(out, res);
    if (!raw_out.empty()) {
      const float* p = mid.const_data_ptr<float>();
      ldmvfi_app::write_f32(raw_out, std::vector<float>(p, p + mid.numel()), {1, 3, H, W});
    }
    if (!quiet) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cerr << "wrote " << out << " (" << W << "x" << H << ", " << so.steps << " steps, " << s << " s)\n";
    }
    return 0;
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n" << (std::string(e.what()).find("give two") == 0 ? kUsage : "");
    return 2;
  } catch (const ldmvfi_fast::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const ldmvfi_app::IoError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::string msg = e.what();
    std::cerr << "error: unexpected failure: " << msg.substr(0, msg.find('\n')) << "\n";
    return 1;
  }
}
