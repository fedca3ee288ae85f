// SIDE CPU kernels: pooled and per-event embeddings of byte-grouped packed SIDs.
//
// The default build (torch.utils.cpp_extension.load, torchrec_side/modules/ops/cpu_kernel.py) adds
// the CPU kernels of the ops `torchrec_side::sid_pool` and `torchrec_side::sid_embed`, whose
// schemas, fake (Meta) kernels, autograd and other-device kernels are registered from Python when
// `torchrec_side.modules.ops` is imported (ops/library.py). The library only holds
// TORCH_LIBRARY_IMPL(torchrec_side, CPU): loading it makes the dispatcher route CPU calls here.
//
// With -DSIDE_NO_TORCH the same source is a plain shared library with an extern "C" interface (no
// torch headers), kept as the ctypes baseline of the lookup benchmark.
//
// Tables are [G * 256, D] float32 (row g * 256 + v: group g's decoded value v, zero rows for byte
// values the group never uses). Pooling: bags with n >= hist_min_events(D) build a per-bag histogram of
// the G * 256 byte bins (int32 counts, or float32 weighted) into one row of a dense float block of
// kPoolRows bags; each full block (and the last, partial one) is multiplied by the table in one
// register-blocked product, out[bags] = counts[bags, bins] @ table (bins above a group's limit are
// skipped). Shorter bags add each event's G rows in one pass. Bytes are
// validated on the fly when `check` is set (byte g at most limits[g], unused high bytes zero);
// offsets are validated before any read.
// Work is split into chunks of whole bags balanced by events and run with at::parallel_for on
// torch's intra-op pool (at::get_num_threads()); each bag is pooled by one thread in a fixed order
// (a block product sums each output element over the bins in ascending order whatever the block's
// other bags are), so results do not depend on the thread count.
// See docs/design.md, section 5 (SIDE) and section 8 (speed notes).

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

// No fused multiply-add contraction: a compiler contracts `a * b + c * d` differently in different
// inlining contexts, and every build of this source (the op, the ctypes baseline) must give the
// same bits.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SIDE_NO_CLONES)
#define SIDE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIDE_CLONES
#endif

// The block product's helpers must be inlined into their (multiversioned) caller: a helper left out
// of line is compiled for the baseline target only (measured: 18x slower at D = 64).
#if defined(__GNUC__)
#define SIDE_INLINE inline __attribute__((always_inline))
#else
#define SIDE_INLINE inline
#endif

namespace side {

constexpr int kBins = 256;
// Bags of at least hist_min_events(D) events are pooled through histograms and the block product,
// shorter ones add rows directly (measured crossover, one thread, 8 groups of 243 values: about 180
// events at D = 16, 130-190 at D = 5 and 8, under 100 at D = 32 and 64; the direct sums read G rows
// per event, the block product reads G * 256 table rows per block of kPoolRows bags).
inline int64_t hist_min_events(int64_t D) { return D >= 32 ? 128 : 192; }
// Below this much work (events x groups for pooling, x D for embedding) a call stays on one thread.
constexpr int64_t kParallelMinWork = int64_t(1) << 15;

// o += (sum of the G rows of one event) [* w]: one pass over o per event (one store per element
// instead of G).
template <int G, bool W>
inline void add_event(float* __restrict o, const float* __restrict table, uint64_t v, float w, int64_t D) {
  const float* __restrict r[G];
  for (int g = 0; g < G; ++g) r[g] = table + (int64_t)(g * kBins + ((v >> (8 * g)) & 0xff)) * D;
  for (int64_t d = 0; d < D; ++d) {
    float acc = r[0][d];
    for (int g = 1; g < G; ++g) acc += r[g][d];
    o[d] += W ? w * acc : acc;
  }
}

// Rows of the dense counts block of pool_range: long bags are pooled kPoolRows at a time.
constexpr int kPoolRows = 8;
// Output columns per pass of the block product: 32 while D allows (two AVX-512 registers per bag, half
// the passes over the counts), then 16, 8, 4 and single columns (every pass has a compile-time width).

// out[m][d0 : d0 + C] = sum over the bins k of c[m][k] * table[k][d0 : d0 + C] for the M bags of a
// block; the bins of group g are g * 256 .. g * 256 + lim[g]. Every element is summed over the bins
// in ascending order, one multiply and one add per bin (no fused multiply-add, see above), so its
// value depends neither on M, nor on C, nor on the vector width of the build.
template <int G, int M, int C>
SIDE_INLINE void block_cols(const float* __restrict c, const float* __restrict table, const uint8_t* lim, int64_t D,
                            int64_t d0, float* const* outs) {
  constexpr int K = G * kBins;
  float acc[M][C];
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < C; ++j) acc[m][j] = 0.0f;
  for (int g = 0; g < G; ++g) {
    const int kend = g * kBins + (int)lim[g] + 1;
    for (int k = g * kBins; k < kend; ++k) {
      const float* __restrict t = table + (int64_t)k * D + d0;
      for (int m = 0; m < M; ++m) {
        const float cm = c[m * K + k];
        for (int j = 0; j < C; ++j) acc[m][j] += cm * t[j];
      }
    }
  }
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < C; ++j) outs[m][d0 + j] = acc[m][j];
}

