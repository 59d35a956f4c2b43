#include "image_io.h"

#include <png.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace ldmvfi_app {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string o = "(";
  for (size_t i = 0; i < s.size(); ++i) o += (i ? ", " : "") + std::to_string(s[i]);
  return o + (s.size() == 1 ? ",)" : ")");
}

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (auto v : s) n *= v;
  return n;
}

struct File {
  FILE* f = nullptr;
  ~File() {
    if (f) std::fclose(f);
  }
};

[[noreturn]] void png_fail(png_structp png, png_const_charp msg) {
  auto* err = static_cast<std::string*>(png_get_error_ptr(png));
  if (err) *err = msg ? msg : "libpng error";
  png_longjmp(png, 1);
}
void png_warn(png_structp, png_const_charp) {}

}  // namespace

Image read_png(const std::string& path, std::string* note) {
  File file;
  file.f = std::fopen(path.c_str(), "rb");
  if (!file.f) throw IoError("cannot open " + path + ": " + std::strerror(errno));
  unsigned char sig[8];
  if (std::fread(sig, 1, 8, file.f) != 8 || png_sig_cmp(sig, 0, 8) != 0)
    throw IoError(path + " is not a PNG file (only PNG images are read)");
  std::string err;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_fail, png_warn);
  if (!png) throw IoError("libpng: out of memory");
  png_infop info = png_create_info_struct(png);
  Image img;
  std::vector<png_bytep> rows;
  std::string converted;
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    throw IoError(path + " cannot be read as PNG: " + (err.empty() ? "libpng error" : err));
  }
  png_init_io(png, file.f);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  const png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  const int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
  if (depth == 16) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw IoError(path + " is a 16-bit PNG; convert it to 8 bits per channel first");
  }
  if (ctype == PNG_COLOR_TYPE_PALETTE) {
    png_set_palette_to_rgb(png);
    converted = "palette";
  }
  if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) {
    if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    png_set_gray_to_rgb(png);
    converted = ctype == PNG_COLOR_TYPE_GRAY ? "gray" : "gray+alpha";
  }
  if (png_get_valid(png, info, PNG_INFO_tRNS)) {
    png_set_tRNS_to_alpha(png);
    if (converted.empty()) converted = "transparency";
  }
  if (ctype & PNG_COLOR_MASK_ALPHA) {
    png_set_strip_alpha(png);
    if (converted.empty()) converted = "RGBA";
  }
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_channels(png, info) == 4) png_set_strip_alpha(png), png_read_update_info(png, info);
  if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw IoError(path + ": unsupported PNG layout (bit depth " + std::to_string(depth) + ", colour type " +
                  std::to_string(ctype) + ")");
  }
  img.height = static_cast<int>(h);
  img.width = static_cast<int>(w);
  img.rgb.resize(static_cast<size_t>(h) * w * 3);
  rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) rows[y] = img.rgb.data() + static_cast<size_t>(y) * w * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  if (note) *note = converted.empty() ? "" : path + ": " + converted + " PNG converted to 8-bit RGB (alpha dropped)";
  return img;
}

void write_atomic(const std::string& path, const std::string& bytes) {
  std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  if (dir.empty()) dir = "/";
  std::string base = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  std::string tmpl = dir + "/." + base + ".XXXXXX.partial";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = ::mkstemps(name.data(), 8);
  if (fd < 0) throw IoError("cannot write to " + dir + ": " + std::strerror(errno));
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::string e = std::strerror(errno);
      ::close(fd);
      ::unlink(name.data());
      throw IoError("cannot write " + path + ": " + e);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  mode_t mask = ::umask(0);
  ::umask(mask);
  ::fchmod(fd, 0666 & ~mask);  // mkstemp makes 0600; the file gets the usual mode
  if (::close(fd) != 0 || std::rename(name.data(), path.c_str()) != 0) {
    std::string e = std::strerror(errno);
    ::unlink(name.data());
    throw IoError("cannot write " + path + ": " + e);
  }
}

