// A one-input-channel Conv2D (stride 1, kernel 1, 3, 5 or 7) + ReLU + 2x2 max pool, forward and
// weight gradient, in one pass over each image. See mnistlab/fused_conv.py for why and for the
// Python side.
//
// Layouts: images x (N, H, W); weight (C, 1, k, k); the pooled output y either planar (N, C, H2,
// W2) or channels-last (N, H2, W2, C), and its gradient in the same layout. Per pooled value a
// code byte, kept in planes (N, C, H2, S) with rows padded to S = whole 16-lane vectors: 0..3 is
// the corner of the 2x2 window that holds the first maximum in row-major order (PyTorch's and
// Keras's rule); 255 means the maximum was <= 0, so ReLU passed no gradient (or a padding lane).
//
// The arithmetic uses GCC vector types, lowered to whatever -march=native offers (AVX-512 on the
// development machine). Forward: a row pair of one 32-column tile for up to 6 channels stays in
// registers while every tap is read once; pooling runs on the registers through even/odd lane
// shuffles. Backward: the pooled gradient is expanded in registers back to that row pair (nonzero
// only at each window's maximum) and every tap's accumulator sums it times the shifted input.
//
// Work is split into fixed blocks of images, and the weight gradient is summed per block, then
// over the blocks in order, so results do not depend on the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr int64_t TW = 32;     // conv output columns per tile: two 16-float vectors
constexpr int64_t LANES = 16;  // pooled columns per tile
constexpr int64_t BLOCK = 16;  // images per work item
constexpr int GROUP = 6;       // channels per pass: 6 x 4 accumulators + 4 inputs fit 32 registers
constexpr uint8_t NO_GRAD = 255;

typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  // unaligned loads
typedef int32_t i16 __attribute__((vector_size(64)));
typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef uint8_t u8x16u __attribute__((vector_size(16), aligned(1)));

inline v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline v16 splat(float x) {  // one broadcast (v16{} + x would add a zero first)
  return v16{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
}
inline v16 vmax(v16 a, v16 b) { return a >= b ? a : b; }  // a on ties: the first corner wins
inline v16 evens(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}
inline v16 odds(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}
inline v16 interleave_low(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}
inline v16 interleave_high(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15,
                                 31);
}

struct Geometry {
  int64_t N, H, W, C, k, pt, pl, H2, W2, tiles, S, Hp, Wp;
  bool planar;
  bool relu = true;  // false: max pool only (an increasing activation runs after it, in Python)
  int64_t y_at(int64_t c, int64_t oh, int64_t pw) const {  // offset within one image
    return planar ? (c * H2 + oh) * W2 + pw : (oh * W2 + pw) * C + c;
  }
};

Geometry geometry(const at::Tensor& x, const at::Tensor& weight, int64_t pt, int64_t pb,
                  int64_t pl, int64_t pr, bool planar) {
  Geometry g;
  g.N = x.size(0); g.H = x.size(1); g.W = x.size(2);
  g.C = weight.size(0); g.k = weight.size(2);
  g.pt = pt; g.pl = pl; g.planar = planar;
  const int64_t ho = g.H + pt + pb - g.k + 1, wo = g.W + pl + pr - g.k + 1;
  TORCH_CHECK(ho >= 2 && wo >= 2, "conv_relu_pool: output smaller than one 2x2 window");
  g.H2 = ho / 2; g.W2 = wo / 2;
  g.tiles = (g.W2 + LANES - 1) / LANES;
  g.S = g.tiles * LANES;
  g.Hp = 2 * g.H2 + g.k - 1;      // padded rows the pooled rows read
  g.Wp = g.tiles * TW + g.k - 1;  // padded row length: every tile's loads stay inside the row
  return g;
}

// xp[r][c] = x[r - pt][c - pl], zero outside the image.
void pad_image(const float* x, const Geometry& g, float* xp) {
  std::fill(xp, xp + g.Hp * g.Wp, 0.0f);
  const int64_t c0 = std::max<int64_t>(0, g.pl), src0 = c0 - g.pl;
  const int64_t len = std::min(g.W - src0, g.Wp - c0);
  if (len <= 0) return;
  for (int64_t r = 0; r < g.Hp; ++r) {
    const int64_t sr = r - g.pt;
    if (sr >= 0 && sr < g.H) std::memcpy(xp + r * g.Wp + c0, x + sr * g.W + src0, 4 * len);
  }
}

