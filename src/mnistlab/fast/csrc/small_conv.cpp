// A Conv2D with a few input and output channels (stride 1, square kernel up to 7), forward, input
// gradient and weight gradient, for channels-last (N, H, W, C) maps. See mnistlab/fast/small_conv.py
// for why and for the Python side.
//
// The arithmetic runs on blocks of 16 images with the image in the vector lanes: each block is
// first transposed into [rows][columns][channels][16 images] (zero-padded), so every multiply-add
// is a whole 16-float vector whatever the channel count and map width, and a weight is one
// broadcast. Forward: a tile of P output pixels x G output channels stays in registers while every
// (tap, input channel) is read once. The input gradient is the same kernel over the padded output
// gradient with the weights flipped and their channels swapped. Weight gradient: for one input
// channel and one tap row, G output channels x K tap columns accumulate in registers over 4
// output rows of the block at a time (those rows stay in the L1 cache between tap rows).
//
// Work is split into fixed blocks of 16 images; the weight and bias gradients are summed per
// group of 4 blocks, then over the groups in order, so results do not depend on the number of
// threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

namespace {

constexpr int64_t LANES = 16;  // images per block, one per vector lane
constexpr int MAX_K = 7;
constexpr int REGISTERS = 28;       // accumulators per tile: 32 vector registers less loads
constexpr int64_t GROUP_BLOCKS = 4;  // blocks whose weight gradients are summed in vectors

typedef float v16 __attribute__((vector_size(64)));

inline v16 splat(float x) {
  return v16{x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x};
}
inline v16 at16(const float* p) { return *reinterpret_cast<const v16*>(p); }  // 64-byte aligned
inline float hsum(v16 v) {
  float s = 0.0f;
  for (int i = 0; i < 16; ++i) s += v[i];
  return s;
}

struct AlignedBuffer {  // 64-byte aligned floats: every [..][16] vector is one cache line
  float* data = nullptr;
  int64_t size = 0;
  void reserve(int64_t n) {
    if (n <= size) return;
    std::free(data);
    data = static_cast<float*>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64));
    TORCH_CHECK(data != nullptr, "small_conv: out of memory");
    size = n;
  }
  ~AlignedBuffer() { std::free(data); }
};

// A block's map in [rows][cols][channels][16] with `top`/`left` zero rows/columns around it.
struct Blocked {
  int64_t rows, cols, C;
  int64_t at(int64_t r, int64_t c) const { return (r * cols + c) * C * LANES; }
  int64_t size() const { return rows * cols * C * LANES; }
};

typedef float v16u __attribute__((vector_size(64), aligned(4)));  // unaligned loads/stores

