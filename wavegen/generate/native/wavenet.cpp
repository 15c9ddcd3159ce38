// The native sampling engine of wavegen: WaveNet's cached incremental step and the softmax
// sampling in one loop, many samples per call, with no Python in between. Plain C ABI for
// ctypes (abi.py beside it binds it; toolchain.py builds this file on first use; packing.py
// packs the weights; engine.py drives it).
//
// Built as toolchain.build() runs it (FLAGS, then $WAVEGEN_NATIVE_FLAGS), into the cache folder:
//   g++ -O3 -march=native -std=c++20 -shared -fPIC -pthread -o wavenet-<fingerprint>.so wavenet.cpp
// After changing this file: make native-check (this build with -O1 -g and ASan + UBSan, held to
// the Python references by check.py), then the tests.
//
// One step for a batch of b streams at time t (shapes per stream; R residual, G gate, S skip,
// C classes, k kernel taps, padded sizes G8 = ceil8(G), R16/S16/C16 = ceil16(.)):
//
//   h = in_bias + Σ_i in_table[i][code(t - (k_in - i))]               (R)   type-A input layer
//   for every residual layer l (dilation d, ring of exactly (k-1)·d past inputs):
//     x = [h(t-(k-1)d) | … | h(t-d) | h]                              (k·R) taps, last = current
//     [f | g] = x · conv + conv_bias (+ cond[l]) ; z = tanh(f)·sigmoid(g) (G)
//     h += z · res + res_bias ;  skip += z · skip_w                    (R), (S)
//   logits = relu(relu(skip + Σ skip_bias) · head1 + b1) · head2 + b2  (C)
//   code = inverse CDF of softmax(logits / T) at u(seed, n)            see sample_code()
//
// Every matrix is packed by Python into column panels of 16 (panel p holds columns 16p..16p+15
// as [K][16], zero-padded), so a register-blocked kernel streams each panel once per step
// whatever the batch. The conv panels interleave 8 filter and 8 gate columns of the same
// channels, so the gated unit is applied to the accumulators directly. For few streams, the
// share of the conv that reads the past taps (inputs at least d steps old) is computed for up to
// 16 steps at once, so those weights are read once per 16 steps (project_past()).
//
// Conditioning (cond[l] above) is a term per stream, step and layer, the sum of two optional
// parts that Python precomputes per layer in the conv panels' column order (see Cond):
//   a fixed term per stream (a label's embedding), and
//   frame-rate terms (from mel features) upsampled here: sample j of frame f (hop samples per
//   frame) reads frames f-1, f, f+1 with the weights kernel[0..2][j] (step_terms()),
// so a mel-conditioned step reads three frame rows instead of a precomputed term per sample.
// The term is added to the finished conv sums just before the gate (GateTermOut), after every
// tap, so the deferred and the direct path still do the same arithmetic.
//
// Precisions (wg_create): fp32 as above; bf16, the same arithmetic on weights stored as bf16
// (half the bytes to read per step; widened in registers); int8 (forward_q()), the matrices
// quantised per output column by Python, each block input, gated-unit row and head input
// quantised per step and stream (quantize_row()), the products as exact integer sums (AVX-512 or
// AVX VNNI, else AVX2 vpmaddubsw/vpmaddwd, else plain C++: dot4()), scaled back to float per
// element; what int8.Int8WaveNet computes in Python, bit for bit (so no fused multiply-add
// in that path). The rings then hold the quantised block inputs and their scales.
//
// Threads: streams are split into groups; a group's threads run its streams in lockstep, each
// computing a slice of every layer's columns, with one barrier per layer (its latency hidden
// behind the previous layer's skip product) and three for the head. Every output element is
// computed by the same sequence of operations whatever the batch, the group or the thread
// count, so a stream's codes do not depend on how it was scheduled.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WG_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define WG_PAUSE() asm volatile("yield" ::: "memory")
#else
#define WG_PAUSE() ((void)0)
#endif

namespace {

constexpr int kAbiVersion = 3;
constexpr int kPanel = 16;  // columns per packed panel: two vectors of 8
constexpr int kGateGroup = kPanel / 2;  // gate channels per conv panel
constexpr size_t kAlign = 64;

// GCC/Clang vector extensions: 8 floats, compiled to AVX2/FMA (or AVX-512VL registers, or NEON)
// by -march=native. Unaligned loads are as fast as aligned ones on the CPUs that matter.
typedef float vec __attribute__((vector_size(32)));
typedef float vec_u __attribute__((vector_size(32), aligned(4)));

inline vec load(const float* p) { return *reinterpret_cast<const vec_u*>(p); }
inline void store(float* p, vec v) { *reinterpret_cast<vec_u*>(p) = v; }
inline vec splat(float x) { return vec{} + x; }
inline vec vmin(vec a, vec b) { return a < b ? a : b; }
inline vec vmax(vec a, vec b) { return a > b ? a : b; }

// ---------------------------------------------------------------------------------------------
// Math
// ---------------------------------------------------------------------------------------------

// How a polynomial step a·b + c is evaluated: Fused lets the compiler make it one fused
// multiply-add (the fp32 engine); Rounded rounds the product first, as Python does (the int8
// engine, which must match its reference bit for bit), whatever the compiler's contraction rules.
struct Fused {
  static vec madd(vec a, vec b, vec c) { return a * b + c; }
};
struct Rounded {
  static vec madd(vec a, vec b, vec c) {
    vec product = a * b;
#if defined(__x86_64__) || defined(__i386__)
    asm("" : "+x"(product));  // the product is a finished value: nothing can fuse it with the add
#elif defined(__aarch64__)
    asm("" : "+w"(product));
#endif
    return product + c;
  }
};

// tanh(x) = p / q, a rational approximation (Eigen's float coefficients), within 3e-7 of the
// exact value everywhere; returned as a ratio so gated() can share one division.
template <class Op>
__attribute__((always_inline)) inline void tanh_ratio(vec x, vec& p, vec& q) {
  const vec lim = splat(7.90531110763549805f);  // tanh rounds to ±1 in float beyond this
  x = vmax(vmin(x, lim), -lim);
  const vec x2 = x * x;
  p = Op::madd(x2, splat(-2.76076847742355e-16f), splat(2.00018790482477e-13f));
  p = Op::madd(x2, p, splat(-8.60467152213735e-11f));
  p = Op::madd(x2, p, splat(5.12229709037114e-08f));
  p = Op::madd(x2, p, splat(1.48572235717979e-05f));
  p = Op::madd(x2, p, splat(6.37261928875436e-04f));
  p = Op::madd(x2, p, splat(4.89352455891786e-03f));
  p = x * p;
  q = Op::madd(x2, splat(1.19825839466702e-06f), splat(1.18534705686654e-04f));
  q = Op::madd(x2, q, splat(2.26843463243900e-03f));
  q = Op::madd(x2, q, splat(4.89352518554385e-03f));
}

// tanh(f) · sigmoid(g), with sigmoid(g) = (1 + tanh(g/2)) / 2: one division for both.
template <class Op = Fused>
__attribute__((always_inline)) inline vec gated(vec f, vec g) {
  vec pf, qf, pg, qg;
  tanh_ratio<Op>(f, pf, qf);
  tanh_ratio<Op>(g * 0.5f, pg, qg);
  return (pf * (qg + pg)) / (qf * qg * 2.0f);
}

// Counter-based uniforms, the same numbers as sampling.stream_uniforms in Python.
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

inline uint64_t stream_key(uint64_t seed) { return mix(seed + kGolden); }

inline double stream_uniform(uint64_t key, uint64_t n) {
  return static_cast<double>(mix(key + (n + 1) * kGolden) >> 11) * 0x1.0p-53;
}

// The sampling definition of sampling.sample_codes, operation for operation: m = max(l);
// e_i = exp((double(l_i) - m) / T); cdf = running sum in index order; the first i with
// cdf_i >= u · cdf[C-1]. `cdf` is scratch for C doubles.
int sample_code(const float* logits, int classes, double temperature, double u, double* cdf) {
  float m = logits[0];
  for (int i = 1; i < classes; ++i) m = std::max(m, logits[i]);
  const double md = m;
  double total = 0.0;
  for (int i = 0; i < classes; ++i) {
    const double x = (static_cast<double>(logits[i]) - md) / temperature;
    // exp underflows to 0 (or a denormal of no consequence) below this; skip glibc's slow path.
    total += x < -745.2 ? 0.0 : std::exp(x);
    cdf[i] = total;
  }
  const double target = u * total;
  for (int i = 0; i < classes; ++i)
    if (cdf[i] >= target) return i;
  return classes - 1;
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

struct FreeAligned {
  void operator()(void* p) const { std::free(p); }
};

template <class T>
using Buffer = std::unique_ptr<T[], FreeAligned>;

template <class T>
Buffer<T> make_buffer(size_t count) {
  size_t bytes = (count * sizeof(T) + kAlign - 1) / kAlign * kAlign;
  if (bytes == 0) bytes = kAlign;
  void* p = std::aligned_alloc(kAlign, bytes);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  return Buffer<T>(static_cast<T*>(p));
}

inline int ceil_to(int x, int m) { return (x + m - 1) / m * m; }

// ---------------------------------------------------------------------------------------------
// Matrix kernels: Y = X · W for a range of panels, X (rows × K) row-major with stride ldx
// ---------------------------------------------------------------------------------------------

// A packed matrix, or a band of its rows: row k of panel p is at w + p·stride + k·16. The
// weights are float32, or bf16 (precision "bf16": `half` set, `w` unused), widened to float32
// in registers, so the arithmetic is the float32 kernels' on the rounded weights.
struct Panels {
  const float* w;
  size_t stride;  // weights from one panel to the next
  int K;          // rows
  const uint16_t* half = nullptr;

  static Panels whole(const float* w, int K) { return {w, static_cast<size_t>(K) * kPanel, K}; }
  Panels rows(int k0, int n) const {
    const size_t at = static_cast<size_t>(k0) * kPanel;
    return {w + at, stride, n, half ? half + at : nullptr};
  }
};

typedef uint32_t uvec __attribute__((vector_size(32)));
typedef uint32_t uvec_u __attribute__((vector_size(32), aligned(2)));

// A panel row's 16 weights as two vectors (columns 0-7, 8-15). bf16 rows are stored as
// [c0 c8 c1 c9 … c7 c15] (store_bf16()), so each 32-bit lane holds c_i below c_{i+8}, and a
// bf16 being the upper half of a float32's bits, a shift and a mask widen them in place.
inline void load_weights(const uint16_t* p, vec& lo, vec& hi) {
  const uvec pairs = *reinterpret_cast<const uvec_u*>(p);
  const uvec a = pairs << 16, b = pairs & 0xFFFF0000u;
  lo = reinterpret_cast<const vec&>(a), hi = reinterpret_cast<const vec&>(b);
}
inline void load_weights(const float* p, vec& lo, vec& hi) { lo = load(p), hi = load(p + 8); }

// What the accumulators start from: a partial sum computed earlier (row r, panel p at
// acc + r·ld + 16p), else the bias of each column (16 per panel), else zero.
struct Start {
  const float* bias = nullptr;
  const float* acc = nullptr;
  int ld = 0;
};

// One tile: M rows × NP panels, accumulated over K in registers (one accumulator per output
// element, k in order: the same arithmetic for every tile shape, and a sum continued from a
// stored partial sum is the same as one computed in one go), then handed to
// out(row, panel, columns 0-7, columns 8-15).
template <int M, int NP, class T, class Out>
inline void tile(const float* x, int ldx, const Panels& W, const T* weights, const Start& start, int p0, int r0,
                 Out& out) {
  vec acc[M][2 * NP];
  for (int p = 0; p < NP; ++p)
    for (int m = 0; m < M; ++m) {
      const float* init = start.acc ? start.acc + (r0 + m) * start.ld + (p0 + p) * kPanel
                          : start.bias ? start.bias + (p0 + p) * kPanel : nullptr;
      acc[m][2 * p] = init ? load(init) : vec{};
      acc[m][2 * p + 1] = init ? load(init + 8) : vec{};
    }
  const T* wp = weights + p0 * W.stride;
  for (int k = 0; k < W.K; ++k) {
    vec wv[2 * NP];
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) {
      load_weights(wp + p * W.stride + k * kPanel, wv[2 * p], wv[2 * p + 1]);
    }
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m) {
      const float xm = x[m * ldx + k];
#pragma GCC unroll 16
      for (int j = 0; j < 2 * NP; ++j) acc[m][j] += xm * wv[j];
    }
  }
  for (int m = 0; m < M; ++m)
    for (int p = 0; p < NP; ++p) out(r0 + m, p0 + p, acc[m][2 * p], acc[m][2 * p + 1]);
}

