// A one-input-channel Conv2D (stride 1) + ReLU + 2x2 max pool, forward and weight gradient, in one
// pass over each image. See mnistlab/fused_conv.py for why and for the Python side.
//
// Layouts: images x (N, H, W); weight (C, 1, k, k); pooled output y and the window codes
// (N, H2, W2, C), i.e. channels-last, which is what Keras's Flatten and the next channels-last
// convolution read without a copy. code = 0..3: the corner of the 2x2 window that holds the
// first maximum in row-major order (PyTorch's and Keras's rule); 255: the maximum was <= 0, so
// ReLU passed no gradient.
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

constexpr int64_t TW = 32;     // conv output columns per tile: two AVX-512 vectors of floats
constexpr int64_t BLOCK = 16;  // images per work item
constexpr uint8_t NO_GRAD = 255;

struct Geometry {
  int64_t N, H, W, C, k, pt, pl, H2, W2, tiles, Hp, Wp;
};

Geometry geometry(const at::Tensor& x, const at::Tensor& weight, int64_t pt, int64_t pb,
                  int64_t pl, int64_t pr) {
  Geometry g;
  g.N = x.size(0); g.H = x.size(1); g.W = x.size(2);
  g.C = weight.size(0); g.k = weight.size(2);
  g.pt = pt; g.pl = pl;
  int64_t ho = g.H + pt + pb - g.k + 1, wo = g.W + pl + pr - g.k + 1;
  TORCH_CHECK(ho >= 2 && wo >= 2, "conv_relu_pool: output smaller than one 2x2 window");
  g.H2 = ho / 2; g.W2 = wo / 2;
  g.tiles = (2 * g.W2 + TW - 1) / TW;
  g.Hp = 2 * g.H2 + g.k - 1;        // padded rows the pooled rows read
  g.Wp = g.tiles * TW + g.k - 1;    // padded row length, so every tile reads inside the row
  return g;
}

// xp[r][c] = x[r - pt][c - pl], zero outside the image.
void pad_image(const float* x, const Geometry& g, float* xp) {
  std::fill(xp, xp + g.Hp * g.Wp, 0.0f);
  int64_t c0 = std::max<int64_t>(0, g.pl), src0 = c0 - g.pl;
  int64_t len = std::min(g.W - src0, g.Wp - c0);
  if (len <= 0) return;
  for (int64_t r = 0; r < g.Hp; ++r) {
    int64_t sr = r - g.pt;
    if (sr < 0 || sr >= g.H) continue;
    std::memcpy(xp + r * g.Wp + c0, x + sr * g.W + src0, sizeof(float) * len);
  }
}

void forward_image(const float* xp, const float* w, const float* b, const Geometry& g,
                   float* y, uint8_t* code) {
  const int64_t k = g.k, C = g.C;
  for (int64_t oh = 0; oh < g.H2; ++oh) {
    for (int64_t t = 0; t < g.tiles; ++t) {
      for (int64_t c = 0; c < C; ++c) {
        float top[TW], bottom[TW];
        for (int64_t v = 0; v < TW; ++v) { top[v] = b[c]; bottom[v] = b[c]; }
        for (int64_t i = 0; i < k; ++i) {
          const float* r0 = xp + (2 * oh + i) * g.Wp + t * TW;
          const float* r1 = r0 + g.Wp;
          for (int64_t j = 0; j < k; ++j) {
            const float wv = w[(c * k + i) * k + j];
#pragma omp simd
            for (int64_t v = 0; v < TW; ++v) {
              top[v] += wv * r0[v + j];
              bottom[v] += wv * r1[v + j];
            }
          }
        }
        const int64_t first = t * (TW / 2), last = std::min(g.W2, first + TW / 2);
        for (int64_t pw = first; pw < last; ++pw) {
          const int64_t u = 2 * (pw - first);
          const float c00 = top[u], c01 = top[u + 1], c10 = bottom[u], c11 = bottom[u + 1];
          const float upper = std::max(c00, c01), lower = std::max(c10, c11);
          uint8_t corner;
          float m;
          if (upper >= lower) { m = upper; corner = c00 >= c01 ? 0 : 1; }
          else { m = lower; corner = c10 >= c11 ? 2 : 3; }
          const int64_t at = (oh * g.W2 + pw) * C + c;
          if (m > 0.0f) { y[at] = m; code[at] = corner; }
          else { y[at] = 0.0f; code[at] = NO_GRAD; }
        }
      }
    }
  }
}