// One stage of a 16 x 16 transpose: rows r and r + 2^k swap bit k of the column index with bit
// k of the row index; four stages transpose the whole tile in registers.
template <int k>
inline void transpose_stage(v16 (&t)[16]) {
  for (int r = 0; r < 16; ++r) {
    if (r & (1 << k)) continue;
    const v16 a = t[r], b = t[r | (1 << k)];
    if constexpr (k == 0) {
      t[r] = __builtin_shufflevector(a, b, 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
      t[r | 1] = __builtin_shufflevector(a, b, 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    } else if constexpr (k == 1) {
      t[r] = __builtin_shufflevector(a, b, 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
      t[r | 2] = __builtin_shufflevector(a, b, 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    } else if constexpr (k == 2) {
      t[r] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
      t[r | 4] = __builtin_shufflevector(a, b, 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    } else {
      t[r] = __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
      t[r | 8] = __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    }
  }
}

inline void transpose16(v16 (&t)[16]) {
  transpose_stage<0>(t);
  transpose_stage<1>(t);
  transpose_stage<2>(t);
  transpose_stage<3>(t);
}

// out[j][n] = rows[n][j] for j < len: `count` rows (the block's images; missing ones read as 0)
// into `len` vectors of 16 lanes.
void rows_to_lanes(const float* const* rows, int64_t count, int64_t len, float* out) {
  int64_t j = 0;
  for (; j + LANES <= len; j += LANES) {
    v16 t[16];
    for (int n = 0; n < 16; ++n)
      t[n] = n < count ? static_cast<v16>(*reinterpret_cast<const v16u*>(rows[n] + j)) : v16{};
    transpose16(t);
    for (int q = 0; q < 16; ++q) *reinterpret_cast<v16*>(out + (j + q) * LANES) = t[q];
  }
  for (; j < len; ++j)
    for (int n = 0; n < 16; ++n) out[j * LANES + n] = n < count ? rows[n][j] : 0.0f;
}

// rows[n][j] = in[j][n] for the first `count` lanes: the reverse of rows_to_lanes.
void lanes_to_rows(const float* in, int64_t count, int64_t len, float* const* rows) {
  int64_t j = 0;
  for (; j + LANES <= len; j += LANES) {
    v16 t[16];
    for (int q = 0; q < 16; ++q) t[q] = at16(in + (j + q) * LANES);
    transpose16(t);
    for (int n = 0; n < count; ++n) *reinterpret_cast<v16u*>(rows[n] + j) = t[n];
  }
  for (; j < len; ++j)
    for (int n = 0; n < count; ++n) rows[n][j] = in[j * LANES + n];
}

// dst (rows x cols x C x 16) <- images n0.. of src (N, H, W, C) placed at (top, left), zero around.
void pack(const float* src, int64_t N, int64_t n0, int64_t H, int64_t W, int64_t C,
          const Blocked& b, int64_t top, int64_t left, float* dst) {
  const int64_t count = std::min<int64_t>(LANES, N - n0), row = W * C;
  for (int64_t r = 0; r < b.rows; ++r) {  // the border only: the map's rows are overwritten
    if (r < top || r >= top + H) {
      std::memset(dst + b.at(r, 0), 0, 4 * b.cols * C * LANES);
    } else {
      std::memset(dst + b.at(r, 0), 0, 4 * left * C * LANES);
      std::memset(dst + b.at(r, left + W), 0, 4 * (b.cols - left - W) * C * LANES);
    }
  }
  const float* rows[16];
  for (int64_t h = 0; h < H; ++h) {
    for (int64_t n = 0; n < count; ++n) rows[n] = src + ((n0 + n) * H + h) * row;
    rows_to_lanes(rows, count, row, dst + b.at(h + top, left));
  }
}

// dst (N, H, W, C) images n0.. <- src (H x W x C x 16, no border).
void unpack(const float* src, int64_t N, int64_t n0, int64_t H, int64_t W, int64_t C, float* dst) {
  const int64_t count = std::min<int64_t>(LANES, N - n0), len = H * W * C;
  float* rows[16];
  for (int64_t n = 0; n < count; ++n) rows[n] = dst + (n0 + n) * len;
  lanes_to_rows(src, count, len, rows);
}

// Output pixels (oy, ox..ox+P-1), channels co0..co0+G-1 of a correlation of x (blocked, padded)
// with wt [K][K][Ci][Co]; bias may be null.
template <int P, int G>
void conv_tile(const float* x, const Blocked& xb, const float* wt, int64_t Co, int K,
               const float* bias, int64_t oy, int64_t ox, int64_t co0, float* y,
               const Blocked& yb) {
  v16 acc[P][G];
  for (int g = 0; g < G; ++g) {
    const v16 b0 = splat(bias ? bias[co0 + g] : 0.0f);
    for (int p = 0; p < P; ++p) acc[p][g] = b0;
  }
  // within one tap row, (tap column, input channel) pairs are adjacent in both x and wt
  const int64_t Ci = xb.C, run = K * Ci, pixel = Ci * LANES;
  for (int ky = 0; ky < K; ++ky) {
    const float* xp = x + xb.at(oy + ky, ox);
    const float* w = wt + ky * run * Co + co0;
    for (int64_t j = 0; j < run; ++j, xp += LANES, w += Co) {
      v16 xv[P];
      for (int p = 0; p < P; ++p) xv[p] = at16(xp + p * pixel);
      for (int g = 0; g < G; ++g) {
        const v16 wv = splat(w[g]);
        for (int p = 0; p < P; ++p) acc[p][g] += wv * xv[p];
      }
    }
  }
  for (int p = 0; p < P; ++p) {
    float* out = y + yb.at(oy, ox + p) + co0 * LANES;
    for (int g = 0; g < G; ++g) *reinterpret_cast<v16*>(out + g * LANES) = acc[p][g];
  }
}

template <int G>
void conv_row_group(const float* x, const Blocked& xb, const float* wt, int64_t Co, int K,
                    const float* bias, int64_t oy, int64_t co0, float* y, const Blocked& yb) {
  constexpr int P = std::max(1, std::min(4, REGISTERS / G));
  int64_t ox = 0;
  for (; ox + P <= yb.cols; ox += P) conv_tile<P, G>(x, xb, wt, Co, K, bias, oy, ox, co0, y, yb);
  for (; ox < yb.cols; ++ox) conv_tile<1, G>(x, xb, wt, Co, K, bias, oy, ox, co0, y, yb);
}

using RowGroup = void (*)(const float*, const Blocked&, const float*, int64_t, int,
                          const float*, int64_t, int64_t, float*, const Blocked&);

template <int... Gs>
constexpr std::array<RowGroup, sizeof...(Gs)> row_groups(std::integer_sequence<int, Gs...>) {
  return {&conv_row_group<Gs + 1>...};
}
constexpr int MAX_G = 12;
constexpr auto ROW_GROUPS = row_groups(std::make_integer_sequence<int, MAX_G>{});

// y (blocked, yb.rows x yb.cols x Co) = correlation of the padded block x with wt [K][K][Ci][Co].
void conv_block(const float* x, const Blocked& xb, const float* wt, int64_t Co, int K,
                const float* bias, float* y, const Blocked& yb) {
  const int64_t groups = (Co + MAX_G - 1) / MAX_G, G = (Co + groups - 1) / groups;
  for (int64_t oy = 0; oy < yb.rows; ++oy)
    for (int64_t co0 = 0; co0 < Co; co0 += G)
      ROW_GROUPS[std::min(G, Co - co0) - 1](x, xb, wt, Co, K, bias, oy, co0, y, yb);
}

// gw[o][i][ky][kx] += sum over output rows oy0..oy0+rows-1 of the block of
// dy[oy][ox][o] * x[oy+ky][ox+kx][i], per lane; dy is read at (oy + dy_top, ox + dy_left) of its
// padded block. A few rows at a time keep that slice of dy in the L1 cache for every i and ky.
template <int K, int G>
void weight_grad_group(const float* dy, const Blocked& db, int64_t dy_top, int64_t dy_left,
                       const float* x, const Blocked& xb, int64_t oy0, int64_t rows, int64_t Wo,
                       int64_t o0, v16* gw) {
  const int64_t Ci = xb.C, Co = db.C;
  for (int64_t i = 0; i < Ci; ++i) {
    for (int ky = 0; ky < K; ++ky) {
      v16 acc[G][K];
      for (int g = 0; g < G; ++g)
        for (int kx = 0; kx < K; ++kx) acc[g][kx] = gw[(((o0 + g) * Ci + i) * K + ky) * K + kx];
      for (int64_t oy = oy0; oy < oy0 + rows; ++oy) {
        const float* drow = dy + db.at(oy + dy_top, dy_left) + o0 * LANES;
        const float* xrow = x + xb.at(oy + ky, 0) + i * LANES;
        for (int64_t ox = 0; ox < Wo; ++ox) {
          v16 d[G];
          for (int g = 0; g < G; ++g) d[g] = at16(drow + (ox * Co + g) * LANES);
          for (int kx = 0; kx < K; ++kx) {
            const v16 xv = at16(xrow + (ox + kx) * Ci * LANES);
            for (int g = 0; g < G; ++g) acc[g][kx] += d[g] * xv;
          }
        }
      }
      for (int g = 0; g < G; ++g)
        for (int kx = 0; kx < K; ++kx) gw[(((o0 + g) * Ci + i) * K + ky) * K + kx] = acc[g][kx];
    }
  }
}

constexpr int64_t WGRAD_ROWS = 4;
constexpr int MAX_WG = 8;

using WeightGradGroup = void (*)(const float*, const Blocked&, int64_t, int64_t, const float*,
                                 const Blocked&, int64_t, int64_t, int64_t, int64_t, v16*);

template <int K, int... Gs>
constexpr std::array<WeightGradGroup, sizeof...(Gs)> weight_grad_groups(
    std::integer_sequence<int, Gs...>) {
  return {&weight_grad_group<K, Gs + 1>...};
}

template <int K>
void weight_grad_block(const float* dy, const Blocked& db, int64_t dy_top, int64_t dy_left,
                       const float* x, const Blocked& xb, int64_t Ho, int64_t Wo, v16* gw) {
  static constexpr auto groups_of = weight_grad_groups<K>(std::make_integer_sequence<int, MAX_WG>{});
  constexpr int64_t most = std::max(1, std::min(MAX_WG, 21 / K));  // G x K accumulators
  const int64_t Co = db.C, groups = (Co + most - 1) / most, G = (Co + groups - 1) / groups;
  for (int64_t oy0 = 0; oy0 < Ho; oy0 += WGRAD_ROWS) {
    const int64_t rows = std::min(WGRAD_ROWS, Ho - oy0);
    for (int64_t o0 = 0; o0 < Co; o0 += G)
      groups_of[std::min(G, Co - o0) - 1](dy, db, dy_top, dy_left, x, xb, oy0, rows, Wo, o0, gw);
  }
}

template <typename F>
void by_kernel_size(int64_t k, F&& f) {
  switch (k) {
    case 1: f(std::integral_constant<int, 1>{}); break;
    case 2: f(std::integral_constant<int, 2>{}); break;
    case 3: f(std::integral_constant<int, 3>{}); break;
    case 4: f(std::integral_constant<int, 4>{}); break;
    case 5: f(std::integral_constant<int, 5>{}); break;
    case 6: f(std::integral_constant<int, 6>{}); break;
    case 7: f(std::integral_constant<int, 7>{}); break;
    default: TORCH_CHECK(false, "small_conv: kernel size must be 1..7; got ", k);
  }
}

struct Shape {
  int64_t N, H, W, Ci, Co, K, pt, pb, pl, pr, Ho, Wo;
};

Shape shape_of(const at::Tensor& x, const at::Tensor& weight, int64_t pt, int64_t pb, int64_t pl,
               int64_t pr) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.is_contiguous() && x.is_cpu(),
              "small_conv: x must be a contiguous float32 (N, H, W, C) CPU tensor");
  TORCH_CHECK(weight.dim() == 4 && weight.size(2) == weight.size(3) &&
                  weight.size(1) == x.size(3) && weight.scalar_type() == at::kFloat,
              "small_conv: weight must be float32 (C_out, C_in, k, k) with C_in = x's channels");
  Shape s{x.size(0), x.size(1), x.size(2), x.size(3), weight.size(0), weight.size(2),
          pt, pb, pl, pr, 0, 0};
  TORCH_CHECK(s.K >= 1 && s.K <= MAX_K, "small_conv: kernel size must be 1..7; got ", s.K);
  TORCH_CHECK(pt >= 0 && pb >= 0 && pl >= 0 && pr >= 0 && pt < s.K && pb < s.K && pl < s.K &&
                  pr < s.K,
              "small_conv: each padding must be 0..k-1");
  s.Ho = s.H + pt + pb - s.K + 1;
  s.Wo = s.W + pl + pr - s.K + 1;
  TORCH_CHECK(s.Ho >= 1 && s.Wo >= 1, "small_conv: the kernel is larger than the padded map");
  return s;
}

}  // namespace

at::Tensor small_conv_forward(const at::Tensor& x, const at::Tensor& weight,
                              const at::Tensor& bias, int64_t pt, int64_t pb, int64_t pl,
                              int64_t pr) {
  const Shape s = shape_of(x, weight, pt, pb, pl, pr);
  TORCH_CHECK(bias.numel() == 0 || (bias.numel() == s.Co && bias.scalar_type() == at::kFloat),
              "small_conv: bias must be empty or float32 (C_out,)");
  // wt[ky][kx][ci][co]: one tap's weights for a run of output channels are adjacent
  const at::Tensor wt = weight.permute({2, 3, 1, 0}).contiguous();
  const at::Tensor b = bias.contiguous();
  auto y = at::empty({s.N, s.Ho, s.Wo, s.Co}, x.options());
  const Blocked xb{s.H + pt + pb, s.W + pl + pr, s.Ci}, yb{s.Ho, s.Wo, s.Co};
  const float *xs = x.data_ptr<float>(), *w = wt.data_ptr<float>();
  const float* bs = bias.numel() ? b.data_ptr<float>() : nullptr;
  float* ys = y.data_ptr<float>();
  const int64_t blocks = (s.N + LANES - 1) / LANES;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    AlignedBuffer xbuf, ybuf;
    xbuf.reserve(xb.size());
    ybuf.reserve(yb.size());
    for (int64_t blk = begin; blk < end; ++blk) {
      pack(xs, s.N, blk * LANES, s.H, s.W, s.Ci, xb, pt, pl, xbuf.data);
      conv_block(xbuf.data, xb, w, s.Co, static_cast<int>(s.K), bs, ybuf.data, yb);
      unpack(ybuf.data, s.N, blk * LANES, s.Ho, s.Wo, s.Co, ys);
    }
  });
  return y;
}