template <int G, int M>
SIDE_INLINE void block_product(const float* c, const float* table, const uint8_t* lim, int64_t D,
                               float* const* outs) {
  int64_t d0 = 0;
  for (; d0 + 32 <= D; d0 += 32) block_cols<G, M, 32>(c, table, lim, D, d0, outs);
  if (d0 + 16 <= D) { block_cols<G, M, 16>(c, table, lim, D, d0, outs); d0 += 16; }
  if (d0 + 8 <= D) { block_cols<G, M, 8>(c, table, lim, D, d0, outs); d0 += 8; }
  if (d0 + 4 <= D) { block_cols<G, M, 4>(c, table, lim, D, d0, outs); d0 += 4; }
  for (; d0 < D; ++d0) block_cols<G, M, 1>(c, table, lim, D, d0, outs);
}

// out rows `outs[0 .. m)` = counts rows `c[0 .. m)` (each G * 256 floats) @ table, 1 <= m <= kPoolRows.
template <int G>
SIDE_CLONES void pool_block(const float* c, int m, const float* table, const uint8_t* lim, int64_t D, float* const* outs) {
  static_assert(kPoolRows == 8, "pool_block dispatches 1..8 rows");
  switch (m) {
    case 1: block_product<G, 1>(c, table, lim, D, outs); break;
    case 2: block_product<G, 2>(c, table, lim, D, outs); break;
    case 3: block_product<G, 3>(c, table, lim, D, outs); break;
    case 4: block_product<G, 4>(c, table, lim, D, outs); break;
    case 5: block_product<G, 5>(c, table, lim, D, outs); break;
    case 6: block_product<G, 6>(c, table, lim, D, outs); break;
    case 7: block_product<G, 7>(c, table, lim, D, outs); break;
    case 8: block_product<G, 8>(c, table, lim, D, outs); break;
  }
}

struct Args {
  const int64_t* sids;
  const int64_t* offsets;
  const float* weights;
  const uint8_t* limits;  // [G]: largest valid value of byte g
  const float* table;     // [G * 256, D]
  float* out;             // [B, D] (pooled) or [N, D] (per event)
  int64_t D;
  int64_t hist_min;
  int check;
};

template <int G>
inline bool bad_sid(uint64_t v, const uint8_t* lim) {
  bool bad = false;
  for (int g = 0; g < G; ++g) bad |= ((v >> (8 * g)) & 0xff) > lim[g];
  if (G < 8) bad |= (v >> (8 * (G < 8 ? G : 0))) != 0;
  return bad;
}

template <int G>
int64_t first_bad(const Args& a, int64_t s, int64_t e) {
  for (int64_t i = s; i < e; ++i)
    if (bad_sid<G>((uint64_t)a.sids[i], a.limits)) return i;
  return -1;
}