// Adds this image's weight and bias gradients to gw (C*k*k) and gb (C).
void backward_image(const float* xp, const float* grad, const uint8_t* code, const Geometry& g,
                    float* dense, float* gw, float* gb) {
  const int64_t k = g.k, C = g.C, rows = 2 * g.H2, cols = g.tiles * TW;
  std::fill(dense, dense + C * rows * cols, 0.0f);  // (C, rows, cols) conv-output gradient
  for (int64_t oh = 0; oh < g.H2; ++oh) {
    for (int64_t pw = 0; pw < g.W2; ++pw) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t at = (oh * g.W2 + pw) * C + c;
        const uint8_t corner = code[at];
        if (corner == NO_GRAD) continue;
        const int64_t r = 2 * oh + (corner >> 1), s = 2 * pw + (corner & 1);
        dense[(c * rows + r) * cols + s] = grad[at];
        gb[c] += grad[at];
      }
    }
  }
  for (int64_t c = 0; c < C; ++c) {
    const float* gc = dense + c * rows * cols;
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        float acc[TW];
        for (int64_t v = 0; v < TW; ++v) acc[v] = 0.0f;
        for (int64_t r = 0; r < rows; ++r) {
          const float* grow = gc + r * cols;
          const float* xrow = xp + (r + i) * g.Wp + j;
          for (int64_t t = 0; t < g.tiles; ++t) {
#pragma omp simd
            for (int64_t v = 0; v < TW; ++v) acc[v] += grow[t * TW + v] * xrow[t * TW + v];
          }
        }
        float sum = 0.0f;
        for (int64_t v = 0; v < TW; ++v) sum += acc[v];
        gw[(c * k + i) * k + j] += sum;
      }
    }
  }
}

// ---- Register-blocked paths for the usual kernel sizes (1, 3, 5, 7), with GCC vector types
// (lowered to whatever vector instructions -march=native offers: AVX-512 on the dev machine).
// Forward: a row pair of one tile for up to G channels stays in registers while every tap is
// read once; the 2x2 pooling happens on the registers through even/odd lane shuffles.
typedef float v16 __attribute__((vector_size(64)));
typedef float v16u __attribute__((vector_size(64), aligned(4)));  // unaligned loads
typedef int32_t i16 __attribute__((vector_size(64)));

inline v16 load(const float* p) { return *reinterpret_cast<const v16u*>(p); }
inline v16 splat(float x) { return v16{} + x; }
inline v16 evens(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
}
inline v16 odds(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
}
inline v16 vmax(v16 a, v16 b) { return a >= b ? a : b; }  // a where a >= b: first wins ties

static_assert(TW == 32, "the vector paths hold a tile in two 16-float vectors");

template <int K, int G>
void forward_group(const float* xp, const float* w, const float* b, const Geometry& g,
                   int64_t c0, float* y, uint8_t* code) {
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
      const int64_t first = t * (TW / 2), count = std::min<int64_t>(g.W2 - first, TW / 2);
      for (int c = 0; c < G; ++c) {
        const v16 c00 = evens(acc[c][0], acc[c][1]), c01 = odds(acc[c][0], acc[c][1]);
        const v16 c10 = evens(acc[c][2], acc[c][3]), c11 = odds(acc[c][2], acc[c][3]);
        const v16 upper = vmax(c00, c01), lower = vmax(c10, c11);
        const i16 is_upper = upper >= lower;
        const v16 m = is_upper ? upper : lower;
        const i16 corner = is_upper ? (c00 >= c01 ? i16{} : i16{} + 1)
                                    : (c10 >= c11 ? i16{} + 2 : i16{} + 3);
        const i16 positive = m > splat(0.0f);
        const v16 out = positive ? m : splat(0.0f);
        const i16 codes = positive ? corner : i16{} + NO_GRAD;
        float* yrow = y + (oh * g.W2 + first) * g.C + c0 + c;
        uint8_t* crow = code + (oh * g.W2 + first) * g.C + c0 + c;
        for (int64_t u = 0; u < count; ++u) {
          yrow[u * g.C] = out[u];
          crow[u * g.C] = static_cast<uint8_t>(codes[u]);
        }
      }
    }
  }
}

