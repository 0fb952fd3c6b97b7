// The fast CPU convolution: samples lowered straight into packed_sgemm's layout, one product per group.
#include "runtime/cpu/conv_packed.h"

#include <immintrin.h>

#include <algorithm>
#include <vector>

#include "runtime/cpu/im2col.h"
#include "runtime/cpu/packed_sgemm.h"

namespace troupe {

namespace {

#define TROUPE_AVX512F __attribute__((target("avx512f")))

constexpr std::int64_t kNr = kPackedNr;

// Floats of one group's patch matrix: small enough to stay in the core's L2 cache beside the product's
// output while the product runs, large enough for a product of hundreds of columns.
constexpr std::int64_t kGroupFloats = 1 << 16;

// dst[0, n) = src[0, n) for n <= 32.
TROUPE_AVX512F inline void copy_short(const float* src, float* dst, std::int64_t n) {
  if (n == kNr) {
    _mm512_storeu_ps(dst, _mm512_loadu_ps(src));
    _mm512_storeu_ps(dst + 16, _mm512_loadu_ps(src + 16));
    return;
  }
  const __mmask16 m0 = n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
  const __mmask16 m1 = n > 16 ? __mmask16((1u << (n - 16)) - 1) : __mmask16(0);
  _mm512_mask_storeu_ps(dst, m0, _mm512_maskz_loadu_ps(m0, src));
  _mm512_mask_storeu_ps(dst + 16, m1, _mm512_maskz_loadu_ps(m1, src + 16));
}

// dst[i] = src[i] for i < n (rows of a few dozen values: masked vectors, no scalar tail).
TROUPE_AVX512F void copy_row(const float* src, std::int64_t n, float* dst) {
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_loadu_ps(src + i));
  if (i == n) return;
  const __mmask16 m = __mmask16((1u << (n - i)) - 1);
  _mm512_mask_storeu_ps(dst + i, m, _mm512_maskz_loadu_ps(m, src + i));
}

// How one sample's patch matrix [C k k, ho wo] is read:
//  - pointwise (1x1, stride 1, no padding): the sample itself;
//  - phased (otherwise): the zero-padded sample [C, hp, wp] split by the stride's phases: phase (a, b) of
//    channel c is an [hq, wq] image whose (i, j) is padded(c, s i + a, s j + b). Output (oy, ox) reads
//    padded(c, s oy + ky, s ox + kx), which is phase (ky % s, kx % s) at (oy + ky / s, ox + kx / s): output
//    row oy of patch row (c, ky, kx) is a run of wo values of its phase image, and lowering copies each
//    input once (im2col writes each one k^2 / s^2 times). With stride 1 the one phase is the padded image.
// Either way output row oy of patch row p is wo values at row_offset[p] + oy * row_step. (Computing whole
// runs of wq values and dropping the last ones would cost half again the work of a 4x4 layer.)
enum class Form { pointwise, phased };

struct Lowering {
  explicit Lowering(const ConvDims& dims)
      : d(dims),
        form(d.k == 1 && d.stride == 1 && d.pad == 0 ? Form::pointwise : Form::phased),
        phases(std::min(d.stride, d.k)),
        hq((d.h + 2 * d.pad + d.stride - 1) / d.stride),
        wq((d.w + 2 * d.pad + d.stride - 1) / d.stride),
        row_step(form == Form::phased ? wq : d.wo),
        width(d.out_plane()),
        group(std::clamp<std::int64_t>(kGroupFloats / std::max<std::int64_t>(1, d.patch() * width), 1,
                                       std::max<std::int64_t>(1, d.n))),
        row_offset(static_cast<std::size_t>(d.patch())) {
    for (std::int64_t c = 0; c < d.c; ++c)
      for (std::int64_t ky = 0; ky < d.k; ++ky)
        for (std::int64_t kx = 0; kx < d.k; ++kx) {
          const std::int64_t p = (c * d.k + ky) * d.k + kx;
          row_offset[p] = form == Form::pointwise
                              ? p * width
                              : phase_image(ky % d.stride, kx % d.stride, c) + (ky / d.stride) * wq + kx / d.stride;
        }
  }

