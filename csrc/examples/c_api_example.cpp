// Minimal C++ user of the ldmvfi_fast C API: runs DSepConv forward (K = 5) on random data
// and prints a checksum. Build with -DLDMVFI_FAST_BUILD_EXAMPLES=ON; needs a CUDA GPU.
#include <ldmvfi_fast/c_api.h>

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#define CHECK(expr)                                                                            \
  do {                                                                                         \
    const int code_ = static_cast<int>(expr);                                                  \
    if (code_ != 0) {                                                                          \
      std::fprintf(stderr, "%s failed: %s (%d)\n", #expr, ldmvfi_error_string(code_), code_); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

int main() {
  const int B = 1, C = 3, K = 5, H = 64, W = 96;
  const size_t n_in = size_t(B) * C * (H + K - 1) * (W + K - 1), n_k = size_t(B) * K * H * W;
  const size_t n_kk = size_t(B) * K * K * H * W, n_out = size_t(B) * C * H * W;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> u(-1.f, 1.f), pos(0.f, 1.f);
  auto fill = [&](size_t n, std::uniform_real_distribution<float>& d) {
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
  };
  const std::vector<float> h_in = fill(n_in, u), h_v = fill(n_k, pos), h_h = fill(n_k, pos);
  const std::vector<float> h_ox = fill(n_kk, u), h_oy = fill(n_kk, u), h_m = fill(n_kk, pos);

  float *d_in, *d_v, *d_h, *d_ox, *d_oy, *d_m, *d_out;
  CHECK(cudaMalloc(&d_in, n_in * sizeof(float)));
  CHECK(cudaMalloc(&d_v, n_k * sizeof(float)));
  CHECK(cudaMalloc(&d_h, n_k * sizeof(float)));
  CHECK(cudaMalloc(&d_ox, n_kk * sizeof(float)));
  CHECK(cudaMalloc(&d_oy, n_kk * sizeof(float)));
  CHECK(cudaMalloc(&d_m, n_kk * sizeof(float)));
  CHECK(cudaMalloc(&d_out, n_out * sizeof(float)));
  CHECK(cudaMemcpy(d_in, h_in.data(), n_in * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(d_v, h_v.data(), n_k * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(d_h, h_h.data(), n_k * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(d_ox, h_ox.data(), n_kk * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(d_oy, h_oy.data(), n_kk * sizeof(float), cudaMemcpyHostToDevice));
  CHECK(cudaMemcpy(d_m, h_m.data(), n_kk * sizeof(float), cudaMemcpyHostToDevice));

  cudaStream_t stream;
  CHECK(cudaStreamCreate(&stream));
  CHECK(ldmvfi_dsepconv_forward_f32(d_in, d_v, d_h, d_ox, d_oy, d_m, d_out, B, C, K, H, W, stream));
  CHECK(cudaStreamSynchronize(stream));

  std::vector<float> h_out(n_out);
  CHECK(cudaMemcpy(h_out.data(), d_out, n_out * sizeof(float), cudaMemcpyDeviceToHost));
  double sum = 0.0, asum = 0.0;
  for (float x : h_out) {
    sum += x;
    asum += x < 0 ? -x : x;
  }
  std::printf("ldmvfi C API %d.%d: dsepconv_forward_f32 (%d,%d,%d,%d) K=%d: sum=%.6f abs-sum=%.6f\n",
              ldmvfi_api_version() >> 16, ldmvfi_api_version() & 0xffff, B, C, H, W, K, sum, asum);

  CHECK(cudaStreamDestroy(stream));
  for (float* p : {d_in, d_v, d_h, d_ox, d_oy, d_m, d_out}) CHECK(cudaFree(p));
  return 0;
}
