// ReLU + 2x2 max pool (stride 2, 'valid') of a channels-last map, forward and backward, one pass
// each. See mnistlab/fused_conv.py (ReluPool2x2) for why.
//
// x is (N, H, W, C) in memory (a channels-last (N, C, H, W) tensor); y is (N, H2, W2, C). The
// forward keeps one byte per output: 0..3, the corner of the window holding the first maximum in
// row-major order (PyTorch's and Keras's rule), or 255 when that maximum is <= 0 (ReLU passes no
// gradient). With relu = false it is a plain max pool (no 255 codes). The backward writes every input element: the output's gradient at that corner, 0
// elsewhere (and in a dropped odd last row or column).
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#define MNISTLAB_AVX512 1
#endif

namespace {

constexpr uint8_t NO_GRAD = 255;

struct Map {
  int64_t N, H, W, C, H2, W2;
};

Map map_of(const at::Tensor& x) {  // x: (N, C, H, W) sizes, channels-last memory
  Map m{x.size(0), x.size(2), x.size(3), x.size(1), x.size(2) / 2, x.size(3) / 2};
  TORCH_CHECK(m.H2 >= 1 && m.W2 >= 1, "relu_pool: the map is smaller than one 2x2 window");
  return m;
}

}  // namespace

std::vector<at::Tensor> relu_pool_forward(const at::Tensor& x, bool relu) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.is_cpu() &&
                  x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "relu_pool: input must be a channels-last float32 (N, C, H, W) CPU tensor");
  const Map m = map_of(x);
  auto y = at::empty({m.N, m.C, m.H2, m.W2},
                     x.options().memory_format(at::MemoryFormat::ChannelsLast));
  auto code = at::empty({m.N, m.H2, m.W2, m.C}, x.options().dtype(at::kByte));
  const float* xs = x.data_ptr<float>();
  float* ys = y.data_ptr<float>();
  uint8_t* cs = code.data_ptr<uint8_t>();
  const int64_t rows = m.N * m.H2;
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / m.H2, oh = row % m.H2;
      const float* top = xs + ((n * m.H + 2 * oh) * m.W) * m.C;
      const float* bottom = top + m.W * m.C;
      float* out = ys + row * m.W2 * m.C;
      uint8_t* codes = cs + row * m.W2 * m.C;
      for (int64_t ow = 0; ow < m.W2; ++ow) {
        const float *a = top + 2 * ow * m.C, *b = a + m.C;
        const float *c = bottom + 2 * ow * m.C, *d = c + m.C;
        int64_t ch = 0;
#ifdef MNISTLAB_AVX512
        // 16 channels at a time, the last block masked (the lab's maps have 9 or 16)
        for (; ch < m.C; ch += 16) {
          const __mmask16 lanes = m.C - ch >= 16 ? 0xFFFF : (1u << (m.C - ch)) - 1;
          const __m512 va = _mm512_maskz_loadu_ps(lanes, a + ch);
          const __m512 vb = _mm512_maskz_loadu_ps(lanes, b + ch);
          const __m512 vc = _mm512_maskz_loadu_ps(lanes, c + ch);
          const __m512 vd = _mm512_maskz_loadu_ps(lanes, d + ch);
          const __mmask16 a_first = _mm512_cmp_ps_mask(va, vb, _CMP_GE_OQ);
          const __mmask16 c_first = _mm512_cmp_ps_mask(vc, vd, _CMP_GE_OQ);
          const __m512 upper = _mm512_mask_blend_ps(a_first, vb, va);
          const __m512 lower = _mm512_mask_blend_ps(c_first, vd, vc);
          const __mmask16 is_upper = _mm512_cmp_ps_mask(upper, lower, _CMP_GE_OQ);
          const __m512 mx = _mm512_mask_blend_ps(is_upper, lower, upper);
          const __mmask16 positive =
              relu ? _mm512_cmp_ps_mask(mx, _mm512_setzero_ps(), _CMP_GT_OQ) : lanes;
          // corner: upper ? (a_first ? 0 : 1) : (c_first ? 2 : 3); NO_GRAD where not positive
          __m512i corner = _mm512_mask_blend_epi32(is_upper, _mm512_mask_blend_epi32(
              c_first, _mm512_set1_epi32(3), _mm512_set1_epi32(2)), _mm512_mask_blend_epi32(
              a_first, _mm512_set1_epi32(1), _mm512_setzero_si512()));
          corner = _mm512_mask_blend_epi32(positive, _mm512_set1_epi32(NO_GRAD), corner);
          _mm512_mask_storeu_ps(out + ow * m.C + ch, lanes, _mm512_maskz_mov_ps(positive, mx));
          _mm_mask_storeu_epi8(codes + ow * m.C + ch, lanes, _mm512_cvtepi32_epi8(corner));
        }
#endif
        for (; ch < m.C; ++ch) {
          const float upper = a[ch] >= b[ch] ? a[ch] : b[ch];
          const float lower = c[ch] >= d[ch] ? c[ch] : d[ch];
          const bool is_upper = upper >= lower;
          const float mx = is_upper ? upper : lower;
          const uint8_t corner = is_upper ? (a[ch] >= b[ch] ? 0 : 1) : (c[ch] >= d[ch] ? 2 : 3);
          const bool positive = !relu || mx > 0.0f;
          out[ow * m.C + ch] = positive ? mx : 0.0f;
          codes[ow * m.C + ch] = positive ? corner : NO_GRAD;
        }
      }
    }
  });
  return {y, code};
}