  // Where patch row p of sample xn starts: xn itself, or scratch after lowering into it.
  const float* lower(const float* xn, std::vector<float>& scratch) const {
    if (form == Form::pointwise) return xn;
    scratch.assign(static_cast<std::size_t>(phases * phases * d.c * hq * wq), 0.0f);
    const std::int64_t s = d.stride;
    for (std::int64_t a = 0; a < phases; ++a)
      for (std::int64_t b = 0; b < phases; ++b) {
        // Phase columns j whose input column s j + b - pad lies inside [0, w).
        const std::int64_t j_lo = d.pad > b ? (d.pad - b + s - 1) / s : 0;
        const std::int64_t j_hi = std::min(wq, (d.w - 1 + d.pad - b) / s + 1);
        for (std::int64_t c = 0; c < d.c; ++c)
          for (std::int64_t i = 0; i < hq; ++i) {
            const std::int64_t iy = s * i + a - d.pad;
            if (iy < 0 || iy >= d.h) continue;
            const float* in = xn + (c * d.h + iy) * d.w + b - d.pad;
            float* out = scratch.data() + phase_image(a, b, c) + i * wq;
            if (s == 1)
              std::copy(in + j_lo, in + j_hi, out + j_lo);
            else
              for (std::int64_t j = j_lo; j < j_hi; ++j) out[j] = in[s * j];
          }
      }
    return scratch.data();
  }

  // The sample's patch matrix [C k k, ho wo] from lower()'s base: base itself when pointwise, else copied
  // into scratch.
  const float* compact(const float* base, std::vector<float>& scratch) const {
    if (form == Form::pointwise) return base;
    scratch.resize(static_cast<std::size_t>(d.patch() * width));
    for (std::int64_t p = 0; p < d.patch(); ++p)
      for (std::int64_t oy = 0; oy < d.ho; ++oy)
        copy_row(base + row_offset[p] + oy * row_step, d.wo, scratch.data() + p * width + oy * d.wo);
    return scratch.data();
  }

  // The sample's patch matrix (from lower()'s base) as columns [col0, col0 + ho wo) of a packed op(b) with
  // k = C k k: segments of one output row within one panel, panel after panel.
  void pack(const float* base, std::int64_t col0, float* packed) const {
    const std::int64_t k = d.patch();
    for (std::int64_t oy = 0; oy < d.ho; ++oy)
      for (std::int64_t ox = 0; ox < d.wo;) {
        const std::int64_t j = col0 + oy * d.wo + ox, t = j % kNr, count = std::min(kNr - t, d.wo - ox);
        const float* src = base + oy * row_step + ox;
        float* out = packed + (j / kNr) * k * kNr + t;
        for (std::int64_t p = 0; p < k; ++p) copy_short(src + row_offset[p], out + p * kNr, count);
        ox += count;
      }
  }

  ConvDims d;
  Form form;
  std::int64_t phases;                   // per axis: the stride's phases that a tap reads, min(s, k)
  std::int64_t hq, wq;                   // a phase image
  std::int64_t row_step;                 // between output rows within a patch row
  std::int64_t width;                    // columns of one sample's patch matrix: ho wo
  std::int64_t group;                    // samples per product
  std::vector<std::int64_t> row_offset;  // of patch row p from where lower() says