constexpr int GROUP = 6;  // 6 channels x 4 accumulators + 4 inputs: 28 of 32 vector registers

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

void forward_fast(const float* xp, const float* w, const float* b, const Geometry& g, float* y,
                  uint8_t* code) {
  switch (g.k) {
    case 1: forward_channels<1, GROUP>(xp, w, b, g, 0, y, code); break;
    case 3: forward_channels<3, GROUP>(xp, w, b, g, 0, y, code); break;
    case 5: forward_channels<5, GROUP>(xp, w, b, g, 0, y, code); break;
    case 7: forward_channels<7, GROUP>(xp, w, b, g, 0, y, code); break;
    default: forward_image(xp, w, b, g, y, code);
  }
}

typedef uint8_t u8x16 __attribute__((vector_size(16)));
typedef uint8_t u8x16u __attribute__((vector_size(16), aligned(1)));

inline v16 interleave_low(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
}
inline v16 interleave_high(v16 a, v16 b) {
  return __builtin_shufflevector(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15,
                                 31);
}

// Backward for one image: the pooled gradient and codes, transposed to one plane per channel
// (rows padded to whole tiles with zero gradient), are expanded in registers back to the conv
// output's row pair (gradient only at each window's maximum), and every tap's accumulator sums
// that row pair times the shifted input rows. Adds to gw (C*K*K) and gb (C).
template <int K>
void backward_planes(const float* xp, const float* grad, const uint8_t* code, const Geometry& g,
                     float* planes, uint8_t* codes, float* gw, float* gb) {
  const int64_t stride = g.tiles * (TW / 2), plane = g.H2 * stride;  // pooled row, channel plane
  std::fill(planes, planes + g.C * plane, 0.0f);
  std::fill(codes, codes + g.C * plane, NO_GRAD);
  for (int64_t oh = 0; oh < g.H2; ++oh)
    for (int64_t pw = 0; pw < g.W2; ++pw)
      for (int64_t c = 0; c < g.C; ++c) {
        const int64_t at = (oh * g.W2 + pw) * g.C + c;
        planes[c * plane + oh * stride + pw] = grad[at];
        codes[c * plane + oh * stride + pw] = code[at];
      }
  for (int64_t c = 0; c < g.C; ++c) {
    v16 acc[K * K];
    for (int q = 0; q < K * K; ++q) acc[q] = v16{};
    v16 bias_acc{};
    for (int64_t oh = 0; oh < g.H2; ++oh) {
      for (int64_t t = 0; t < g.tiles; ++t) {
        const int64_t at = c * plane + oh * stride + t * (TW / 2);
        const v16 gv = load(planes + at);
        const i16 cv = __builtin_convertvector(*reinterpret_cast<const u8x16u*>(codes + at), i16);
        const v16 zero{};
        const v16 d00 = cv == 0 ? gv : zero, d01 = cv == 1 ? gv : zero;
        const v16 d10 = cv == 2 ? gv : zero, d11 = cv == 3 ? gv : zero;
        bias_acc += (d00 + d01) + (d10 + d11);
        const v16 top0 = interleave_low(d00, d01), top1 = interleave_high(d00, d01);
        const v16 bot0 = interleave_low(d10, d11), bot1 = interleave_high(d10, d11);
        const float* base = xp + 2 * oh * g.Wp + t * TW;
        for (int i = 0; i < K; ++i)
          for (int j = 0; j < K; ++j) {
            const float* r0 = base + i * g.Wp + j;
            acc[i * K + j] += (top0 * load(r0) + top1 * load(r0 + 16)) +
                              (bot0 * load(r0 + g.Wp) + bot1 * load(r0 + g.Wp + 16));
          }
      }
    }
    for (int q = 0; q < K * K; ++q) {
      float sum = 0.0f;
      for (int v = 0; v < 16; ++v) sum += acc[q][v];
      gw[c * K * K + q] += sum;
    }
    float bias_sum = 0.0f;
    for (int v = 0; v < 16; ++v) bias_sum += bias_acc[v];
    gb[c] += bias_sum;
  }
}