void write_png(const std::string& path, const Image& img) {
  std::string out;
  std::string err;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_fail, png_warn);
  if (!png) throw IoError("libpng: out of memory");
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, info ? &info : nullptr);
    throw IoError("cannot encode " + path + " as PNG: " + err);
  }
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep data, png_size_t n) {
        static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<const char*>(data), n);
      },
      [](png_structp) {});
  png_set_IHDR(png, info, static_cast<png_uint_32>(img.width), static_cast<png_uint_32>(img.height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < img.height; ++y)
    png_write_row(png, const_cast<png_bytep>(img.rgb.data() + static_cast<size_t>(y) * img.width * 3));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  write_atomic(path, out);
}

std::vector<float> read_f32(const std::string& path, const std::vector<int64_t>& shape) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw IoError("cannot open " + path + ": " + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  std::string b = ss.str();
  size_t offset = 0;
  const bool npy = path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0;
  if (npy) {
    if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) throw IoError(path + " is not a .npy file");
    const int major = static_cast<unsigned char>(b[6]);
    size_t hlen, hstart;
    if (major == 1) {
      hlen = static_cast<unsigned char>(b[8]) | (static_cast<unsigned char>(b[9]) << 8);
      hstart = 10;
    } else {
      if (b.size() < 12) throw IoError(path + " is not a .npy file");
      hlen = 0;
      for (int k = 3; k >= 0; --k) hlen = (hlen << 8) | static_cast<unsigned char>(b[8 + k]);
      hstart = 12;
    }
    if (b.size() < hstart + hlen) throw IoError(path + ": truncated .npy header");
    std::string header = b.substr(hstart, hlen);
    auto field = [&](const std::string& key) {
      auto k = header.find("'" + key + "'");
      if (k == std::string::npos) throw IoError(path + ": .npy header has no " + key);
      return header.substr(header.find(':', k) + 1);
    };
    std::string descr = field("descr");
    if (descr.find("'<f4'") == std::string::npos)
      throw IoError(path + ": the array must be little-endian float32 ('<f4'), header: " + header);
    std::string fo = field("fortran_order");
    if (fo.compare(fo.find_first_not_of(' '), 5, "False") != 0)
      throw IoError(path + ": Fortran-ordered arrays are not read; save a C-ordered array");
    std::string sh = field("shape");
    sh = sh.substr(sh.find('(') + 1, sh.find(')') - sh.find('(') - 1);
    std::vector<int64_t> got;
    std::stringstream dims(sh);
    std::string tok;
    while (std::getline(dims, tok, ','))
      if (tok.find_first_not_of(' ') != std::string::npos) got.push_back(std::stoll(tok));
    if (got != shape) throw IoError(path + " holds an array of shape " + shape_str(got) + ", expected " + shape_str(shape));
    offset = hstart + hlen;
  }
  const size_t want = static_cast<size_t>(numel(shape)) * 4;
  if (b.size() - offset != want)
    throw IoError(path + " has " + std::to_string(b.size() - offset) + " data bytes; a float32 array of shape " +
                  shape_str(shape) + " has " + std::to_string(want));
  std::vector<float> out(static_cast<size_t>(numel(shape)));
  std::memcpy(out.data(), b.data() + offset, want);  // little-endian hosts (x86-64, aarch64)
  return out;
}

void write_f32(const std::string& path, const std::vector<float>& data, const std::vector<int64_t>& shape) {
  std::string bytes;
  const bool npy = path.size() >= 4 && path.compare(path.size() - 4, 4, ".npy") == 0;
  if (npy) {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_str(shape) + ", }";
    size_t total = 10 + header.size() + 1;
    header += std::string((64 - total % 64) % 64, ' ') + "\n";
    bytes = std::string("\x93NUMPY\x01\x00", 8);
    bytes += static_cast<char>(header.size() & 0xFF);
    bytes += static_cast<char>(header.size() >> 8);
    bytes += header;
  }
  bytes.append(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(float));
  write_atomic(path, bytes);
}

}  // namespace ldmvfi_app