template <int K, int G>
void forward_group(const float* xp, const float* w, const float* b, const Geometry& g,
                   int64_t c0, float* y, uint8_t* code) {
  i16 lane;
  for (int v = 0; v < LANES; ++v) lane[v] = v;
  for (int64_t oh = 0; oh < g.H2; ++oh) {
    for (int64_t t = 0; t < g.tiles; ++t) {
      v16 acc[G][4];  // per channel: top row (2 vectors), bottom row (2 vectors)
      for (int c = 0; c < G; ++c)
        for (int q = 0; q < 4; ++q) acc[c][q] = splat(b[c0 + c]);
      const float* base = xp + 2 * oh * g.Wp + t * TW;
      for (int i = 0; i < K; ++i) {
        for (int j = 0; j < K; ++j) {
          const float* r0 = base + i * g.Wp + j;
          const v16 x00 = load(r0), x01 = load(r0 + 16);
          const v16 x10 = load(r0 + g.Wp), x11 = load(r0 + g.Wp + 16);
          for (int c = 0; c < G; ++c) {
            const v16 wv = splat(w[((c0 + c) * K + i) * K + j]);
            acc[c][0] += wv * x00; acc[c][1] += wv * x01;
            acc[c][2] += wv * x10; acc[c][3] += wv * x11;
          }
        }
      }
      const int64_t first = t * LANES, count = std::min<int64_t>(g.W2 - first, LANES);
      const i16 valid = lane < static_cast<int32_t>(count);
      for (int c = 0; c < G; ++c) {
        const v16 c00 = evens(acc[c][0], acc[c][1]), c01 = odds(acc[c][0], acc[c][1]);
        const v16 c10 = evens(acc[c][2], acc[c][3]), c11 = odds(acc[c][2], acc[c][3]);
        const v16 upper = vmax(c00, c01), lower = vmax(c10, c11);
        const i16 is_upper = upper >= lower;
        const v16 m = is_upper ? upper : lower;
        const i16 corner = is_upper ? (c00 >= c01 ? i16{} : i16{} + 1)
                                    : (c10 >= c11 ? i16{} + 2 : i16{} + 3);
        const i16 positive = g.relu ? m > splat(0.0f) : lane == lane;  // no ReLU: all pass
        const v16 out = positive ? m : splat(0.0f);
        const i16 codes = (positive & valid) ? corner : i16{} + NO_GRAD;
        *reinterpret_cast<u8x16u*>(code + ((c0 + c) * g.H2 + oh) * g.S + first) =
            __builtin_convertvector(codes, u8x16);
        const int64_t at = g.y_at(c0 + c, oh, first);
        if (g.planar && at + LANES <= (c0 + c + 1) * g.H2 * g.W2) {
          // a whole vector: lanes past W2 spill into this channel's next rows, written later
          *reinterpret_cast<v16u*>(y + at) = out;
        } else if (g.planar) {
          for (int64_t u = 0; u < count; ++u) y[at + u] = out[u];
        } else {
          float* dst = y + g.y_at(c0 + c, oh, first);
          for (int64_t u = 0; u < count; ++u) dst[u * g.C] = out[u];
        }
      }
    }
  }
}

template <int K, int G>
void forward_channels(const float* xp, const float* w, const float* b, const Geometry& g,
                      int64_t c0, float* y, uint8_t* code) {
  if constexpr (G > 0) {
    if (g.C - c0 >= GROUP) {
      forward_group<K, GROUP>(xp, w, b, g, c0, y, code);
      forward_channels<K, G>(xp, w, b, g, c0 + GROUP, y, code);
    } else if (g.C - c0 == G) {
      forward_group<K, G>(xp, w, b, g, c0, y, code);
    } else {
      forward_channels<K, G - 1>(xp, w, b, g, c0, y, code);
    }
  }
}