// Pools bags [b0, b1); returns -1, or the index of the first invalid SID found (then stops).
// Long bags fill the rows of a dense counts block (kPoolRows x G * 256 floats, thread-local), which is
// multiplied by the table when full and at the end of the range.
template <int G, bool W>
SIDE_CLONES int64_t pool_range(const Args& a, int64_t b0, int64_t b1) {
  const int64_t D = a.D;
  constexpr int K = G * kBins;
  alignas(64) int32_t icnt[K];
  thread_local std::vector<float> block_buf;
  if (block_buf.size() < (size_t)(kPoolRows * K)) block_buf.assign((size_t)kPoolRows * 8 * kBins, 0.0f);
  float* const cblk = block_buf.data();
  float* outs[kPoolRows];
  int m = 0;  // rows of the block in use
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t s = a.offsets[b], e = a.offsets[b + 1];
    float* o = a.out + b * D;
    if ((e - s) * G >= a.hist_min && e > s) {
      float* __restrict crow = cblk + (int64_t)m * K;
      if (W) {
        if (a.check) {
          uint64_t acc = 0;
          for (int64_t i = s; i < e; ++i) acc |= bad_sid<G>((uint64_t)a.sids[i], a.limits);
          if (acc) return first_bad<G>(a, s, e);
        }
        std::memset(crow, 0, sizeof(float) * K);
        for (int64_t i = s; i < e; ++i) {
          const uint64_t v = (uint64_t)a.sids[i];
          const float w = a.weights[i];
          for (int g = 0; g < G; ++g) crow[g * kBins + ((v >> (8 * g)) & 0xff)] += w;
        }
      } else {
        // Validation folded into the histogram: an invalid byte lands in a bin above its group's
        // limit, a stray high byte shows in `orv`.
        std::memset(icnt, 0, sizeof(icnt));
        uint64_t orv = 0;
        for (int64_t i = s; i < e; ++i) {
          const uint64_t v = (uint64_t)a.sids[i];
          orv |= v;
          for (int g = 0; g < G; ++g) icnt[g * kBins + ((v >> (8 * g)) & 0xff)] += 1;
        }
        if (a.check) {
          bool bad = G < 8 && (orv >> (8 * (G < 8 ? G : 0))) != 0;
          for (int g = 0; g < G && !bad; ++g)
            for (int k = (int)a.limits[g] + 1; k < kBins; ++k) bad |= icnt[g * kBins + k] != 0;
          if (bad) return first_bad<G>(a, s, e);
        }
        for (int k = 0; k < K; ++k) crow[k] = (float)icnt[k];
      }
      outs[m++] = o;
      if (m == kPoolRows) {
        pool_block<G>(cblk, m, a.table, a.limits, D, outs);
        m = 0;
      }
      continue;
    }
    std::memset(o, 0, sizeof(float) * D);
    if (e <= s) continue;
    if (a.check) {
      bool bad = false;
      for (int64_t i = s; i < e; ++i) bad |= bad_sid<G>((uint64_t)a.sids[i], a.limits);
      if (bad) return first_bad<G>(a, s, e);
    }
    for (int64_t i = s; i < e; ++i)
      add_event<G, W>(o, a.table, (uint64_t)a.sids[i], W ? a.weights[i] : 1.0f, D);
  }
  if (m > 0) pool_block<G>(cblk, m, a.table, a.limits, D, outs);
  return -1;
}

// Per-event embeddings of events [i0, i1); returns -1 or the first invalid SID's index.
template <int G>
SIDE_CLONES int64_t embed_range(const Args& a, int64_t i0, int64_t i1) {
  const int64_t D = a.D;
  for (int64_t i = i0; i < i1; ++i) {
    const uint64_t v = (uint64_t)a.sids[i];
    if (a.check && bad_sid<G>(v, a.limits)) return i;
    float* __restrict o = a.out + i * D;
    const float* __restrict r[G];
    for (int g = 0; g < G; ++g) r[g] = a.table + (int64_t)(g * kBins + ((v >> (8 * g)) & 0xff)) * D;
    for (int64_t d = 0; d < D; ++d) {
      float acc = r[0][d];
      for (int g = 1; g < G; ++g) acc += r[g][d];
      o[d] = acc;
    }
  }
  return -1;
}

typedef int64_t (*RangeFn)(const Args&, int64_t, int64_t);

template <int G>
RangeFn pick_pool(bool weighted) { return weighted ? &pool_range<G, true> : &pool_range<G, false>; }