void backward_fast(const float* xp, const float* grad, const uint8_t* code, const Geometry& g,
                   float* dense, uint8_t* codes, float* gw, float* gb) {
  switch (g.k) {
    case 1: backward_planes<1>(xp, grad, code, g, dense, codes, gw, gb); break;
    case 3: backward_planes<3>(xp, grad, code, g, dense, codes, gw, gb); break;
    case 5: backward_planes<5>(xp, grad, code, g, dense, codes, gw, gb); break;
    case 7: backward_planes<7>(xp, grad, code, g, dense, codes, gw, gb); break;
    default: backward_image(xp, grad, code, g, dense, gw, gb);
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
                                               int64_t pl, int64_t pr) {
  check_inputs(x, weight, bias);
  const Geometry g = geometry(x, weight, pt, pb, pl, pr);
  auto y = at::empty({g.N, g.H2, g.W2, g.C}, x.options());
  auto code = at::empty({g.N, g.H2, g.W2, g.C}, x.options().dtype(at::kByte));
  const float *xs = x.data_ptr<float>(), *w = weight.data_ptr<float>(), *b = bias.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  uint8_t* cs = code.data_ptr<uint8_t>();
  const int64_t per_image = g.H2 * g.W2 * g.C, blocks = (g.N + BLOCK - 1) / BLOCK;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> xp(g.Hp * g.Wp);
    for (int64_t n = begin * BLOCK; n < std::min(g.N, end * BLOCK); ++n) {
      pad_image(xs + n * g.H * g.W, g, xp.data());
      forward_fast(xp.data(), w, b, g, ys + n * per_image, cs + n * per_image);
    }
  });
  return {y, code};
}

std::vector<at::Tensor> conv_relu_pool_backward(const at::Tensor& grad, const at::Tensor& code,
                                                const at::Tensor& x, const at::Tensor& weight,
                                                const at::Tensor& bias, int64_t pt, int64_t pb,
                                                int64_t pl, int64_t pr) {
  check_inputs(x, weight, bias);
  const Geometry g = geometry(x, weight, pt, pb, pl, pr);
  TORCH_CHECK(grad.is_contiguous() && grad.scalar_type() == at::kFloat &&
                  grad.sizes() == code.sizes() && code.is_contiguous(),
              "conv_relu_pool: gradient and codes must be contiguous (N, H2, W2, C)");
  const int64_t per_image = g.H2 * g.W2 * g.C, blocks = (g.N + BLOCK - 1) / BLOCK;
  const int64_t n_w = g.C * g.k * g.k;
  std::vector<float> partial(blocks * (n_w + g.C), 0.0f);  // per block: gw then gb
  const float *xs = x.data_ptr<float>(), *gs = grad.data_ptr<float>();
  const uint8_t* cs = code.data_ptr<uint8_t>();
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> xp(g.Hp * g.Wp), dense(g.C * 2 * g.H2 * g.tiles * TW);
    std::vector<uint8_t> codes(g.C * g.H2 * g.tiles * (TW / 2) + 16);
    for (int64_t blk = begin; blk < end; ++blk) {
      float* gw = partial.data() + blk * (n_w + g.C);
      for (int64_t n = blk * BLOCK; n < std::min(g.N, (blk + 1) * BLOCK); ++n) {
        pad_image(xs + n * g.H * g.W, g, xp.data());
        backward_fast(xp.data(), gs + n * per_image, cs + n * per_image, g, dense.data(),
                      codes.data(), gw, gw + n_w);
      }
    }
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

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &conv_relu_pool_forward, "Conv2D(1 -> C, stride 1) + ReLU + 2x2 max pool");
  m.def("backward", &conv_relu_pool_backward, "its weight and bias gradients");
}