// Gradients of small_conv_forward: (grad_x or an empty tensor, grad_weight, grad_bias).
std::vector<at::Tensor> small_conv_backward(const at::Tensor& grad, const at::Tensor& x,
                                            const at::Tensor& weight, int64_t pt, int64_t pb,
                                            int64_t pl, int64_t pr, bool input_grad) {
  const Shape s = shape_of(x, weight, pt, pb, pl, pr);
  TORCH_CHECK(grad.is_contiguous() && grad.scalar_type() == at::kFloat && grad.dim() == 4 &&
                  grad.size(0) == s.N && grad.size(1) == s.Ho && grad.size(2) == s.Wo &&
                  grad.size(3) == s.Co,
              "small_conv: the gradient must be a contiguous (N, H_out, W_out, C_out) tensor");
  const int64_t K = s.K;
  // input gradient = correlation of dy, padded by k-1-p, with the weights flipped, [K][K][Co][Ci]
  const at::Tensor wflip = weight.flip({2, 3}).permute({2, 3, 0, 1}).contiguous();
  const int64_t dtop = K - 1 - pt, dleft = K - 1 - pl;
  const Blocked db{s.H + K - 1, s.W + K - 1, s.Co}, xb{s.H + pt + pb, s.W + pl + pr, s.Ci},
      gb{s.H, s.W, s.Ci};
  TORCH_CHECK(dtop + s.Ho <= db.rows && dleft + s.Wo <= db.cols, "small_conv: bad padding");
  auto grad_x = input_grad ? at::empty({s.N, s.H, s.W, s.Ci}, x.options()) : at::Tensor();
  // gradients are summed in vectors over a group of blocks (fewer horizontal sums), per group
  const int64_t blocks = (s.N + LANES - 1) / LANES, n_w = s.Co * s.Ci * K * K;
  const int64_t groups = (blocks + GROUP_BLOCKS - 1) / GROUP_BLOCKS;
  std::vector<float> partial(groups * (n_w + s.Co), 0.0f);  // per group: gw then gb
  const float *xs = x.data_ptr<float>(), *ds = grad.data_ptr<float>(), *wf = wflip.data_ptr<float>();
  float* gxs = input_grad ? grad_x.data_ptr<float>() : nullptr;
  by_kernel_size(K, [&](auto kc) {
    constexpr int KC = decltype(kc)::value;
    at::parallel_for(0, groups, 1, [&](int64_t begin, int64_t end) {
      AlignedBuffer dbuf, xbuf, gbuf, wbuf;
      dbuf.reserve(db.size());
      xbuf.reserve(xb.size());
      if (input_grad) gbuf.reserve(gb.size());
      wbuf.reserve((n_w + s.Co) * LANES);
      v16 *gw = reinterpret_cast<v16*>(wbuf.data), *gbias = gw + n_w;
      for (int64_t group = begin; group < end; ++group) {
        for (int64_t q = 0; q < n_w + s.Co; ++q) gw[q] = v16{};
        const int64_t last = std::min(blocks, (group + 1) * GROUP_BLOCKS);
        for (int64_t blk = group * GROUP_BLOCKS; blk < last; ++blk) {
          pack(ds, s.N, blk * LANES, s.Ho, s.Wo, s.Co, db, dtop, dleft, dbuf.data);
          if (input_grad) {
            conv_block(dbuf.data, db, wf, s.Ci, KC, nullptr, gbuf.data, gb);
            unpack(gbuf.data, s.N, blk * LANES, s.H, s.W, s.Ci, gxs);
          }
          pack(xs, s.N, blk * LANES, s.H, s.W, s.Ci, xb, pt, pl, xbuf.data);
          weight_grad_block<KC>(dbuf.data, db, dtop, dleft, xbuf.data, xb, s.Ho, s.Wo, gw);
          for (int64_t oy = 0; oy < s.Ho; ++oy)
            for (int64_t ox = 0; ox < s.Wo; ++ox) {
              const float* d = dbuf.data + db.at(oy + dtop, ox + dleft);
              for (int64_t o = 0; o < s.Co; ++o) gbias[o] += at16(d + o * LANES);
            }
        }
        float* out = partial.data() + group * (n_w + s.Co);
        for (int64_t q = 0; q < n_w + s.Co; ++q) out[q] = hsum(gw[q]);
      }
    });
  });
  std::vector<double> total(n_w + s.Co, 0.0);
  for (int64_t group = 0; group < groups; ++group)
    for (int64_t q = 0; q < n_w + s.Co; ++q) total[q] += partial[group * (n_w + s.Co) + q];
  auto grad_w = at::empty_like(weight, at::MemoryFormat::Contiguous);
  auto grad_b = at::empty({s.Co}, weight.options());
  float *gw = grad_w.data_ptr<float>(), *gbias = grad_b.data_ptr<float>();
  for (int64_t q = 0; q < n_w; ++q) gw[q] = static_cast<float>(total[q]);
  for (int64_t o = 0; o < s.Co; ++o) gbias[o] = static_cast<float>(total[n_w + o]);
  return {input_grad ? grad_x : at::empty({0}, x.options()), grad_w, grad_b};
}