RangeFn pool_fn(int G, bool weighted) {
  switch (G) {
    case 1: return pick_pool<1>(weighted);
    case 2: return pick_pool<2>(weighted);
    case 3: return pick_pool<3>(weighted);
    case 4: return pick_pool<4>(weighted);
    case 5: return pick_pool<5>(weighted);
    case 6: return pick_pool<6>(weighted);
    case 7: return pick_pool<7>(weighted);
    case 8: return pick_pool<8>(weighted);
  }
  return nullptr;
}

RangeFn embed_fn(int G) {
  switch (G) {
    case 1: return &embed_range<1>;
    case 2: return &embed_range<2>;
    case 3: return &embed_range<3>;
    case 4: return &embed_range<4>;
    case 5: return &embed_range<5>;
    case 6: return &embed_range<6>;
    case 7: return &embed_range<7>;
    case 8: return &embed_range<8>;
  }
  return nullptr;
}

// Offsets must start at 0, never decrease and end at N. Returns -1 if they do, else the first bad
// position: 0 (does not start at 0), b + 1 (offsets[b + 1] < offsets[b]) or B (does not end at N).
inline int64_t bad_offset(const int64_t* offsets, int64_t B, int64_t N) {
  if (offsets[0] != 0) return 0;
  for (int64_t b = 0; b < B; ++b)
    if (offsets[b + 1] < offsets[b]) return b + 1;
  if (offsets[B] != N) return B;
  return -1;
}

// Chunk boundaries over bags: `chunks` chunks of about equal (events + bags).
inline std::vector<int64_t> bag_cuts(const int64_t* offsets, int64_t B, int64_t N, int64_t chunks) {
  const int64_t C = std::max<int64_t>(1, std::min<int64_t>(chunks, B));
  std::vector<int64_t> cuts(C + 1, 0);
  cuts[C] = B;
  for (int64_t c = 1; c < C; ++c) {
    const int64_t target = (N + B) * c / C;
    int64_t lo = cuts[c - 1], hi = B;
    while (lo < hi) {
      const int64_t mid = (lo + hi) / 2;
      if (offsets[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    cuts[c] = lo;
  }
  return cuts;
}

inline std::vector<int64_t> even_cuts(int64_t N, int64_t chunks) {
  const int64_t C = std::max<int64_t>(1, std::min<int64_t>(chunks, N));
  std::vector<int64_t> cuts(C + 1, 0);
  for (int64_t c = 0; c <= C; ++c) cuts[c] = N * c / C;
  return cuts;
}

inline int64_t min_bad(const std::vector<int64_t>& bad) {
  int64_t first = -1;
  for (int64_t x : bad)
    if (x >= 0 && (first < 0 || x < first)) first = x;
  return first;
}

}  // namespace side

#ifdef SIDE_NO_TORCH

// The ctypes baseline: serial, or an OpenMP loop when built with -fopenmp (sharing torch's libgomp).
namespace side {
inline int64_t run_chunks(RangeFn fn, const Args& a, const std::vector<int64_t>& cuts, int nthreads) {
  const int C = (int)cuts.size() - 1;
  std::vector<int64_t> bad(C, -1);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (nthreads > 1 && C > 1)
#endif
  for (int c = 0; c < C; ++c) bad[c] = fn(a, cuts[c], cuts[c + 1]);
  (void)nthreads;
  return min_bad(bad);
}
}  // namespace side

extern "C" {

int side_kernel_version() { return 10; }

// -2: bad arguments; -3: bad offsets; -1: all SIDs valid (or check == 0); else first bad SID index.
// hist_min < 0: the op's threshold (hist_min_events(D) * G).
int64_t side_pool_grouped(const int64_t* sids, int64_t N, const int64_t* offsets, int64_t B,
                          const float* weights, int G, const uint8_t* limits, const float* table,
                          int64_t D, float* out, int check, int64_t hist_min, int nthreads,
                          int64_t min_work) {
  side::RangeFn fn = side::pool_fn(G, weights != nullptr);
  if (fn == nullptr || B < 0 || D <= 0) return -2;
  if (side::bad_offset(offsets, B, N) >= 0) return -3;
  if (B == 0) return -1;
  if (hist_min < 0) hist_min = side::hist_min_events(D) * G;  // the op's rule
  side::Args a{sids, offsets, weights, limits, table, out, D, hist_min, check};
  const int T = (N * G < min_work) ? 1 : std::max(1, nthreads);
  return side::run_chunks(fn, a, side::bag_cuts(offsets, B, N, T == 1 ? 1 : 4 * T), T);
}

int64_t side_embed_grouped(const int64_t* sids, int64_t N, int G, const uint8_t* limits,
                           const float* table, int64_t D, float* out, int check, int nthreads,
                           int64_t min_work) {
  side::RangeFn fn = side::embed_fn(G);
  if (fn == nullptr || N < 0 || D <= 0) return -2;
  if (N == 0) return -1;
  side::Args a{sids, nullptr, nullptr, limits, table, out, D, 0, check};
  const int T = (N * G * D < min_work) ? 1 : std::max(1, nthreads);
  return side::run_chunks(fn, a, side::even_cuts(N, T == 1 ? 1 : 4 * T), T);
}

}  // extern "C"

#else  // the torch.library build

#include <ATen/core/Tensor.h>
#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace side {

// Runs fn over the chunks on torch's intra-op thread pool; the smallest bad index, or -1.
int64_t run_chunks(RangeFn fn, const Args& a, const std::vector<int64_t>& cuts) {
  const int64_t C = (int64_t)cuts.size() - 1;
  std::vector<int64_t> bad(C, -1);
  if (C == 1) {
    bad[0] = fn(a, cuts[0], cuts[1]);
  } else {
    at::parallel_for(0, C, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) bad[c] = fn(a, cuts[c], cuts[c + 1]);
    });
  }
  return min_bad(bad);
}