// Tile shapes by register budget: accumulators + the panel's weight vectors stay in registers.
#if defined(__AVX512VL__)
constexpr int kRowBlock = 6;  // 32 vector registers
template <int M> constexpr int panels_for() { return M == 1 ? 6 : M == 2 ? 4 : 2; }
#else
constexpr int kRowBlock = 6;  // 16 vector registers
template <int M> constexpr int panels_for() { return M == 1 ? 4 : M == 2 ? 2 : 1; }
#endif

template <int M, class T, class Out>
inline void rows_block(const float* x, int ldx, const Panels& W, const T* w, const Start& start, int p0, int p1,
                       int r0, Out& out) {
  constexpr int NP = panels_for<M>();
  int p = p0;
  for (; p + NP <= p1; p += NP) tile<M, NP>(x, ldx, W, w, start, p, r0, out);
  if constexpr (NP > 1) {  // the remaining panels, fewer than NP, in one tile
    switch (p1 - p) {
      case 5: if constexpr (NP > 5) tile<M, 5>(x, ldx, W, w, start, p, r0, out); break;
      case 4: if constexpr (NP > 4) tile<M, 4>(x, ldx, W, w, start, p, r0, out); break;
      case 3: if constexpr (NP > 3) tile<M, 3>(x, ldx, W, w, start, p, r0, out); break;
      case 2: if constexpr (NP > 2) tile<M, 2>(x, ldx, W, w, start, p, r0, out); break;
      case 1: tile<M, 1>(x, ldx, W, w, start, p, r0, out); break;
      default: break;
    }
  }
}

template <class T, class Out>
void matmul_of(const float* x, int ldx, int rows, const Panels& W, const T* w, const Start& start, int p0, int p1,
               Out& out) {
  int r = 0;
  for (; r + kRowBlock <= rows; r += kRowBlock)
    rows_block<kRowBlock>(x + r * ldx, ldx, W, w, start, p0, p1, r, out);
  const float* xr = x + r * ldx;
  if (rows - r >= 4) rows_block<4>(xr, ldx, W, w, start, p0, p1, r, out), xr += 4 * ldx, r += 4;
  if (rows - r >= 2) rows_block<2>(xr, ldx, W, w, start, p0, p1, r, out), xr += 2 * ldx, r += 2;
  if (rows - r >= 1) rows_block<1>(xr, ldx, W, w, start, p0, p1, r, out);
}

// Y[rows, panels p0..p1) = start + X · W, X (rows × K) row-major with stride ldx, delivered to
// `out` panel by panel.
template <class Out>
void matmul(const float* x, int ldx, int rows, const Panels& W, const Start& start, int p0, int p1,
            Out&& out) {
  if (p0 >= p1) return;
  if (W.half)
    matmul_of(x, ldx, rows, W, W.half, start, p0, p1, out);
  else
    matmul_of(x, ldx, rows, W, W.w, start, p0, p1, out);
}

// Epilogues: what happens to a panel's 16 finished outputs.
struct GateOut {  // conv panel p = [filter | gate] of channels 8p..8p+7 -> z
  float* z;
  int ld;
  void operator()(int r, int p, vec f, vec g) const { store(z + r * ld + p * kGateGroup, gated(f, g)); }
};
// The same with a conditioning term added to the finished sums first: row r's term for panel p
// is at term + r·ld + 16p, laid out like the panel ([filter 8p..8p+7 | gate 8p..8p+7]).
struct GateTermOut {
  float* z;
  int ld;
  const float* term;
  ptrdiff_t term_ld;
  void operator()(int r, int p, vec f, vec g) const {
    const float* c = term + r * term_ld + p * kPanel;
    store(z + r * ld + p * kGateGroup, gated(f + load(c), g + load(c + 8)));
  }
};
struct AddOut {  // y += acc (residual update, skip accumulation)
  float* y;
  int ld;
  void operator()(int r, int p, vec lo, vec hi) const {
    float* d = y + r * ld + p * kPanel;
    store(d, load(d) + lo), store(d + 8, load(d + 8) + hi);
  }
};
struct ReluOut {
  float* y;
  int ld;
  void operator()(int r, int p, vec lo, vec hi) const {
    float* d = y + r * ld + p * kPanel;
    store(d, vmax(lo, vec{})), store(d + 8, vmax(hi, vec{}));
  }
};
struct StoreOut {
  float* y;
  int ld;
  void operator()(int r, int p, vec lo, vec hi) const {
    float* d = y + r * ld + p * kPanel;
    store(d, lo), store(d + 8, hi);
  }
};

// ---------------------------------------------------------------------------------------------
// int8 (precision "int8"): weights quantised per output column, each activation row per step,
// integer dot products. What Python's int8.Int8WaveNet computes, bit for bit: every float
// operation from here to the matching "contract on" is one rounded operation, never a fused
// multiply-add (the reference cannot fuse, so neither may this side).
// ---------------------------------------------------------------------------------------------
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

constexpr int kQMax = 127;  // symmetric: |q| <= 127, so AVX2's pairwise 16-bit sums cannot saturate
typedef int32_t ivec __attribute__((vector_size(32)));

// VNNI multiplies unsigned by signed bytes: there the activations are kept as q + 128 (q with its
// top bit flipped), and each column's 128 · Σ_k Q_kc is taken off the sums (QPanels::offset).
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
constexpr bool kOffset = true;
#else
constexpr bool kOffset = false;
#endif
constexpr uint8_t kStoreXor = kOffset ? 0x80 : 0;

// Rows of n floats (a multiple of 8, the padding zero) -> q (n int8) and s: a = max |x|,
// s = a / 127, q = clamp(round_half_even(x · (127 / a))), both 0 when a is 0.
inline void quantize_row(const float* x, int n, int8_t* q, float* s) {
  vec m = vec{};
  for (int i = 0; i < n; i += 8) {
    const vec v = load(x + i);
    m = vmax(m, vmax(v, -v));
  }
  float a = 0.0f;
  for (int j = 0; j < 8; ++j) a = std::max(a, m[j]);
  *s = a / static_cast<float>(kQMax);
  const float inv = a > 0.0f ? static_cast<float>(kQMax) / a : 0.0f;
  for (int i = 0; i < n; i += 8) {
    const vec y = load(x + i) * inv;  // |y| < 127.5: rounds into -127 .. 127
#if defined(__AVX2__)
    const __m256i r = _mm256_cvtps_epi32(reinterpret_cast<const __m256&>(y));  // to nearest, ties to even
    const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    const __m128i bytes = _mm_xor_si128(_mm_packs_epi16(words, words), _mm_set1_epi8(static_cast<char>(kStoreXor)));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), bytes);
#else
    for (int j = 0; j < 8; ++j) {
      const float r = std::nearbyint(y[j]);  // the default rounding mode: to nearest, ties to even
      const int v = static_cast<int>(std::clamp(r, -static_cast<float>(kQMax), static_cast<float>(kQMax)));
      q[i + j] = static_cast<int8_t>(v ^ kStoreXor);
    }
#endif
  }
}

// A quantised matrix: rows 4g..4g+3 of panel p (16 columns) at w + p·stride + 64g, as
// [column 0: 4 rows][column 1: 4 rows]…, the layout of a 4-way integer dot product per lane.
struct QPanels {
  const int8_t* w = nullptr;
  size_t stride = 0;         // bytes from one panel to the next
  int K = 0;                 // rows, a multiple of 4
  const float* scale = nullptr;   // per column
  const int32_t* offset = nullptr;  // per column: 128 · Σ_k Q_kc (VNNI reads activations as q + 128)

  static QPanels whole(const int8_t* w, int K, const float* scale) {
    return {w, static_cast<size_t>(K) * kPanel, K, scale, nullptr};
  }
};

// acc += Σ_j x_j · w_j for 4 consecutive rows in each of 8 lanes: x4 the 4 activation bytes (as
// an int32), w 32 weight bytes. The sums are exact integers whichever instruction makes them.
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
constexpr const char* kDotKind = "avx512-vnni";
inline ivec dot4(ivec acc, int32_t x4, ivec w) {  // u8 · s8: x4 holds q + 128
  return (ivec)_mm256_dpbusd_epi32((__m256i)acc, _mm256_set1_epi32(x4), (__m256i)w);
}
#elif defined(__AVXVNNI__)
constexpr const char* kDotKind = "avx-vnni";
inline ivec dot4(ivec acc, int32_t x4, ivec w) {
  return (ivec)_mm256_dpbusd_avx_epi32((__m256i)acc, _mm256_set1_epi32(x4), (__m256i)w);
}
#elif defined(__AVX2__)
constexpr const char* kDotKind = "avx2";
inline ivec dot4(ivec acc, int32_t x4, ivec w) {  // |x| · (w with x's sign): u8 · s8 pairs, <= 2·127² each
  const __m256i x = _mm256_set1_epi32(x4);
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8((__m256i)w, x));
  return acc + (ivec)_mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}