 private:
  std::int64_t phase_image(std::int64_t a, std::int64_t b, std::int64_t c) const {
    return ((a * phases + b) * d.c + c) * hq * wq;
  }
};

// Rows p < k of a matrix (row p: len values at base + offset[p]) as columns [col0, col0 + len) of a packed
// op(b) with k rows: panel by panel, so the writes run through each panel in order.
TROUPE_AVX512F void pack_columns(const float* base, const std::int64_t* offset, std::int64_t k, std::int64_t len,
                                 std::int64_t col0, float* packed) {
  for (std::int64_t j = col0; j < col0 + len;) {
    const std::int64_t t = j % kNr, count = std::min(kNr - t, col0 + len - j), from = j - col0;
    float* out = packed + (j / kNr) * k * kNr + t;
    for (std::int64_t p = 0; p < k; ++p) copy_short(base + offset[p] + from, out + p * kNr, count);
    j += count;
  }
}

// dst[i] = src[i] + b for i < n (rows of a few dozen values: masked vectors, no scalar tail).
TROUPE_AVX512F void add_row(const float* src, float b, std::int64_t n, float* dst) {
  const __m512 vb = _mm512_set1_ps(b);
  std::int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, _mm512_add_ps(_mm512_loadu_ps(src + i), vb));
  if (i == n) return;
  const __mmask16 m = __mmask16((1u << (n - i)) - 1);
  _mm512_mask_storeu_ps(dst + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, src + i), vb));
}

// Zeros the columns past n of the last panel of a packed op(b) (k x n).
void zero_tail(std::int64_t k, std::int64_t n, float* packed) {
  const std::int64_t t = n % kNr;
  if (t == 0) return;
  float* out = packed + (n / kNr) * k * kNr;
  for (std::int64_t p = 0; p < k; ++p) std::fill(out + p * kNr + t, out + (p + 1) * kNr, 0.0f);
}

// out[i * ld + j] = rows[j][i] for i < count <= 16, j < 16: a 16 x 16 transpose in registers (rows are
// read only up to count).
TROUPE_AVX512F void transpose_16x16(const float* const* rows, std::int64_t count, float* out, std::int64_t ld) {
  const __mmask16 valid = count >= 16 ? __mmask16(0xffff) : __mmask16((1u << count) - 1);
  __m512 r[16], t[16];
  for (int j = 0; j < 16; ++j) r[j] = _mm512_maskz_loadu_ps(valid, rows[j]);
  for (int j = 0; j < 16; j += 2) {
    t[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);
    t[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);
  }
  for (int j = 0; j < 16; j += 4) {
    r[j] = _mm512_shuffle_ps(t[j], t[j + 2], 0x44);
    r[j + 1] = _mm512_shuffle_ps(t[j], t[j + 2], 0xee);
    r[j + 2] = _mm512_shuffle_ps(t[j + 1], t[j + 3], 0x44);
    r[j + 3] = _mm512_shuffle_ps(t[j + 1], t[j + 3], 0xee);
  }
  for (int j = 0; j < 4; ++j) {
    t[j] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0x88);
    t[j + 4] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0xdd);
    t[j + 8] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0x88);
    t[j + 12] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0xdd);
  }
  for (int j = 0; j < 8; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
    r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
  }
  for (int i = 0; i < count; ++i) _mm512_storeu_ps(out + i * ld, r[i]);
}

// Rows r < n of a matrix (row r: len values at base + offset[r]) as rows [k0, k0 + len) of a packed op(b)
// (k_total x n): op(b)[k0 + i, r] = row r's value i. 16 values of 16 rows at a time, transposed in
// registers; rows past n read zeros.
TROUPE_AVX512F void pack_rows_transposed(const float* base, const std::int64_t* offset, std::int64_t n, std::int64_t len,
                          std::int64_t k_total, std::int64_t k0, float* packed) {
  static const float zeros[16] = {};
  const std::int64_t panels = (n + kNr - 1) / kNr;
  const float* rows[16];
  for (std::int64_t q = 0; q < panels; ++q) {
    float* out = packed + (q * k_total + k0) * kNr;
    for (std::int64_t half = 0; half < kNr; half += 16)
      for (std::int64_t i0 = 0; i0 < len; i0 += 16) {
        for (std::int64_t j = 0; j < 16; ++j) {
          const std::int64_t r = q * kNr + half + j;
          rows[j] = r < n ? base + offset[r] + i0 : zeros;
        }
        transpose_16x16(rows, std::min<std::int64_t>(16, len - i0), out + i0 * kNr + half, kNr);
      }
  }
}