int64_t chunks_for(int64_t work) {
  // 4 chunks per thread balance bags of different lengths; small calls stay on the caller.
  return work < kParallelMinWork ? 1 : 4 * std::max<int64_t>(1, at::get_num_threads());
}

std::string sid_error(const int64_t* sids, int64_t index, const uint8_t* lim, int64_t G) {
  const uint64_t v = (uint64_t)sids[index];
  std::string why;
  for (int64_t g = 0; g < G && why.empty(); ++g) {
    const uint64_t byte = (v >> (8 * g)) & 0xff;
    if (byte > lim[g])
      why = "byte group " + std::to_string(g) + " holds " + std::to_string(byte) + " > " +
            std::to_string((int)lim[g]);
  }
  if (why.empty()) why = "bytes above group " + std::to_string(G - 1) + " are not zero";
  return "invalid SID " + std::to_string((int64_t)v) + " at index " + std::to_string(index) +
         ": " + why;
}

void check_common(const at::Tensor& sids, const at::Tensor& table, const at::Tensor& limits) {
  TORCH_CHECK(sids.device().is_cpu() && table.device().is_cpu() && limits.device().is_cpu(),
              "torchrec_side CPU kernel: tensors must be on CPU");
  TORCH_CHECK_VALUE(sids.scalar_type() == at::kLong && sids.dim() == 1,
                    "torchrec_side: sids must be 1-D int64, got ", sids.scalar_type(), " ", sids.sizes());
  TORCH_CHECK_VALUE(table.scalar_type() == at::kFloat && table.dim() == 2 && table.size(1) > 0,
                    "torchrec_side: table must be 2-D float32 [G * 256, D], got ", table.scalar_type(),
                    " ", table.sizes());
  TORCH_CHECK_VALUE(limits.scalar_type() == at::kByte && limits.dim() == 1 && limits.numel() >= 1 &&
                        limits.numel() <= 8,
                    "torchrec_side: limits must be uint8 [G] with 1 <= G <= 8, got ",
                    limits.scalar_type(), " ", limits.sizes());
  TORCH_CHECK_VALUE(table.size(0) == limits.numel() * kBins, "torchrec_side: table has ", table.size(0),
                    " rows, expected G * 256 = ", limits.numel() * kBins);
}