#else
constexpr const char* kDotKind = "portable";
inline ivec dot4(ivec acc, int32_t x4, ivec w) {
  int8_t x[4], b[32];
  std::memcpy(x, &x4, 4), std::memcpy(b, &w, 32);
  for (int lane = 0; lane < 8; ++lane)
    for (int j = 0; j < 4; ++j) acc[lane] += x[j] * b[4 * lane + j];
  return acc;
}
#endif

inline ivec load_ivec(const int8_t* p) {
  ivec v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The tile of qmatmul: M rows × NP panels, integer sums in registers, then per element
// y = start + float(Σ) · (s_row · w_col), handed to out(row, panel, columns 0-7, columns 8-15).
template <int M, int NP, class Out>
inline void qtile(const int8_t* x, int ldx, const float* xs, const QPanels& W, const Start& start, int p0, int r0,
                  Out& out) {
  ivec acc[M][2 * NP];
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < 2 * NP; ++j) acc[m][j] = ivec{};
  const int8_t* wp = W.w + p0 * W.stride;
  for (int g = 0; g < W.K / 4; ++g) {
    ivec wv[2 * NP];
#pragma GCC unroll 16
    for (int p = 0; p < NP; ++p) {
      wv[2 * p] = load_ivec(wp + p * W.stride + g * 64);
      wv[2 * p + 1] = load_ivec(wp + p * W.stride + g * 64 + 32);
    }
#pragma GCC unroll 16
    for (int m = 0; m < M; ++m) {
      int32_t x4;
      std::memcpy(&x4, x + m * ldx + 4 * g, 4);
#pragma GCC unroll 16
      for (int j = 0; j < 2 * NP; ++j) acc[m][j] = dot4(acc[m][j], x4, wv[j]);
    }
  }
  for (int m = 0; m < M; ++m) {
    const float sx = xs[r0 + m];
    for (int p = 0; p < NP; ++p) {
      vec y[2];
      for (int h = 0; h < 2; ++h) {
        const int col = (p0 + p) * kPanel + 8 * h;
        ivec sum = acc[m][2 * p + h];
        if constexpr (kOffset) sum -= load_ivec(reinterpret_cast<const int8_t*>(W.offset + col));
        const vec scale = splat(sx) * load(W.scale + col);
        y[h] = __builtin_convertvector(sum, vec) * scale;
        const float* init = start.acc ? start.acc + (r0 + m) * start.ld + col : start.bias ? start.bias + col : nullptr;
        if (init) y[h] = load(init) + y[h];
      }
      out(r0 + m, p0 + p, y[0], y[1]);
    }
  }
}

template <int M, class Out>
inline void qrows_block(const int8_t* x, int ldx, const float* xs, const QPanels& W, const Start& start, int p0,
                        int p1, int r0, Out& out) {
  constexpr int NP = panels_for<M>();
  int p = p0;
  for (; p + NP <= p1; p += NP) qtile<M, NP>(x, ldx, xs, W, start, p, r0, out);
  if constexpr (NP > 1) {
    switch (p1 - p) {
      case 5: if constexpr (NP > 5) qtile<M, 5>(x, ldx, xs, W, start, p, r0, out); break;
      case 4: if constexpr (NP > 4) qtile<M, 4>(x, ldx, xs, W, start, p, r0, out); break;
      case 3: if constexpr (NP > 3) qtile<M, 3>(x, ldx, xs, W, start, p, r0, out); break;
      case 2: if constexpr (NP > 2) qtile<M, 2>(x, ldx, xs, W, start, p, r0, out); break;
      case 1: qtile<M, 1>(x, ldx, xs, W, start, p, r0, out); break;
      default: break;
    }
  }
}

// Y[rows, panels p0..p1) = start + X · W for quantised rows X (rows × K int8, stride ldx; row
// r's scale xs[r]), delivered to `out` panel by panel.
template <class Out>
void qmatmul(const int8_t* x, int ldx, const float* xs, int rows, const QPanels& W, const Start& start, int p0,
             int p1, Out&& out) {
  if (p0 >= p1) return;
  int r = 0;
  for (; r + kRowBlock <= rows; r += kRowBlock)
    qrows_block<kRowBlock>(x + r * ldx, ldx, xs, W, start, p0, p1, r, out);
  if (rows - r >= 4) qrows_block<4>(x + r * ldx, ldx, xs, W, start, p0, p1, r, out), r += 4;
  if (rows - r >= 2) qrows_block<2>(x + r * ldx, ldx, xs, W, start, p0, p1, r, out), r += 2;
  if (rows - r >= 1) qrows_block<1>(x + r * ldx, ldx, xs, W, start, p0, p1, r, out);
}

struct QGateOut {
  float* z;
  int ld;
  void operator()(int r, int p, vec f, vec g) const { store(z + r * ld + p * kGateGroup, gated<Rounded>(f, g)); }
};
struct QGateTermOut {
  float* z;
  int ld;
  const float* term;
  ptrdiff_t term_ld;
  void operator()(int r, int p, vec f, vec g) const {
    const float* c = term + r * term_ld + p * kPanel;
    store(z + r * ld + p * kGateGroup, gated<Rounded>(f + load(c), g + load(c + 8)));
  }
};

#if defined(__clang__)
#pragma clang fp contract(on)
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

// ---------------------------------------------------------------------------------------------
// Waiting: spin briefly (barriers are short), then sleep so a core taken by another process does
// not leave the waiting thread burning the one we need.
// ---------------------------------------------------------------------------------------------

constexpr auto kSpinFor = std::chrono::microseconds(50);

inline void futex_wait(std::atomic<uint32_t>* word, uint32_t seen) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
#else
  (void)word, (void)seen;
  std::this_thread::yield();
#endif
}

inline void futex_wake(std::atomic<uint32_t>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

// A 32-bit counter others can wait on until it reaches a target (wrap-around safe).
struct alignas(64) Signal {
  std::atomic<uint32_t> value{0};
  std::atomic<uint32_t> sleepers{0};

  void publish(uint32_t v) {
    value.store(v, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst)) futex_wake(&value);  // pairs with await()
  }

  bool reached(uint32_t target) const {
    return static_cast<int32_t>(value.load(std::memory_order_acquire) - target) >= 0;
  }

  void await(uint32_t target) {
    if (reached(target)) return;
    auto start = std::chrono::steady_clock::now();
    for (unsigned spins = 1;; ++spins) {
      WG_PAUSE();
      if (reached(target)) return;
      if (spins % 256 == 0 && std::chrono::steady_clock::now() - start > kSpinFor) break;
    }
    while (!reached(target)) {
      sleepers.fetch_add(1, std::memory_order_seq_cst);
      const uint32_t seen = value.load(std::memory_order_seq_cst);
      if (static_cast<int32_t>(seen - target) < 0) futex_wait(&value, seen);
      sleepers.fetch_sub(1, std::memory_order_seq_cst);
    }
  }
};

// The threads of a group meet here: arrive() says "my part is written", wait() returns once
// every member has arrived. Split so independent work can run in between.
struct Barrier {
  std::unique_ptr<Signal[]> members;
  int size = 1;

  explicit Barrier(int n) : members(new Signal[n]), size(n) {}
  void arrive(int rank, uint32_t epoch) {
    if (size > 1) members[rank].publish(epoch);
  }
  void wait(int rank, uint32_t epoch) {
    for (int j = 0; j < size; ++j)
      if (j != rank) members[j].await(epoch);
  }
};

// ---------------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------------

struct Shape {
  int classes, residual, gate, skip, kernel, in_kernel, layers;
  std::vector<int> dilations;
  // derived
  int G8, R16, S16, C16, KR;
};

struct Layer {
  int dilation;
  int ring_len;         // (k-1)·d past inputs
  size_t ring_offset;   // into Engine::rings, in slots (times B·R floats)
  int block;            // steps whose past-tap products are computed together (see forward())
  size_t proj_offset;   // into Group::proj, in slots (times b·2·G8 floats)
  Panels conv;          // (k·R rows: taps oldest first, 2·G8 columns: filter/gate by 8)
  Panels res, skip;     // (G8 rows, R16 / S16 columns)
  const float *conv_bias, *res_bias;
  // int8: the conv per tap (R16 rows each, oldest tap first), res and skip (G8 rows)
  std::vector<QPanels> qconv;
  QPanels qres, qskip;
};

// The past taps' share of the conv, x(t-(k-1)d) … x(t-d) · conv, only reads inputs at least d
// steps old: it is computed for up to kBlock steps at once (each weight then serves every one of
// them) and finished with the current input's share at each step. Worth it while weight traffic
// dominates, i.e. for groups with few streams.
constexpr int kBlock = 16;
constexpr int kBlockMaxRows = 4;

struct Group;

// One thread's view: which streams and columns it computes, and its private buffers (cache-line
// aligned, like everything a thread writes while others run: no false sharing).
struct alignas(64) Worker {
  Group* group = nullptr;
  int rank = 0;                 // within the group
  int gate0 = 0, gate1 = 0;     // conv panels (8 gate channels each)
  int skip0 = 0, skip1 = 0;     // skip panels
  int head10 = 0, head11 = 0;   // head1 panels
  int head20 = 0, head21 = 0;   // head2 panels
  uint32_t epoch = 0;           // barriers passed
  Buffer<float> h;              // (b, R16) the current block input
  Buffer<float> x;              // (b, KR) gathered taps, or (kBlock·b, KR - R) past taps
  Buffer<float> skipacc;        // (b, S16) sum of skip outputs (this worker's columns)
  Buffer<float> term;           // (b, 2·G8) a layer's conditioning, this worker's columns
  Buffer<int32_t> codes;        // (k_in, b) private copy of the last k_in codes (see begin())
  Buffer<double> cdf;           // (classes)
  Buffer<int> pos;              // per layer: time mod ring_len, kept by counting not dividing
  Buffer<int> step_in_block;    // per layer: time mod block
  // int8: quantised rows (int8 values, and one scale per row)
  Buffer<int8_t> qh;            // (b, R16) the current block input
  Buffer<float> qh_s;
  Buffer<int8_t> qz;            // (2, b, G8) the gated units, by layer mod 2 (see forward_q())
  Buffer<float> qz_s;
  Buffer<int8_t> qx;            // (b, R16) a past tap, or (kBlock·b, R16) for project_past_q()
  Buffer<float> qx_s;
  Buffer<int8_t> qs;            // (b, S16) the head's input rows
  Buffer<float> qs_s;
  Buffer<float> pre;            // (b, 2·G8) the conv sums of the taps so far
  bool first_step = false;      // of a job: the blocks' past products need computing
  int code_pos = 0;             // time mod k_in
};