// Adds one image's weight and bias gradients to gw (C*K*K) and gb (C). `plane` is scratch for
// one channel's pooled gradient in the codes' padded layout (lanes past W2 have code 255).
template <int K>
void backward_image(const float* xp, const float* grad, const uint8_t* code, const Geometry& g,
                    float* plane, float* gw, float* gb) {
  const int64_t plane_size = g.H2 * g.S;
  for (int64_t c = 0; c < g.C; ++c) {
    for (int64_t oh = 0; oh < g.H2; ++oh)
      for (int64_t pw = 0; pw < g.W2; ++pw) plane[oh * g.S + pw] = grad[g.y_at(c, oh, pw)];
    const uint8_t* cplane = code + c * plane_size;
    v16 acc[K * K];
    for (int q = 0; q < K * K; ++q) acc[q] = v16{};
    v16 bias_acc{};
    for (int64_t oh = 0; oh < g.H2; ++oh) {
      for (int64_t t = 0; t < g.tiles; ++t) {
        const int64_t at = oh * g.S + t * LANES;
        const v16 gv = load(plane + at);
        const i16 cv = __builtin_convertvector(*reinterpret_cast<const u8x16u*>(cplane + at), i16);
        const v16 zero{};
        const v16 d00 = cv == 0 ? gv : zero, d01 = cv == 1 ? gv : zero;
        const v16 d10 = cv == 2 ? gv : zero, d11 = cv == 3 ? gv : zero;
        bias_acc += (d00 + d01) + (d10 + d11);
        const v16 top0 = interleave_low(d00, d01), top1 = interleave_high(d00, d01);
        const v16 bot0 = interleave_low(d10, d11), bot1 = interleave_high(d10, d11);
        // input row 2*oh + r meets the top row through tap row r and the bottom row through
        // tap row r - 1: each shifted input vector is loaded once for both
        const float* base = xp + 2 * oh * g.Wp + t * TW;
        for (int r = 0; r <= K; ++r)
          for (int j = 0; j < K; ++j) {
            const float* row = base + r * g.Wp + j;
            const v16 x0 = load(row), x1 = load(row + 16);
            if (r < K) acc[r * K + j] += top0 * x0 + top1 * x1;
            if (r > 0) acc[(r - 1) * K + j] += bot0 * x0 + bot1 * x1;
          }
      }
    }
    for (int q = 0; q < K * K; ++q) {
      float sum = 0.0f;
      for (int v = 0; v < LANES; ++v) sum += acc[q][v];
      gw[c * K * K + q] += sum;
    }
    float bias_sum = 0.0f;
    for (int v = 0; v < LANES; ++v) bias_sum += bias_acc[v];
    gb[c] += bias_sum;
  }
}

template <typename F>
void by_kernel_size(int64_t k, F&& f) {
  switch (k) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: TORCH_CHECK(false, "conv_relu_pool: kernel size must be 1, 3, 5 or 7; got ", k);
  }
}

void check_inputs(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  TORCH_CHECK(x.dim() == 3 && x.scalar_type() == at::kFloat && x.is_contiguous() && x.is_cpu(),
              "conv_relu_pool: images must be a contiguous float32 (N, H, W) CPU tensor");
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == 1 && weight.size(2) == weight.size(3) &&
                  weight.scalar_type() == at::kFloat && weight.is_contiguous(),
              "conv_relu_pool: weight must be a contiguous float32 (C, 1, k, k) tensor");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0) &&
                  bias.scalar_type() == at::kFloat && bias.is_contiguous(),
              "conv_relu_pool: bias must be a contiguous float32 (C,) tensor");
}

}  // namespace

std::vector<at::Tensor> conv_relu_pool_forward(const at::Tensor& x, const at::Tensor& weight,
                                               const at::Tensor& bias, int64_t pt, int64_t pb,
                                               int64_t pl, int64_t pr, bool planar,
                                               bool relu) {
  check_inputs(x, weight, bias);
  Geometry g = geometry(x, weight, pt, pb, pl, pr, planar);
  g.relu = relu;
  auto y = planar ? at::empty({g.N, g.C, g.H2, g.W2}, x.options())
                  : at::empty({g.N, g.H2, g.W2, g.C}, x.options());
  auto code = at::empty({g.N, g.C, g.H2, g.S}, x.options().dtype(at::kByte));
  const float *xs = x.data_ptr<float>(), *w = weight.data_ptr<float>(), *b = bias.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  uint8_t* cs = code.data_ptr<uint8_t>();
  const int64_t per_image = g.C * g.H2 * g.W2, codes_per_image = g.C * g.H2 * g.S;
  const int64_t blocks = (g.N + BLOCK - 1) / BLOCK;
  by_kernel_size(g.k, [&](auto kc) {
    constexpr int K = decltype(kc)::value;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> xp(g.Hp * g.Wp);
      for (int64_t n = begin * BLOCK; n < std::min(g.N, end * BLOCK); ++n) {
        pad_image(xs + n * g.H * g.W, g, xp.data());
        forward_channels<K, GROUP>(xp.data(), w, b, g, 0, ys + n * per_image,
                                   cs + n * codes_per_image);
      }
    });
  });
  return {y, code};
}