// Per-thread buffers, kept between calls (a step runs dozens of convolutions).
std::vector<float>& sample_scratch() {
  thread_local std::vector<float> buffer;
  return buffer;
}
std::vector<float>& compact_scratch() {
  thread_local std::vector<float> buffer;
  return buffer;
}
struct GroupBuffers {
  std::vector<float> packed, product, dy;
};
GroupBuffers& group_buffers() {
  thread_local GroupBuffers buffers;
  return buffers;
}

// The kernel of conv(dy, ·) that gives dx for a stride-1 convolution: w'[c, o, k-1-ky, k-1-kx] = w[o, c, ky, kx].
std::vector<float> flipped_transposed(const ConvDims& d, const float* w) {
  std::vector<float> out(static_cast<std::size_t>(d.o * d.patch()));
  const std::int64_t kk = d.k * d.k;
  for (std::int64_t o = 0; o < d.o; ++o)
    for (std::int64_t c = 0; c < d.c; ++c)
      for (std::int64_t t = 0; t < kk; ++t) out[(c * d.o + o) * kk + (kk - 1 - t)] = w[(o * d.c + c) * kk + t];
  return out;
}

}  // namespace

bool conv2d_packed_fits(const ConvDims& d) { return d.stride != 1 || d.pad <= d.k - 1; }

void conv2d_forward_packed(ThreadPool& pool, const ConvDims& d, const float* x, const float* w, const float* bias,
                           float* y) {
  if (d.n == 0 || d.o == 0) return;
  const Lowering low(d);
  const std::int64_t k = d.patch(), in_sample = d.c * d.in_plane(), out_sample = d.o * d.out_plane();
  // Each thread takes whole groups (one barrier per convolution: a barrier per product cost more than the
  // products on a busy machine).
  pool.parallel_for((d.n + low.group - 1) / low.group, [&](std::int64_t b0, std::int64_t b1) {
    GroupBuffers& buf = group_buffers();
    for (std::int64_t n0 = b0 * low.group; n0 < std::min(d.n, b1 * low.group); n0 += low.group) {
      const std::int64_t samples = std::min(low.group, d.n - n0), cols = samples * low.width;
      buf.packed.resize(static_cast<std::size_t>(packed_b_floats(k, cols)));
      buf.product.resize(static_cast<std::size_t>(d.o * cols));
      float* packed = buf.packed.data();
      float* product = buf.product.data();
      for (std::int64_t g = 0; g < samples; ++g)
        low.pack(low.lower(x + (n0 + g) * in_sample, sample_scratch()), g * low.width, packed);
      zero_tail(k, cols, packed);
      // product[O, cols] = w[O, C k k] @ patches[C k k, cols]
      packed_sgemm_prepacked_serial(false, d.o, cols, k, 1.0f, w, k, packed, 0.0f, product, cols);
      for (std::int64_t g = 0; g < samples; ++g)
        for (std::int64_t o = 0; o < d.o; ++o)
          add_row(product + o * cols + g * low.width, bias ? bias[o] : 0.0f, d.out_plane(),
                  y + (n0 + g) * out_sample + o * d.out_plane());
    }
  });
}