at::Tensor pool_cpu(const at::Tensor& sids_in, const at::Tensor& offsets_in,
                    const std::optional<at::Tensor>& weights_in, const at::Tensor& table_in,
                    const at::Tensor& limits_in, bool check) {
  check_common(sids_in, table_in, limits_in);
  TORCH_CHECK_VALUE(offsets_in.dim() == 1 && offsets_in.numel() >= 1 &&
                        at::isIntegralType(offsets_in.scalar_type(), /*includeBool=*/false),
                    "torchrec_side: offsets must be 1-D integer [B + 1], got ", offsets_in.scalar_type(),
                    " ", offsets_in.sizes());
  const at::Tensor sids = sids_in.contiguous();
  const at::Tensor offsets = offsets_in.to(at::kLong).contiguous();
  const at::Tensor table = table_in.contiguous();
  const at::Tensor limits = limits_in.contiguous();
  const int64_t N = sids.numel(), B = offsets.numel() - 1, D = table.size(1);
  const int64_t* off = offsets.data_ptr<int64_t>();
  const int64_t bad_off = bad_offset(off, B, N);
  if (bad_off >= 0) {
    std::string why;
    if (bad_off == 0 && off[0] != 0) {
      why = "offsets[0] = " + std::to_string(off[0]) + "; bag offsets must start at 0";
    } else if (bad_off > 0 && off[bad_off] < off[bad_off - 1]) {
      why = "offsets decrease at position " + std::to_string(bad_off) + " (" +
            std::to_string(off[bad_off - 1]) + " -> " + std::to_string(off[bad_off]) +
            "); a negative length (e.g. a KeyedJaggedTensor built from negative lengths) is not a bag";
    } else {
      why = "offsets[-1] = " + std::to_string(off[B]) + " but there are " + std::to_string(N) +
            " values; the last offset must equal the number of values";
    }
    TORCH_CHECK_VALUE(false, "torchrec_side::sid_pool: bad offsets: ", why);
  }
  at::Tensor weights;
  const float* w_ptr = nullptr;
  if (weights_in.has_value()) {
    TORCH_CHECK_VALUE(weights_in->dim() == 1 && weights_in->numel() == N, "torchrec_side::sid_pool: weights have ",
                      weights_in->numel(), " entries for ", N, " SIDs");
    weights = weights_in->to(at::kFloat).contiguous();
    w_ptr = weights.data_ptr<float>();
  }
  at::Tensor out = at::empty({B, D}, table.options());
  if (B == 0) return out;
  const int G = (int)limits.numel();
  RangeFn fn = pool_fn(G, w_ptr != nullptr);
  Args a{sids.data_ptr<int64_t>(), off, w_ptr, limits.data_ptr<uint8_t>(), table.data_ptr<float>(),
         out.data_ptr<float>(), D, hist_min_events(D) * G, check ? 1 : 0};
  const int64_t bad = run_chunks(fn, a, bag_cuts(off, B, N, chunks_for(N * G)));
  TORCH_CHECK_VALUE(bad < 0, "torchrec_side::sid_pool: ", sid_error(a.sids, bad, a.limits, G));
  return out;
}

at::Tensor embed_cpu(const at::Tensor& sids_in, const at::Tensor& table_in, const at::Tensor& limits_in,
                     bool check) {
  check_common(sids_in, table_in, limits_in);
  const at::Tensor sids = sids_in.contiguous();
  const at::Tensor table = table_in.contiguous();
  const at::Tensor limits = limits_in.contiguous();
  const int64_t N = sids.numel(), D = table.size(1);
  at::Tensor out = at::empty({N, D}, table.options());
  if (N == 0) return out;
  const int G = (int)limits.numel();
  Args a{sids.data_ptr<int64_t>(), nullptr, nullptr, limits.data_ptr<uint8_t>(), table.data_ptr<float>(),
         out.data_ptr<float>(), D, 0, check ? 1 : 0};
  const int64_t bad = run_chunks(embed_fn(G), a, even_cuts(N, chunks_for(N * G * D / 64)));
  TORCH_CHECK_VALUE(bad < 0, "torchrec_side::sid_embed: ", sid_error(a.sids, bad, a.limits, G));
  return out;
}

}  // namespace side

// The schemas are defined in Python at import (torchrec_side/modules/ops/library.py).
TORCH_LIBRARY_IMPL(torchrec_side, CPU, m) {
  m.impl("sid_pool", &side::pool_cpu);
  m.impl("sid_embed", &side::embed_cpu);
}

#endif  // SIDE_NO_TORCH