std::vector<at::Tensor> conv_relu_pool_backward(const at::Tensor& grad, const at::Tensor& code,
                                                const at::Tensor& x, const at::Tensor& weight,
                                                const at::Tensor& bias, int64_t pt, int64_t pb,
                                                int64_t pl, int64_t pr, bool planar) {
  check_inputs(x, weight, bias);
  const Geometry g = geometry(x, weight, pt, pb, pl, pr, planar);
  TORCH_CHECK(grad.is_contiguous() && grad.scalar_type() == at::kFloat &&
                  grad.numel() == g.N * g.C * g.H2 * g.W2,
              "conv_relu_pool: the gradient must be contiguous, in the output's layout");
  TORCH_CHECK(code.is_contiguous() && code.numel() == g.N * g.C * g.H2 * g.S,
              "conv_relu_pool: codes do not match these images");
  const int64_t per_image = g.C * g.H2 * g.W2, codes_per_image = g.C * g.H2 * g.S;
  const int64_t blocks = (g.N + BLOCK - 1) / BLOCK, n_w = g.C * g.k * g.k;
  std::vector<float> partial(blocks * (n_w + g.C), 0.0f);  // per block: gw then gb
  const float *xs = x.data_ptr<float>(), *gs = grad.data_ptr<float>();
  const uint8_t* cs = code.data_ptr<uint8_t>();
  by_kernel_size(g.k, [&](auto kc) {
    constexpr int K = decltype(kc)::value;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> xp(g.Hp * g.Wp), plane(g.H2 * g.S + LANES, 0.0f);
      for (int64_t blk = begin; blk < end; ++blk) {
        float* gw = partial.data() + blk * (n_w + g.C);
        for (int64_t n = blk * BLOCK; n < std::min(g.N, (blk + 1) * BLOCK); ++n) {
          pad_image(xs + n * g.H * g.W, g, xp.data());
          backward_image<K>(xp.data(), gs + n * per_image, cs + n * codes_per_image, g,
                            plane.data(), gw, gw + n_w);
        }
      }
    });
  });
  std::vector<double> total(n_w + g.C, 0.0);
  for (int64_t blk = 0; blk < blocks; ++blk)
    for (int64_t i = 0; i < n_w + g.C; ++i) total[i] += partial[blk * (n_w + g.C) + i];
  auto grad_w = at::empty_like(weight), grad_b = at::empty_like(bias);
  float *gw = grad_w.data_ptr<float>(), *gb = grad_b.data_ptr<float>();
  for (int64_t i = 0; i < n_w; ++i) gw[i] = static_cast<float>(total[i]);
  for (int64_t c = 0; c < g.C; ++c) gb[c] = static_cast<float>(total[n_w + c]);
  return {grad_w, grad_b};
}

// relu_pool.cpp
std::vector<at::Tensor> relu_pool_forward(const at::Tensor& x, bool relu);
at::Tensor relu_pool_backward(const at::Tensor& grad, const at::Tensor& code, int64_t H,
                              int64_t W);

// small_conv.cpp
at::Tensor small_conv_forward(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias, int64_t pt, int64_t pb, int64_t pl,
                              int64_t pr);
std::vector<at::Tensor> small_conv_backward(const at::Tensor& grad, const at::Tensor& x,
                                            const at::Tensor& weight, int64_t pt, int64_t pb,
                                            int64_t pl, int64_t pr, bool input_grad);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &conv_relu_pool_forward, "Conv2D(1 -> C, stride 1) + ReLU (optional) + 2x2 max pool");
  m.def("backward", &conv_relu_pool_backward, "its weight and bias gradients");
  m.def("relu_pool_forward", &relu_pool_forward, "ReLU (optional) + 2x2 max pool, channels-last");
  m.def("relu_pool_backward", &relu_pool_backward, "its input gradient");
  m.def("small_conv_forward", &small_conv_forward, "Conv2D with few channels, (N, H, W, C) maps");
  m.def("small_conv_backward", &small_conv_backward, "its input, weight and bias gradients");
}