struct Group {
  int s0 = 0, s1 = 0;           // streams
  int first = 0, size = 1;      // workers
  Barrier barrier{1};
  Buffer<float> z;              // (3, b, G8) gated units, by layer mod 3 (see forward())
  Buffer<float> skip;           // (b, S16) relu(skip sum)
  Buffer<float> hidden;         // (b, S16)
  Buffer<float> logits;         // (b, C16)
  Buffer<float> proj;           // per layer (block, b, 2·G8): conv of the past taps + bias, by step
  bool deferred = false;        // whether the past taps go through proj
  explicit Group(int n) : barrier(n) {}
};

// The conditioning of a call (wg_logits, wg_generate), as Python passes it; every layer's 2·G8
// floats are in the conv panels' column order ([filter 8p..8p+7 | gate 8p..8p+7] per panel).
// For stream s at time t (f = floor(t / hop), j = t - f·hop), layer l:
//   term = k0[j]·F(f-1) + k1[j]·F(f) + k2[j]·F(f+1) + fixed
//   fixed:  fixed + s·fixed_stream + l·2·G8                   (nullptr: none)
//   F(g):   frames + s·frame_stream + (g - first_frame)·frame_step + l·2·G8, for
//           first_frame <= g < first_frame + frame_rows       (nullptr: none)
//   kq[j]:  kernel[q·hop + j]
struct Cond {
  const float* fixed;
  int64_t fixed_stream;
  const float* frames;
  int64_t frame_stream, frame_step, first_frame, frame_rows;
  const float* kernel;
  int64_t hop;
  int64_t time;  // t of the call's first step
};

inline int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

// One step's conditioning for a group of streams (rows from its first stream on).
struct StepTerms {
  const float* fixed = nullptr;  // row r at fixed + r·fixed_ld
  int64_t fixed_ld = 0;
  const float* rows = nullptr;   // frame f-1 of row r at rows + r·rows_ld; f, f+1 row_step further
  int64_t rows_ld = 0, row_step = 0;
  float w0 = 0, w1 = 0, w2 = 0;

  StepTerms(const Cond& c, int s0, int64_t t) {
    if (c.fixed) fixed = c.fixed + s0 * c.fixed_stream, fixed_ld = c.fixed_stream;
    if (c.frames) {
      const int64_t f = floor_div(t, c.hop), j = t - f * c.hop;
      rows = c.frames + s0 * c.frame_stream + (f - 1 - c.first_frame) * c.frame_step;
      rows_ld = c.frame_stream, row_step = c.frame_step;
      w0 = c.kernel[j], w1 = c.kernel[c.hop + j], w2 = c.kernel[2 * c.hop + j];
    }
  }
};

// Whether the frame rows of steps 0 .. steps-1 of a call lie within what Python passed.
bool frames_cover(const Cond& c, int64_t steps) {
  if (!c.frames) return true;
  if (c.hop < 1 || steps < 1) return c.hop >= 1;
  const int64_t first = floor_div(c.time, c.hop) - 1, last = floor_div(c.time + steps - 1, c.hop) + 1;
  return first >= c.first_frame && last < c.first_frame + c.frame_rows;
}

struct GenerateArgs {
  int steps;
  const uint64_t* seeds;        // (B)
  const double* temperatures;   // (B)
  uint64_t counter;             // sample index of the first step
  uint8_t* out;                 // (B, ld) codes, column i for step i
  int64_t ld;
  const Cond* cond;             // conditioning, or nullptr
};

// What the weights are stored as (wg_create's precision).
enum Precision { kFp32 = 0, kBf16 = 1, kInt8 = 2 };

class Engine {
 public:
  Engine(Shape shape, const float* weights, int64_t count, int precision, const int8_t* qweights, int64_t qcount);
  ~Engine() { stop_pool(); }

  void set_threads(int threads, int group_size);
  void reset(int batch, const float* rings, const int32_t* codes, int src_batch, int64_t t);
  void logits(float* out, const Cond* cond);
  void append(const int32_t* codes);
  void generate(const GenerateArgs& args);
  int batch() const { return batch_; }

 private:
  void plan();
  void begin(Worker& w, int64_t t);
  void advance(Worker& w);
  void forward(Worker& w, bool commit, const StepTerms* terms);
  void conv(Worker& w, int l, float* z, const StepTerms* terms);
  void step_terms(Worker& w, int l, const StepTerms& terms);
  void project_past(Worker& w, int l);
  void head(Worker& w);
  void forward_q(Worker& w, bool commit, const StepTerms* terms);
  void conv_q(Worker& w, int l, float* z, const StepTerms* terms);
  const float* step_terms_q(Worker& w, int l, const StepTerms& terms);
  void project_past_q(Worker& w, int l);
  void head_q(Worker& w);
  void input_layer(Worker& w);
  void step(Worker& w, bool commit, const StepTerms* terms) {
    if (precision_ == kInt8)
      forward_q(w, commit, terms);
    else
      forward(w, commit, terms);
  }
  void read_float_blocks(const float* weights, int64_t count);
  void read_int8_blocks(const float* weights, int64_t count, const int8_t* qweights, int64_t qcount);
  void store_bf16();
  void sync(Worker& w) {
    ++w.epoch;
    w.group->barrier.arrive(w.rank, w.epoch);
    w.group->barrier.wait(w.rank, w.epoch);
  }
  void run(const std::function<void(Worker&)>& job);
  void start_pool(int threads);
  void stop_pool();
  void worker_loop(int index, uint32_t seen);

  Shape s_;
  int precision_ = kFp32;
  Buffer<float> weights_;
  Buffer<uint16_t> half_;       // bf16: the panels' weights
  Buffer<int8_t> qweights_;     // int8: the quantised panels
  Buffer<int32_t> qoffsets_;    // int8 on VNNI: 128 · column sums
  QPanels qhead1_{}, qhead2_{};
  const float *in_table_, *in_bias_, *skip_bias_, *head1_bias_, *head2_bias_;
  Panels head1_{}, head2_{};
  size_t proj_slots_ = 0;       // Σ block over layers
  std::vector<Layer> layers_;

  int batch_ = 0;
  int64_t t_ = 0;
  Buffer<float> rings_;         // per layer (ring_len, B, R), slot = time mod ring_len
  Buffer<float> pending_;       // (layers, B, R) block inputs of the last logits() call
  Buffer<int32_t> codes_;       // (k_in, B) the last k_in codes, slot = time mod k_in
  size_t ring_floats_ = 0;
  Buffer<int8_t> qrings_;       // int8: per layer (ring_len, B, R16) quantised block inputs
  Buffer<float> qring_s_;       //   and (ring_len, B) their scales
  Buffer<int8_t> qpending_;     // int8: (layers, B, R16) and (layers, B): pending_ quantised
  Buffer<float> qpending_s_;

  int threads_ = 1, group_size_ = 0;  // threads used, threads per group (0: by batch)
  std::vector<std::unique_ptr<Group>> groups_;
  std::vector<Worker> workers_;

  // thread pool: worker i > 0 runs on pool_[i - 1]; the caller is worker 0. The pool may be
  // larger than threads_: the extra threads skip the jobs.
  std::vector<std::thread> pool_;
  const std::function<void(Worker&)>* job_ = nullptr;
  Signal job_seq_;              // bumped per job
  Signal done_;                 // count of finished worker jobs
  uint32_t jobs_ = 0;
  bool stopping_ = false;
};

// Consecutive blocks of a flat array, each starting on a multiple of `align` elements, in the
// order native/__init__.py packs them; the total must be what Python passed.
template <class T>
struct Blocks {
  std::vector<size_t> sizes;
  size_t align;
  explicit Blocks(size_t a) : align(a) {}
  void add(size_t n) { sizes.push_back((n + align - 1) / align * align); }
  Buffer<T> copy(const T* source, int64_t count, const char* what) const {
    size_t total = 0;
    for (size_t n : sizes) total += n;
    if (static_cast<int64_t>(total) != count)
      throw std::runtime_error(std::string("packed ") + what + " have " + std::to_string(count) + ", expected " +
                               std::to_string(total));
    Buffer<T> buffer = make_buffer<T>(total);
    std::memcpy(buffer.get(), source, total * sizeof(T));
    return buffer;
  }
};

Engine::Engine(Shape shape, const float* weights, int64_t count, int precision, const int8_t* qweights,
               int64_t qcount)
    : s_(std::move(shape)), precision_(precision) {
  Shape& s = s_;
  s.G8 = ceil_to(s.gate, kGateGroup);
  s.R16 = ceil_to(s.residual, kPanel);
  s.S16 = ceil_to(s.skip, kPanel);
  s.C16 = ceil_to(s.classes, kPanel);
  s.KR = s.kernel * s.residual;
  size_t ring_offset = 0;
  for (int l = 0; l < s.layers; ++l) {
    Layer L{};
    L.dilation = s.dilations[l];
    L.ring_len = (s.kernel - 1) * L.dilation;
    L.ring_offset = ring_offset;
    ring_offset += static_cast<size_t>(L.ring_len);
    L.block = std::min(L.dilation, kBlock);
    L.proj_offset = proj_slots_;
    proj_slots_ += L.block;
    layers_.push_back(L);
  }
  ring_floats_ = ring_offset;
  if (precision == kInt8) {
    read_int8_blocks(weights, count, qweights, qcount);
  } else if (precision == kFp32 || precision == kBf16) {
    read_float_blocks(weights, count);
    if (precision == kBf16) store_bf16();
  } else {
    throw std::runtime_error("unknown precision " + std::to_string(precision));
  }
}

// fp32 and bf16: every matrix as float32 panels.
void Engine::read_float_blocks(const float* weights, int64_t count) {
  const Shape& s = s_;
  Blocks<float> b(kPanel);
  b.add(static_cast<size_t>(s.in_kernel) * s.classes * s.residual);  // in_table
  b.add(s.residual);                                                // in_bias
  for (int l = 0; l < s.layers; ++l) {
    b.add(static_cast<size_t>(2 * s.G8) * s.KR);  // conv panels
    b.add(2 * s.G8);                              // conv bias
    b.add(static_cast<size_t>(s.R16) * s.G8);     // res panels
    b.add(s.R16);                                 // res bias
    b.add(static_cast<size_t>(s.S16) * s.G8);     // skip panels
  }
  b.add(s.S16);                                   // Σ skip biases
  b.add(static_cast<size_t>(s.S16) * s.S16);      // head1
  b.add(s.S16);
  b.add(static_cast<size_t>(s.C16) * s.S16);      // head2
  b.add(s.C16);
  weights_ = b.copy(weights, count, "weights (floats)");
  const float* p = weights_.get();
  size_t i = 0;
  auto next = [&]() { const float* q = p; p += b.sizes[i++]; return q; };
  in_table_ = next();
  in_bias_ = next();
  for (Layer& L : layers_) {
    L.conv = Panels::whole(next(), s.KR);
    L.conv_bias = next();
    L.res = Panels::whole(next(), s.G8);
    L.res_bias = next();
    L.skip = Panels::whole(next(), s.G8);
  }
  skip_bias_ = next();
  head1_ = Panels::whole(next(), s.S16);
  head1_bias_ = next();
  head2_ = Panels::whole(next(), s.S16);
  head2_bias_ = next();
}

