// PNG and array files for the example application (libpng; no torch).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ldmvfi_app {

struct IoError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// 8-bit RGB, row-major H x W x 3.
struct Image {
  int height = 0, width = 0;
  std::vector<uint8_t> rgb;
};

/// Reads a PNG as 8-bit RGB. 8-bit RGB is read as is; gray, gray+alpha, palette and RGBA
/// (8-bit or less) are converted to RGB (alpha dropped) and `note` says so; 16-bit is refused.
Image read_png(const std::string& path, std::string* note);
/// Writes an 8-bit RGB PNG to `path` (through a temporary file in the same folder, then renamed).
void write_png(const std::string& path, const Image& img);

/// float32 arrays: `.npy` (little-endian '<f4', C order) or raw little-endian float32 (any other name).
/// `shape` is checked (npy: exactly; raw: the byte count).
std::vector<float> read_f32(const std::string& path, const std::vector<int64_t>& shape);
void write_f32(const std::string& path, const std::vector<float>& data, const std::vector<int64_t>& shape);

/// Writes `bytes` to `path` through a temporary file beside it + rename.
void write_atomic(const std::string& path, const std::string& bytes);

}  // namespace ldmvfi_app