at::Tensor relu_pool_backward(const at::Tensor& grad, const at::Tensor& code, int64_t H,
                              int64_t W) {
  TORCH_CHECK(grad.dim() == 4 && grad.scalar_type() == at::kFloat &&
                  grad.is_contiguous(at::MemoryFormat::ChannelsLast) && code.is_contiguous(),
              "relu_pool: the gradient must be a channels-last float32 tensor");
  const int64_t N = grad.size(0), C = grad.size(1), H2 = grad.size(2), W2 = grad.size(3);
  auto grad_in = at::empty({N, C, H, W},
                           grad.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* gs = grad.data_ptr<float>();
  const uint8_t* cs = code.data_ptr<uint8_t>();
  float* gi = grad_in.data_ptr<float>();
  at::parallel_for(0, N * H2, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / H2, oh = row % H2;
      float* top = gi + ((n * H + 2 * oh) * W) * C;
      float* bottom = top + W * C;
      const float* g = gs + row * W2 * C;
      const uint8_t* codes = cs + row * W2 * C;
      for (int64_t ow = 0; ow < W2; ++ow) {
        float *a = top + 2 * ow * C, *b = a + C, *c = bottom + 2 * ow * C, *d = c + C;
        int64_t ch = 0;
#ifdef MNISTLAB_AVX512
        for (; ch < C; ch += 16) {
          const __mmask16 lanes = C - ch >= 16 ? 0xFFFF : (1u << (C - ch)) - 1;
          const __m512 v = _mm512_maskz_loadu_ps(lanes, g + ow * C + ch);
          const __m512i k = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(lanes, codes + ow * C + ch));
          auto at = [&](int corner) {
            return _mm512_cmpeq_epi32_mask(k, _mm512_set1_epi32(corner));
          };
          _mm512_mask_storeu_ps(a + ch, lanes, _mm512_maskz_mov_ps(at(0), v));
          _mm512_mask_storeu_ps(b + ch, lanes, _mm512_maskz_mov_ps(at(1), v));
          _mm512_mask_storeu_ps(c + ch, lanes, _mm512_maskz_mov_ps(at(2), v));
          _mm512_mask_storeu_ps(d + ch, lanes, _mm512_maskz_mov_ps(at(3), v));
        }
#endif
        for (; ch < C; ++ch) {
          const float v = g[ow * C + ch];
          const uint8_t k = codes[ow * C + ch];
          a[ch] = k == 0 ? v : 0.0f;
          b[ch] = k == 1 ? v : 0.0f;
          c[ch] = k == 2 ? v : 0.0f;
          d[ch] = k == 3 ? v : 0.0f;
        }
      }
      if (W % 2) {  // the dropped last column of both rows
        std::fill(top + (W - 1) * C, top + W * C, 0.0f);
        std::fill(bottom + (W - 1) * C, bottom + W * C, 0.0f);
      }
    }
  });
  if (H % 2) {  // the dropped last row of every image
    for (int64_t n = 0; n < N; ++n) {
      float* last = gi + ((n * H + H - 1) * W) * C;
      std::fill(last, last + W * C, 0.0f);
    }
  }
  return grad_in;
}