// bf16: the panels' weights rounded to bf16 (to nearest, ties to even; Python passes them
// rounded already, so this only narrows them) and read from there.
void Engine::store_bf16() {
  const Shape& s = s_;
  std::vector<std::pair<Panels*, int>> all;  // each matrix and its number of column panels
  for (Layer& L : layers_)
    all.insert(all.end(), {{&L.conv, 2 * s.G8 / kPanel}, {&L.res, s.R16 / kPanel}, {&L.skip, s.S16 / kPanel}});
  all.insert(all.end(), {{&head1_, s.S16 / kPanel}, {&head2_, s.C16 / kPanel}});
  size_t total = 0;
  for (const auto& [P, panels] : all) total += P->stride * panels;
  half_ = make_buffer<uint16_t>(total);
  uint16_t* out = half_.get();
  for (const auto& [P, panels] : all) {
    const size_t n = P->stride * panels;
    for (size_t j = 0; j < n; ++j) {
      uint32_t bits;
      std::memcpy(&bits, P->w + j, 4);
      const size_t column = j % kPanel, at = j - column + (column < 8 ? 2 * column : 2 * (column - 8) + 1);
      out[at] = static_cast<uint16_t>((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }
    P->half = out;
    out += n;
  }
}

// int8: the input table and every bias and scale as floats; the matrices as int8 panels.
void Engine::read_int8_blocks(const float* weights, int64_t count, const int8_t* qweights, int64_t qcount) {
  const Shape& s = s_;
  Blocks<float> f(kPanel);
  f.add(static_cast<size_t>(s.in_kernel) * s.classes * s.residual);  // in_table
  f.add(s.residual);                                                // in_bias
  for (int l = 0; l < s.layers; ++l) {
    f.add(2 * s.G8), f.add(2 * s.G8);  // conv bias, conv scales
    f.add(s.R16), f.add(s.R16);        // res bias, res scales
    f.add(s.S16);                      // skip scales
  }
  f.add(s.S16);                        // Σ skip biases
  f.add(s.S16), f.add(s.S16);          // head1 bias, scales
  f.add(s.C16), f.add(s.C16);          // head2 bias, scales
  weights_ = f.copy(weights, count, "weights (floats)");
  Blocks<int8_t> q(64);
  for (int l = 0; l < s.layers; ++l) {
    for (int i = 0; i < s.kernel; ++i) q.add(static_cast<size_t>(2 * s.G8) * s.R16);  // conv tap i
    q.add(static_cast<size_t>(s.R16) * s.G8);  // res
    q.add(static_cast<size_t>(s.S16) * s.G8);  // skip
  }
  q.add(static_cast<size_t>(s.S16) * s.S16);   // head1
  q.add(static_cast<size_t>(s.C16) * s.S16);   // head2
  qweights_ = q.copy(qweights, qcount, "int8 weights (bytes)");

  const float* p = weights_.get();
  size_t i = 0;
  auto next = [&]() { const float* r = p; p += f.sizes[i++]; return r; };
  const int8_t* qp = qweights_.get();
  size_t j = 0;
  auto qnext = [&]() { const int8_t* r = qp; qp += q.sizes[j++]; return r; };
  in_table_ = next();
  in_bias_ = next();
  std::vector<std::pair<QPanels*, int>> all;  // each matrix and its number of column panels
  for (Layer& L : layers_) {
    L.conv_bias = next();
    const float* conv_scale = next();
    L.res_bias = next();
    const float* res_scale = next();
    const float* skip_scale = next();
    for (int t = 0; t < s.kernel; ++t) L.qconv.push_back(QPanels::whole(qnext(), s.R16, conv_scale));
    L.qres = QPanels::whole(qnext(), s.G8, res_scale);
    L.qskip = QPanels::whole(qnext(), s.G8, skip_scale);
  }
  for (Layer& L : layers_) {
    for (QPanels& P : L.qconv) all.push_back({&P, 2 * s.G8 / kPanel});
    all.insert(all.end(), {{&L.qres, s.R16 / kPanel}, {&L.qskip, s.S16 / kPanel}});
  }
  skip_bias_ = next();
  head1_bias_ = next();
  qhead1_ = QPanels::whole(qnext(), s.S16, next());
  head2_bias_ = next();
  qhead2_ = QPanels::whole(qnext(), s.S16, next());
  all.insert(all.end(), {{&qhead1_, s.S16 / kPanel}, {&qhead2_, s.C16 / kPanel}});
  if (!kOffset) return;
  // VNNI multiplies unsigned activations: q + 128. Each column's 128 · Σ_k Q_kc is taken off again.
  size_t columns = 0;
  for (const auto& [P, panels] : all) columns += static_cast<size_t>(panels) * kPanel;
  qoffsets_ = make_buffer<int32_t>(columns);
  int32_t* out = qoffsets_.get();
  for (const auto& [P, panels] : all) {
    for (int c = 0; c < panels * kPanel; ++c) {
      int32_t sum = 0;
      const int8_t* col = P->w + (c / kPanel) * P->stride + (c % kPanel) * 4;
      for (int g = 0; g < P->K / 4; ++g)
        for (int k = 0; k < 4; ++k) sum += col[g * 64 + k];
      out[c] = 128 * sum;
    }
    P->offset = out;
    out += panels * kPanel;
  }
}

// Changing the layout between calls is cheap and leaves the state (rings, codes) untouched, so
// a caller may re-tune it whenever it likes.
void Engine::set_threads(int threads, int group_size) {
  threads_ = std::max(1, threads);
  group_size_ = std::max(0, group_size);
  if (static_cast<int>(pool_.size()) + 1 < threads_) {
    stop_pool();
    start_pool(threads_);
  }
  if (batch_) plan();
}

// Split the streams into groups and the columns of every layer among a group's threads.
void Engine::plan() {
  const int B = batch_, T = threads_;
  int size = group_size_;
  if (size == 0) {
    // Lockstep groups halve each thread's share of the weights but add barriers: worth it
    // while a thread's own streams are too few to make the weight traffic cheap.
    size = B >= 4 * T ? 1 : T;
  }
  size = std::clamp(size, 1, T);
  const int ngroups = std::max(1, std::min(T / size, B));
  groups_.clear();
  workers_.clear();
  workers_.resize(T);
  const Shape& s = s_;
  auto split = [](int n, int parts, int i) { return static_cast<int>(static_cast<int64_t>(n) * i / parts); };
  for (int g = 0; g < ngroups; ++g) {
    const int first = split(T, ngroups, g), last = split(T, ngroups, g + 1);
    auto grp = std::make_unique<Group>(last - first);
    grp->s0 = split(B, ngroups, g);
    grp->s1 = split(B, ngroups, g + 1);
    grp->first = first;
    grp->size = last - first;
    const int b = grp->s1 - grp->s0;
    grp->z = make_buffer<float>(3 * static_cast<size_t>(b) * s.G8);
    grp->skip = make_buffer<float>(static_cast<size_t>(b) * s.S16);
    grp->hidden = make_buffer<float>(static_cast<size_t>(b) * s.S16);
    grp->logits = make_buffer<float>(static_cast<size_t>(b) * s.C16);
    grp->deferred = s.kernel > 1 && b <= kBlockMaxRows;
    if (grp->deferred) grp->proj = make_buffer<float>(proj_slots_ * b * 2 * s.G8);
    const size_t x_floats = grp->deferred ? static_cast<size_t>(kBlock) * b * (s.KR - s.residual)
                                          : static_cast<size_t>(b) * s.KR;
    for (int r = 0; r < grp->size; ++r) {
      Worker& w = workers_[first + r];
      w.group = grp.get();
      w.rank = r;
      const int n = grp->size;
      w.gate0 = split(s.G8 / kGateGroup, n, r), w.gate1 = split(s.G8 / kGateGroup, n, r + 1);
      w.skip0 = split(s.S16 / kPanel, n, r), w.skip1 = split(s.S16 / kPanel, n, r + 1);
      w.head10 = w.skip0, w.head11 = w.skip1;
      w.head20 = split(s.C16 / kPanel, n, r), w.head21 = split(s.C16 / kPanel, n, r + 1);
      w.epoch = 0;
      w.h = make_buffer<float>(static_cast<size_t>(b) * s.R16);
      w.x = make_buffer<float>(x_floats);
      w.skipacc = make_buffer<float>(static_cast<size_t>(b) * s.S16);
      w.term = make_buffer<float>(static_cast<size_t>(b) * 2 * s.G8);
      w.codes = make_buffer<int32_t>(static_cast<size_t>(s.in_kernel) * b);
      w.cdf = make_buffer<double>(s.classes);
      w.pos = make_buffer<int>(s.layers);
      w.step_in_block = make_buffer<int>(s.layers);
      if (precision_ == kInt8) {
        const size_t rows = grp->deferred ? static_cast<size_t>(kBlock) * b : b;
        w.qh = make_buffer<int8_t>(static_cast<size_t>(b) * s.R16), w.qh_s = make_buffer<float>(b);
        w.qz = make_buffer<int8_t>(2 * static_cast<size_t>(b) * s.G8), w.qz_s = make_buffer<float>(2 * b);
        w.qx = make_buffer<int8_t>(rows * s.R16), w.qx_s = make_buffer<float>(rows);
        w.qs = make_buffer<int8_t>(static_cast<size_t>(b) * s.S16), w.qs_s = make_buffer<float>(b);
        w.pre = make_buffer<float>(static_cast<size_t>(b) * 2 * s.G8);
        w.x = make_buffer<float>(0);  // the float taps are not used
      }
    }
    groups_.push_back(std::move(grp));
  }
}

void Engine::reset(int batch, const float* rings, const int32_t* codes, int src_batch, int64_t t) {
  const Shape& s = s_;
  batch_ = batch;
  t_ = t;
  const size_t R = s.residual;
  codes_ = make_buffer<int32_t>(static_cast<size_t>(s.in_kernel) * batch);
  for (int slot = 0; slot < s.in_kernel; ++slot)
    for (int b = 0; b < batch; ++b) codes_[slot * batch + b] = codes[slot * src_batch + (src_batch == 1 ? 0 : b)];
  if (precision_ == kInt8) {
    // The rings hold each block input quantised, as the step that stored it would have.
    qrings_ = make_buffer<int8_t>(ring_floats_ * batch * s.R16), qring_s_ = make_buffer<float>(ring_floats_ * batch);
    qpending_ = make_buffer<int8_t>(static_cast<size_t>(s.layers) * batch * s.R16);
    qpending_s_ = make_buffer<float>(static_cast<size_t>(s.layers) * batch);
    std::vector<float> row(s.R16, 0.0f);
    const float* src = rings;
    for (const Layer& L : layers_)
      for (int slot = 0; slot < L.ring_len; ++slot, src += src_batch * R)
        for (int b = 0; b < batch; ++b) {
          std::memcpy(row.data(), src + (src_batch == 1 ? 0 : b * R), R * sizeof(float));
          const size_t at = (L.ring_offset + slot) * batch + b;
          quantize_row(row.data(), s.R16, qrings_.get() + at * s.R16, qring_s_.get() + at);
        }
    plan();
    return;
  }
  // Python gives (ring_len, src_batch, R) per layer; src_batch 1 is shared by every stream.
  rings_ = make_buffer<float>(ring_floats_ * batch * R);
  pending_ = make_buffer<float>(static_cast<size_t>(s.layers) * batch * R);
  const float* src = rings;
  for (const Layer& L : layers_) {
    float* dst = rings_.get() + L.ring_offset * batch * R;
    for (int slot = 0; slot < L.ring_len; ++slot, src += src_batch * R)
      for (int b = 0; b < batch; ++b)
        std::memcpy(dst + (static_cast<size_t>(slot) * batch + b) * R, src + (src_batch == 1 ? 0 : b * R),
                    R * sizeof(float));
  }
  plan();
}

inline int wrap(int64_t t, int64_t n) { return static_cast<int>(((t % n) + n) % n); }

// Start of a job at time t: the worker's private copy of its streams' last codes (every member
// of a group samples the same codes, so each keeps its own and none waits for another's) and
// its ring positions.
void Engine::begin(Worker& w, int64_t t) {
  const Group& g = *w.group;
  const int b = g.s1 - g.s0, k_in = s_.in_kernel;
  for (int slot = 0; slot < k_in; ++slot)
    std::memcpy(w.codes.get() + slot * b, codes_.get() + slot * batch_ + g.s0, b * sizeof(int32_t));
  for (int l = 0; l < s_.layers; ++l) {
    w.pos[l] = layers_[l].ring_len ? wrap(t, layers_[l].ring_len) : 0;
    w.step_in_block[l] = wrap(t, layers_[l].block);
  }
  w.code_pos = wrap(t, k_in);
  w.first_step = true;
}

// Time moves on by one step.
void Engine::advance(Worker& w) {
  for (int l = 0; l < s_.layers; ++l) {
    if (++w.pos[l] == layers_[l].ring_len) w.pos[l] = 0;
    if (++w.step_in_block[l] == layers_[l].block) w.step_in_block[l] = 0;
  }
  if (++w.code_pos == s_.in_kernel) w.code_pos = 0;
  w.first_step = false;
}

// The past taps' share of layer l's conv (plus its bias) for the steps from now to the end of
// the current block, this worker's gate channels: proj slot j holds the step with time mod
// block = j. Reads only ring slots the block will not overwrite before using them.
void Engine::project_past(Worker& w, int l) {
  const Shape& s = s_;
  const Group& g = *w.group;
  const Layer& L = layers_[l];
  const int b = g.s1 - g.s0, R = s.residual, KP = s.KR - R;  // KP: past-tap features
  const int j0 = w.step_in_block[l], steps = L.block - j0;
  const float* ring = rings_.get() + L.ring_offset * batch_ * R;
  for (int j = 0; j < steps; ++j)
    for (int r = 0; r < b; ++r) {
      float* x = w.x.get() + static_cast<size_t>(j * b + r) * KP;
      // tap i at step t + j reads time t + j - (k-1-i)·d: slot (t + j + i·d) mod (k-1)·d
      for (int i = 0, slot = (w.pos[l] + j) % L.ring_len; i + 1 < s.kernel; ++i, slot += L.dilation) {
        if (slot >= L.ring_len) slot -= L.ring_len;
        std::memcpy(x + i * R, ring + (static_cast<size_t>(slot) * batch_ + g.s0 + r) * R, R * sizeof(float));
      }
    }
  float* proj = g.proj.get() + (L.proj_offset + j0) * b * 2 * s.G8;
  matmul(w.x.get(), KP, steps * b, L.conv.rows(0, KP), Start{L.conv_bias}, w.gate0, w.gate1,
         StoreOut{proj, 2 * s.G8});
}

// Layer l's conditioning of the group's streams at this step, this worker's gate channels, into
// w.term (b, 2·G8): the one place it is computed, whichever path the conv takes.
__attribute__((noinline)) void Engine::step_terms(Worker& w, int l, const StepTerms& t) {
  const int b = w.group->s1 - w.group->s0, width = 2 * s_.G8;
  const size_t layer = static_cast<size_t>(l) * width;
  for (int r = 0; r < b; ++r) {
    const float* f = t.rows + r * t.rows_ld + layer;
    const float* fixed = t.fixed ? t.fixed + r * t.fixed_ld + layer : nullptr;
    float* out = w.term.get() + static_cast<size_t>(r) * width;
    for (int c = w.gate0 * kPanel; c < w.gate1 * kPanel; c += 8) {
      vec v = load(f + c) * t.w0 + load(f + t.row_step + c) * t.w1;
      v = v + load(f + 2 * t.row_step + c) * t.w2;
      if (fixed) v = v + load(fixed + c);
      store(out + c, v);
    }
  }
}

// z = gated(conv(x) + term) for this worker's gate channels, layer l, this step, with `terms`
// this step's conditioning of the group's streams (or nullptr).
void Engine::conv(Worker& w, int l, float* z, const StepTerms* terms) {
  const Shape& s = s_;
  const Group& g = *w.group;
  const Layer& L = layers_[l];
  const int b = g.s1 - g.s0, R = s.residual;
  const float* term = nullptr;  // row r at term + r·term_ld
  int64_t term_ld = 0;
  if (terms && terms->rows) {
    step_terms(w, l, *terms);
    term = w.term.get(), term_ld = 2 * s.G8;
  } else if (terms && terms->fixed) {
    term = terms->fixed + static_cast<size_t>(l) * 2 * s.G8, term_ld = terms->fixed_ld;
  }
  if (g.deferred) {  // the current input's share, continuing the sum of the past taps' share
    if (w.first_step || w.step_in_block[l] == 0) project_past(w, l);
    const float* proj = g.proj.get() + (L.proj_offset + w.step_in_block[l]) * b * 2 * s.G8;
    const Panels now = L.conv.rows(s.KR - R, R);
    const Start start{nullptr, proj, 2 * s.G8};
    if (term)
      matmul(w.h.get(), s.R16, b, now, start, w.gate0, w.gate1, GateTermOut{z, s.G8, term, term_ld});
    else
      matmul(w.h.get(), s.R16, b, now, start, w.gate0, w.gate1, GateOut{z, s.G8});
    return;
  }
  // x = [taps from the ring, oldest first | h]: tap i reads time t - (k-1-i)·d, whose slot is
  // (t + i·d) mod (k-1)·d.
  const float* ring = rings_.get() + L.ring_offset * batch_ * R;
  for (int r = 0; r < b; ++r) {
    float* x = w.x.get() + r * s.KR;
    for (int i = 0, slot = w.pos[l]; i + 1 < s.kernel; ++i, slot += L.dilation) {
      if (slot >= L.ring_len) slot -= L.ring_len;
      std::memcpy(x + i * R, ring + (static_cast<size_t>(slot) * batch_ + g.s0 + r) * R, R * sizeof(float));
    }
    std::memcpy(x + (s.kernel - 1) * R, w.h.get() + r * s.R16, R * sizeof(float));
  }
  if (term)
    matmul(w.x.get(), s.KR, b, L.conv, Start{L.conv_bias}, w.gate0, w.gate1, GateTermOut{z, s.G8, term, term_ld});
  else
    matmul(w.x.get(), s.KR, b, L.conv, Start{L.conv_bias}, w.gate0, w.gate1, GateOut{z, s.G8});
}

// One step for the worker's group, up to the logits in group->logits. With `commit` the block
// inputs go straight into the rings (generation); otherwise into pending_ (logits()). `terms`:
// this step's conditioning of the group's streams, or nullptr.
void Engine::forward(Worker& w, bool commit, const StepTerms* terms) {
  const Shape& s = s_;
  Group& g = *w.group;
  const int b = g.s1 - g.s0, R = s.residual;

  input_layer(w);
  std::memset(w.skipacc.get(), 0, sizeof(float) * b * s.S16);

  const int nl = s.layers;
  for (int l = 0; l < nl; ++l) {
    const Layer& L = layers_[l];
    float* ring = rings_.get() + L.ring_offset * batch_ * R;
    float* z = g.z.get() + static_cast<size_t>(l % 3) * b * s.G8;  // layer l mod 3: see below
    conv(w, l, z, terms);
    ++w.epoch;
    g.barrier.arrive(w.rank, w.epoch);
    // While the others finish their z slices: the previous layer's skip product, whose z is
    // complete. Three z buffers: a thread can be one layer ahead writing while a slower one
    // still reads the previous layer's.
    if (l > 0) {
      const float* zp = g.z.get() + static_cast<size_t>((l - 1) % 3) * b * s.G8;
      matmul(zp, s.G8, b, layers_[l - 1].skip, Start{}, w.skip0, w.skip1, AddOut{w.skipacc.get(), s.S16});
    }
    g.barrier.wait(w.rank, w.epoch);
    // Every member has read the ring for this layer: store this step's input where the step
    // (k-1)·d later will read it.
    if (w.rank == 0 && L.ring_len) {
      float* dst = commit ? ring + (static_cast<size_t>(w.pos[l]) * batch_ + g.s0) * R
                          : pending_.get() + (static_cast<size_t>(l) * batch_ + g.s0) * R;
      for (int r = 0; r < b; ++r) std::memcpy(dst + r * R, w.h.get() + r * s.R16, R * sizeof(float));
    }
    // Every member updates its own copy of h in full (the same arithmetic, so the copies agree):
    // cheaper than another barrier to exchange slices.
    if (l + 1 < nl)
      matmul(z, s.G8, b, L.res, Start{L.res_bias}, 0, s.R16 / kPanel, AddOut{w.h.get(), s.R16});
  }
  const float* zl = g.z.get() + static_cast<size_t>((nl - 1) % 3) * b * s.G8;
  matmul(zl, s.G8, b, layers_[nl - 1].skip, Start{}, w.skip0, w.skip1, AddOut{w.skipacc.get(), s.S16});
  head(w);
}

// Input layer: one row of each tap's table, chosen by the code that tap reads, added to the
// bias in tap order. Tap i reads time t - (k_in - i), whose slot is (t + i) mod k_in.
void Engine::input_layer(Worker& w) {
  const Shape& s = s_;
  const int b = w.group->s1 - w.group->s0, R = s.residual;
  for (int r = 0; r < b; ++r) {
    float* h = w.h.get() + r * s.R16;
    std::memcpy(h, in_bias_, R * sizeof(float));
    for (int i = 0; i < s.in_kernel; ++i) {
      const int slot = (w.code_pos + i) % s.in_kernel;
      const int code = w.codes[slot * b + r];
      const float* row = in_table_ + (static_cast<size_t>(i) * s.classes + code) * R;
      for (int c = 0; c < R; ++c) h[c] += row[c];
    }
  }
}

// relu(skip) -> head1 -> relu -> head2, each split by columns, a barrier after each.
void Engine::head(Worker& w) {
  const Shape& s = s_;
  Group& g = *w.group;
  const int b = g.s1 - g.s0;
  for (int r = 0; r < b; ++r)
    for (int c = w.skip0 * kPanel; c < w.skip1 * kPanel; c += 8) {
      const vec v = load(w.skipacc.get() + r * s.S16 + c) + load(skip_bias_ + c);
      store(g.skip.get() + r * s.S16 + c, vmax(v, vec{}));
    }
  sync(w);
  matmul(g.skip.get(), s.S16, b, head1_, Start{head1_bias_}, w.head10, w.head11, ReluOut{g.hidden.get(), s.S16});
  sync(w);
  matmul(g.hidden.get(), s.S16, b, head2_, Start{head2_bias_}, w.head20, w.head21, StoreOut{g.logits.get(), s.C16});
  sync(w);
}

// ---------------------------------------------------------------------------------------------
// The int8 step: forward() with quantised rows and integer products (see generate/int8.py for the
// arithmetic, which this follows operation for operation; no fused multiply-adds from here to
// "contract on" below).
// ---------------------------------------------------------------------------------------------
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

// step_terms() for the int8 step: ((k0·F(f-1) + k1·F(f)) + k2·F(f+1)) + fixed, each operation
// rounded alone; returns the row of stream 0 (rows 2·G8 apart).
__attribute__((noinline)) const float* Engine::step_terms_q(Worker& w, int l, const StepTerms& t) {
  const int b = w.group->s1 - w.group->s0, width = 2 * s_.G8;
  const size_t layer = static_cast<size_t>(l) * width;
  for (int r = 0; r < b; ++r) {
    const float* f = t.rows + r * t.rows_ld + layer;
    const float* fixed = t.fixed ? t.fixed + r * t.fixed_ld + layer : nullptr;
    float* out = w.term.get() + static_cast<size_t>(r) * width;
    for (int c = w.gate0 * kPanel; c < w.gate1 * kPanel; c += 8) {
      const vec a = load(f + c) * t.w0, m = load(f + t.row_step + c) * t.w1, z = load(f + 2 * t.row_step + c) * t.w2;
      vec v = (a + m) + z;
      if (fixed) v = v + load(fixed + c);
      store(out + c, v);
    }
  }
  return w.term.get();
}

// The past taps' share of layer l's conv, as project_past() but from the quantised ring: for the
// steps from now to the end of the block, tap by tap, (bias + P_0) + P_1 … into proj.
__attribute__((noinline)) void Engine::project_past_q(Worker& w, int l) {
  const Shape& s = s_;
  const Group& g = *w.group;
  const Layer& L = layers_[l];
  const int b = g.s1 - g.s0, R16 = s.R16;
  const int j0 = w.step_in_block[l], steps = L.block - j0;
  float* proj = g.proj.get() + (L.proj_offset + j0) * b * 2 * s.G8;
  const int8_t* ring = qrings_.get() + L.ring_offset * batch_ * R16;
  const float* ring_s = qring_s_.get() + L.ring_offset * batch_;
  for (int i = 0; i + 1 < s.kernel; ++i) {
    // tap i at step t + j reads time t + j - (k-1-i)·d: slot (t + j + i·d) mod (k-1)·d
    for (int j = 0; j < steps; ++j) {
      int slot = (w.pos[l] + j + i * L.dilation) % L.ring_len;
      for (int r = 0; r < b; ++r) {
        const size_t at = static_cast<size_t>(slot) * batch_ + g.s0 + r;
        std::memcpy(w.qx.get() + static_cast<size_t>(j * b + r) * R16, ring + at * R16, R16);
        w.qx_s[j * b + r] = ring_s[at];
      }
    }
    const Start start = i == 0 ? Start{L.conv_bias} : Start{nullptr, proj, 2 * s.G8};
    qmatmul(w.qx.get(), R16, w.qx_s.get(), steps * b, L.qconv[i], start, w.gate0, w.gate1,
            StoreOut{proj, 2 * s.G8});
  }
}

// z = gated(conv(x) + term) for this worker's gate channels, layer l: the taps oldest first,
// each continuing the sums of the ones before, the current input (w.qh) last.
__attribute__((noinline)) void Engine::conv_q(Worker& w, int l, float* z, const StepTerms* terms) {
  const Shape& s = s_;
  const Group& g = *w.group;
  const Layer& L = layers_[l];
  const int b = g.s1 - g.s0, R16 = s.R16;
  const float* term = nullptr;  // row r at term + r·term_ld
  int64_t term_ld = 0;
  if (terms && terms->rows) {
    term = step_terms_q(w, l, *terms), term_ld = 2 * s.G8;
  } else if (terms && terms->fixed) {
    term = terms->fixed + static_cast<size_t>(l) * 2 * s.G8, term_ld = terms->fixed_ld;
  }
  Start start{L.conv_bias};
  if (g.deferred) {
    if (w.first_step || w.step_in_block[l] == 0) project_past_q(w, l);
    start = Start{nullptr, g.proj.get() + (L.proj_offset + w.step_in_block[l]) * b * 2 * s.G8, 2 * s.G8};
  } else {
    const int8_t* ring = qrings_.get() + L.ring_offset * batch_ * R16;
    const float* ring_s = qring_s_.get() + L.ring_offset * batch_;
    for (int i = 0, slot = w.pos[l]; i + 1 < s.kernel; ++i, slot += L.dilation) {
      if (slot >= L.ring_len) slot -= L.ring_len;  // tap i reads time t - (k-1-i)·d: slot (t + i·d) mod (k-1)·d
      for (int r = 0; r < b; ++r) {
        const size_t at = static_cast<size_t>(slot) * batch_ + g.s0 + r;
        std::memcpy(w.qx.get() + static_cast<size_t>(r) * R16, ring + at * R16, R16);
        w.qx_s[r] = ring_s[at];
      }
      qmatmul(w.qx.get(), R16, w.qx_s.get(), b, L.qconv[i], start, w.gate0, w.gate1, StoreOut{w.pre.get(), 2 * s.G8});
      start = Start{nullptr, w.pre.get(), 2 * s.G8};
    }
  }
  const QPanels& now = L.qconv[s.kernel - 1];
  if (term)
    qmatmul(w.qh.get(), R16, w.qh_s.get(), b, now, start, w.gate0, w.gate1, QGateTermOut{z, s.G8, term, term_ld});
  else
    qmatmul(w.qh.get(), R16, w.qh_s.get(), b, now, start, w.gate0, w.gate1, QGateOut{z, s.G8});
}

// forward() at int8: the same barriers and the same split of the work; every member also
// quantises the full rows it multiplies (h, z, the head's inputs) itself, the same numbers.
__attribute__((noinline)) void Engine::forward_q(Worker& w, bool commit, const StepTerms* terms) {
  const Shape& s = s_;
  Group& g = *w.group;
  const int b = g.s1 - g.s0, R16 = s.R16, G8 = s.G8;
  input_layer(w);
  for (int r = 0; r < b; ++r) quantize_row(w.h.get() + r * R16, R16, w.qh.get() + r * R16, &w.qh_s[r]);
  std::memset(w.skipacc.get(), 0, sizeof(float) * b * s.S16);
  const int nl = s.layers;
  for (int l = 0; l < nl; ++l) {
    const Layer& L = layers_[l];
    float* z = g.z.get() + static_cast<size_t>(l % 3) * b * G8;
    conv_q(w, l, z, terms);
    ++w.epoch;
    g.barrier.arrive(w.rank, w.epoch);
    if (l > 0) {  // the previous layer's skip product, while the others finish z
      const size_t prev = static_cast<size_t>((l - 1) % 2) * b;
      qmatmul(w.qz.get() + prev * G8, G8, w.qz_s.get() + prev, b, layers_[l - 1].qskip, Start{}, w.skip0, w.skip1,
              AddOut{w.skipacc.get(), s.S16});
    }
    g.barrier.wait(w.rank, w.epoch);
    if (w.rank == 0 && L.ring_len) {  // this step's input, quantised, where the step (k-1)·d later reads it
      const size_t at = commit ? (L.ring_offset + w.pos[l]) * batch_ + g.s0 : static_cast<size_t>(l) * batch_ + g.s0;
      int8_t* dst = (commit ? qrings_ : qpending_).get() + at * R16;
      std::memcpy(dst, w.qh.get(), static_cast<size_t>(b) * R16);
      std::memcpy((commit ? qring_s_ : qpending_s_).get() + at, w.qh_s.get(), b * sizeof(float));
    }
    const size_t cur = static_cast<size_t>(l % 2) * b;
    for (int r = 0; r < b; ++r) quantize_row(z + r * G8, G8, w.qz.get() + (cur + r) * G8, &w.qz_s[cur + r]);
    if (l + 1 < nl) {
      qmatmul(w.qz.get() + cur * G8, G8, w.qz_s.get() + cur, b, L.qres, Start{L.res_bias}, 0, R16 / kPanel,
              AddOut{w.h.get(), R16});
      for (int r = 0; r < b; ++r) quantize_row(w.h.get() + r * R16, R16, w.qh.get() + r * R16, &w.qh_s[r]);
    }
  }
  const size_t last = static_cast<size_t>((nl - 1) % 2) * b;
  qmatmul(w.qz.get() + last * G8, G8, w.qz_s.get() + last, b, layers_[nl - 1].qskip, Start{}, w.skip0, w.skip1,
          AddOut{w.skipacc.get(), s.S16});
  head_q(w);
}

// head() at int8: relu(skip + Σ skip biases), head1 and head2 on quantised rows.
__attribute__((noinline)) void Engine::head_q(Worker& w) {
  const Shape& s = s_;
  Group& g = *w.group;
  const int b = g.s1 - g.s0, S16 = s.S16;
  for (int r = 0; r < b; ++r)
    for (int c = w.skip0 * kPanel; c < w.skip1 * kPanel; c += 8) {
      const vec v = load(w.skipacc.get() + r * S16 + c) + load(skip_bias_ + c);
      store(g.skip.get() + r * S16 + c, vmax(v, vec{}));
    }
  sync(w);
  for (int r = 0; r < b; ++r) quantize_row(g.skip.get() + r * S16, S16, w.qs.get() + r * S16, &w.qs_s[r]);
  qmatmul(w.qs.get(), S16, w.qs_s.get(), b, qhead1_, Start{head1_bias_}, w.head10, w.head11,
          ReluOut{g.hidden.get(), S16});
  sync(w);
  for (int r = 0; r < b; ++r) quantize_row(g.hidden.get() + r * S16, S16, w.qs.get() + r * S16, &w.qs_s[r]);
  qmatmul(w.qs.get(), S16, w.qs_s.get(), b, qhead2_, Start{head2_bias_}, w.head20, w.head21,
          StoreOut{g.logits.get(), s.C16});
  sync(w);
}

#if defined(__clang__)
#pragma clang fp contract(on)
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

void Engine::logits(float* out, const Cond* cond) {
  const int64_t t = t_;
  run([&](Worker& w) {
    const Group& g = *w.group;
    begin(w, t);
    if (cond) {
      const StepTerms terms(*cond, g.s0, cond->time);
      step(w, false, &terms);
    } else {
      step(w, false, nullptr);
    }
    if (w.rank == 0)
      for (int r = 0; r < g.s1 - g.s0; ++r)
        std::memcpy(out + static_cast<size_t>(g.s0 + r) * s_.classes, g.logits.get() + r * s_.C16,
                    s_.classes * sizeof(float));
  });
}

void Engine::append(const int32_t* codes) {
  const size_t R = s_.residual;
  for (int l = 0; l < s_.layers; ++l) {
    const Layer& L = layers_[l];
    if (!L.ring_len) continue;
    if (precision_ == kInt8) {
      const size_t slot = L.ring_offset + wrap(t_, L.ring_len), R16 = s_.R16;
      std::memcpy(qrings_.get() + slot * batch_ * R16, qpending_.get() + l * batch_ * R16, batch_ * R16);
      std::memcpy(qring_s_.get() + slot * batch_, qpending_s_.get() + l * batch_, batch_ * sizeof(float));
      continue;
    }
    float* dst = rings_.get() + (L.ring_offset + wrap(t_, L.ring_len)) * batch_ * R;
    std::memcpy(dst, pending_.get() + static_cast<size_t>(l) * batch_ * R, batch_ * R * sizeof(float));
  }
  std::memcpy(codes_.get() + wrap(t_, s_.in_kernel) * batch_, codes, batch_ * sizeof(int32_t));
  ++t_;
}

void Engine::generate(const GenerateArgs& a) {
  const int64_t t0 = t_;
  std::vector<uint64_t> keys(batch_);
  for (int i = 0; i < batch_; ++i) keys[i] = stream_key(a.seeds[i]);
  run([&](Worker& w) {
    const Group& g = *w.group;
    const int b = g.s1 - g.s0;
    begin(w, t0);
    for (int i = 0; i < a.steps; ++i) {
      if (a.cond) {
        const StepTerms terms(*a.cond, g.s0, a.cond->time + i);
        step(w, true, &terms);
      } else {
        step(w, true, nullptr);
      }
      // Every member samples every stream of its group (the same numbers), so no barrier is
      // needed before the next step reads the codes.
      int32_t* slot = w.codes.get() + w.code_pos * b;
      for (int r = 0; r < b; ++r) {
        const int stream = g.s0 + r;
        const double u = stream_uniform(keys[stream], a.counter + i);
        const int code = sample_code(g.logits.get() + r * s_.C16, s_.classes, a.temperatures[stream], u, w.cdf.get());
        slot[r] = code;
        if (w.rank == 0) a.out[stream * a.ld + i] = static_cast<uint8_t>(code);
      }
      advance(w);
    }
    if (w.rank == 0)  // back to the shared copy, for the next call
      for (int slot = 0; slot < s_.in_kernel; ++slot)
        std::memcpy(codes_.get() + slot * batch_ + g.s0, w.codes.get() + slot * b, b * sizeof(int32_t));
  });
  t_ = t0 + a.steps;
}

// ---------------------------------------------------------------------------------------------
// Thread pool (std::thread, not OpenMP: torch brings its own OpenMP runtime into the process)
// ---------------------------------------------------------------------------------------------

void Engine::start_pool(int threads) {
  stopping_ = false;
  for (int i = 1; i < threads; ++i) pool_.emplace_back(&Engine::worker_loop, this, i, jobs_);
}

void Engine::stop_pool() {
  if (pool_.empty()) return;
  stopping_ = true;
  job_seq_.publish(++jobs_);
  for (std::thread& th : pool_) th.join();
  pool_.clear();
  done_.value.store(0);
}

void Engine::worker_loop(int index, uint32_t seen) {
  for (;;) {
    job_seq_.await(++seen);
    if (stopping_) return;
    if (index < static_cast<int>(workers_.size())) (*job_)(workers_[index]);
    done_.value.fetch_add(1, std::memory_order_acq_rel);
    if (done_.sleepers.load(std::memory_order_seq_cst)) futex_wake(&done_.value);
  }
}

// Run `job` on every worker (the caller is worker 0) and wait for all of them.
void Engine::run(const std::function<void(Worker&)>& job) {
  const uint32_t target = done_.value.load() + static_cast<uint32_t>(pool_.size());
  job_ = &job;
  job_seq_.publish(++jobs_);
  job(workers_[0]);
  done_.await(target);
}

Shape read_shape(const int64_t* v, int n) {
  if (n < 7) throw std::runtime_error("shape needs at least 7 numbers");
  Shape s{};
  s.classes = static_cast<int>(v[0]), s.residual = static_cast<int>(v[1]), s.gate = static_cast<int>(v[2]);
  s.skip = static_cast<int>(v[3]), s.kernel = static_cast<int>(v[4]), s.in_kernel = static_cast<int>(v[5]);
  s.layers = static_cast<int>(v[6]);
  if (s.classes < 1 || s.residual < 1 || s.gate < 1 || s.skip < 1 || s.kernel < 1 || s.in_kernel < 1 ||
      s.layers < 1 || n != 7 + s.layers)
    throw std::runtime_error("bad shape");
  for (int l = 0; l < s.layers; ++l) {
    if (v[7 + l] < 1) throw std::runtime_error("bad dilation");
    s.dilations.push_back(static_cast<int>(v[7 + l]));
  }
  return s;
}

void set_error(char* err, int len, const char* msg) {
  if (err && len > 0) {
    std::strncpy(err, msg, len - 1);
    err[len - 1] = 0;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// C ABI. Functions returning int give 0 on success, -1 on failure (message in `err`).
// ---------------------------------------------------------------------------------------------

extern "C" {

int wg_abi_version() { return kAbiVersion; }

// Which integer dot product the int8 kernels were built with: "avx512-vnni", "avx-vnni", "avx2"
// or "portable".
const char* wg_dot_kind() { return kDotKind; }

// shape: [classes, residual, gate, skip, kernel, in_kernel, layers, dilation_0, ...]
// precision: 0 fp32, 1 bf16 (weights as fp32 does, rounded to bf16), 2 int8 (weights: the
// floats of the int8 layout, qweights: its int8 panels; see native/__init__.py)
void* wg_create(const int64_t* shape, int nshape, const float* weights, int64_t count, int threads, int precision,
                const int8_t* qweights, int64_t qcount, char* err, int errlen) {
  try {
    auto* e = new Engine(read_shape(shape, nshape), weights, count, precision, qweights, qcount);
    e->set_threads(threads, 0);
    return e;
  } catch (const std::exception& ex) {
    set_error(err, errlen, ex.what());
    return nullptr;
  }
}

void wg_destroy(void* engine) { delete static_cast<Engine*>(engine); }

int wg_set_threads(void* engine, int threads, int group_size) {
  static_cast<Engine*>(engine)->set_threads(threads, group_size);
  return 0;
}

// rings: per layer (ring_len, src_batch, residual) float32 with slot = time mod ring_len;
// codes: (in_kernel, src_batch) int32 with slot = time mod in_kernel; t: the next sample's time.
int wg_reset(void* engine, int batch, const float* rings, const int32_t* codes, int src_batch, int64_t t,
             char* err, int errlen) {
  try {
    static_cast<Engine*>(engine)->reset(batch, rings, codes, src_batch, t);
    return 0;
  } catch (const std::exception& ex) {
    set_error(err, errlen, ex.what());
    return -1;
  }
}

// Logits (batch, classes) for the next sample; the state does not move until wg_append.
// cond: the conditioning (see Cond; its time is the next sample's), or nullptr.
// Returns -2 if cond's frame rows do not cover the step.
int wg_logits(void* engine, float* out, const Cond* cond) {
  auto* e = static_cast<Engine*>(engine);
  if (!e->batch()) return -1;  // not reset yet
  if (cond && !frames_cover(*cond, 1)) return -2;
  e->logits(out, cond);
  return 0;
}

// Advance by one sample: codes (batch) int32 are the samples the last wg_logits predicted.
int wg_append(void* engine, const int32_t* codes) {
  auto* e = static_cast<Engine*>(engine);
  if (!e->batch()) return -1;
  e->append(codes);
  return 0;
}

// Generate `steps` samples for every stream: codes to out[stream * ld + i]. The uniform of step
// i of a stream is u(seed, counter + i); seeds and temperatures have one entry per stream.
// cond: the conditioning (see Cond; its time is the first step's), or nullptr. Returns -2 if
// cond's frame rows do not cover every step.
int wg_generate(void* engine, int steps, const uint64_t* seeds, const double* temperatures, uint64_t counter,
                uint8_t* out, int64_t ld, const Cond* cond) {
  auto* e = static_cast<Engine*>(engine);
  if (!e->batch()) return -1;
  if (cond && !frames_cover(*cond, steps)) return -2;
  e->generate(GenerateArgs{steps, seeds, temperatures, counter, out, ld, cond});
  return 0;
}

// For tests: the uniform the engine draws for (seed, n).
double wg_uniform(uint64_t seed, uint64_t n) { return stream_uniform(stream_key(seed), n); }

}  // extern "C"