void conv2d_backward_packed(ThreadPool& pool, const ConvDims& d, const float* dy, const float* x, const float* w,
                            float* dx, float* dw) {
  if (d.n == 0 || d.o == 0) return;
  const Lowering low(d);
  const std::int64_t k = d.patch(), in_sample = d.c * d.in_plane(), out_sample = d.o * d.out_plane();

  if (dx && d.stride == 1) {
    // dx = conv(dy, w') with padding k - 1 - pad: a forward convolution, no col2im.
    const std::vector<float> w_flipped = flipped_transposed(d, w);
    ConvDims t{d.n, d.o, d.ho, d.wo, d.c, d.k, 1, d.k - 1 - d.pad, d.h, d.w};
    conv2d_forward_packed(pool, t, dy, w_flipped.data(), nullptr, dx);
    dx = nullptr;
  }

  // Per group: its dw partial = dy_group[O, cols] @ patches[C k k, cols]^T, and (strided convolutions)
  // dx_n = col2im of the columns of w^T @ dy_group. Each thread takes whole groups; the partials are added
  // to dw in group order, so dw's bits do not depend on the thread count.
  const std::int64_t groups = (d.n + low.group - 1) / low.group, wsize = d.o * k;
  std::vector<float> partial(dw ? static_cast<std::size_t>(groups * wsize) : 0);
  pool.parallel_for(groups, [&](std::int64_t b0, std::int64_t b1) {
    GroupBuffers& buf = group_buffers();
    std::vector<std::int64_t> dy_rows(static_cast<std::size_t>(d.o)), patch_rows(static_cast<std::size_t>(k));
    for (std::int64_t o = 0; o < d.o; ++o) dy_rows[o] = o * d.out_plane();  // rows of a sample's dy
    for (std::int64_t p = 0; p < k; ++p) patch_rows[p] = p * low.width;
    for (std::int64_t grp = b0; grp < b1; ++grp) {
      const std::int64_t n0 = grp * low.group, samples = std::min(low.group, d.n - n0), cols = samples * low.width;
      if (dw) {
        // dy_group[O, cols]: the group's dy, samples side by side as in the patch matrix.
        buf.dy.resize(static_cast<std::size_t>(d.o * cols));
        buf.packed.resize(static_cast<std::size_t>(packed_b_floats(cols, k)));
        float* dy_group = buf.dy.data();
        float* packed = buf.packed.data();
        for (std::int64_t g = 0; g < samples; ++g) {
          for (std::int64_t o = 0; o < d.o; ++o)
            copy_row(dy + (n0 + g) * out_sample + o * d.out_plane(), d.out_plane(), dy_group + o * cols + g * low.width);
          pack_rows_transposed(low.compact(low.lower(x + (n0 + g) * in_sample, sample_scratch()), compact_scratch()),
                               patch_rows.data(), k, low.width, cols, g * low.width, packed);
        }
        packed_sgemm_prepacked_serial(false, d.o, k, cols, 1.0f, dy_group, cols, packed, 0.0f,
                                      partial.data() + grp * wsize, k);
      }
      if (dx) {
        // dcols[C k k, cols] = w^T @ dy_group, then col2im per sample.
        buf.packed.resize(static_cast<std::size_t>(packed_b_floats(d.o, cols)));
        buf.product.resize(static_cast<std::size_t>(k * cols));
        float* packed = buf.packed.data();
        float* dcols = buf.product.data();
        for (std::int64_t g = 0; g < samples; ++g)
          pack_columns(dy + (n0 + g) * out_sample, dy_rows.data(), d.o, d.out_plane(), g * d.out_plane(), packed);
        zero_tail(d.o, cols, packed);
        packed_sgemm_prepacked_serial(true, k, cols, d.o, 1.0f, w, k, packed, 0.0f, dcols, cols);
        for (std::int64_t g = 0; g < samples; ++g) col2im(dcols + g * d.out_plane(), cols, d, dx + (n0 + g) * in_sample);
      }
    }
  });
  if (!dw) return;
  pool.parallel_for(wsize, [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t grp = 0; grp < groups; ++grp) {
      const float* src = partial.data() + grp * wsize;
      for (std::int64_t i = i0; i < i1; ++i) dw[i] += src[i];
    }
  }, 1024);
}

}  // namespace troupe
