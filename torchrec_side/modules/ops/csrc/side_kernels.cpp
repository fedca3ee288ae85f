// SIDE CPU kernels: pooled and per-event embeddings of byte-grouped packed SIDs.
//
// One source, two builds (torchrec_side/modules/ops/cpu_kernel.py):
//   * the default build registers the ops `torchrec_side::sid_pool_grouped` and
//     `torchrec_side::sid_embed_grouped` with torch.library (TORCH_LIBRARY below); it is built by
//     torch.utils.cpp_extension.load, and torch.compile / torch.export see the ops through their
//     fake kernels (registered from Python);
//   * with -DSIDE_NO_TORCH it is a plain shared library with an extern "C" interface (no torch
//     headers, compiles in about a second), kept as the ctypes baseline the lookup benchmark
//     compares against (torchrec_side/modules/_kernels.py).
//
// Tables are [G * 256, D] float32 (row g * 256 + v: group g's decoded value v, zero rows for byte
// values the group never uses). Pooling: bags with n * G >= hist_min events build a per-bag
// histogram of the G * 256 byte bins in L1 (int32 counts, or float32 weighted), then add
// count * row for each non-empty bin; shorter bags add rows directly. Bytes are validated on the fly
// when `check` is set (byte g at most limits[g], unused high bytes zero).
// See docs/design.md, section 5 (SIDE) and section 8 (speed notes).

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SIDE_NO_CLONES)
#define SIDE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIDE_CLONES
#endif

namespace side {

constexpr int kBins = 256;

inline void axpy(float* __restrict o, const float* __restrict r, float a, int64_t D) {
  for (int64_t d = 0; d < D; ++d) o[d] += a * r[d];
}
inline void add(float* __restrict o, const float* __restrict r, int64_t D) {
  for (int64_t d = 0; d < D; ++d) o[d] += r[d];
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

template <int G, bool W>
SIDE_CLONES int64_t pool_range(const Args& a, int64_t b0, int64_t b1) {
  const int64_t D = a.D;
  alignas(64) int32_t icnt[G * kBins];
  alignas(64) float fcnt[G * kBins];
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t s = a.offsets[b], e = a.offsets[b + 1];
    float* o = a.out + b * D;
    std::memset(o, 0, sizeof(float) * D);
    if (e <= s) continue;
    if ((e - s) * G >= a.hist_min) {
      if (W) {
        if (a.check) {
          uint64_t acc = 0;
          for (int64_t i = s; i < e; ++i) acc |= bad_sid<G>((uint64_t)a.sids[i], a.limits);
          if (acc) return first_bad<G>(a, s, e);
        }
        std::memset(fcnt, 0, sizeof(fcnt));
        for (int64_t i = s; i < e; ++i) {
          const uint64_t v = (uint64_t)a.sids[i];
          const float w = a.weights[i];
          for (int g = 0; g < G; ++g) fcnt[g * kBins + ((v >> (8 * g)) & 0xff)] += w;
        }
        for (int k = 0; k < G * kBins; ++k)
          if (fcnt[k] != 0.0f) axpy(o, a.table + (int64_t)k * D, fcnt[k], D);
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
        for (int k = 0; k < G * kBins; ++k)
          if (icnt[k] != 0) axpy(o, a.table + (int64_t)k * D, (float)icnt[k], D);
      }
    } else {
      if (a.check) {
        bool bad = false;
        for (int64_t i = s; i < e; ++i) bad |= bad_sid<G>((uint64_t)a.sids[i], a.limits);
        if (bad) return first_bad<G>(a, s, e);
      }
      for (int64_t i = s; i < e; ++i) {
        const uint64_t v = (uint64_t)a.sids[i];
        if (W) {
          const float w = a.weights[i];
          for (int g = 0; g < G; ++g)
            axpy(o, a.table + (int64_t)(g * kBins + ((v >> (8 * g)) & 0xff)) * D, w, D);
        } else {
          for (int g = 0; g < G; ++g)
            add(o, a.table + (int64_t)(g * kBins + ((v >> (8 * g)) & 0xff)) * D, D);
        }
      }
    }
  }
  return -1;
}

template <int G>
SIDE_CLONES int64_t embed_range(const Args& a, int64_t i0, int64_t i1) {
  const int64_t D = a.D;
  for (int64_t i = i0; i < i1; ++i) {
    const uint64_t v = (uint64_t)a.sids[i];
    if (a.check && bad_sid<G>(v, a.limits)) return i;
    float* o = a.out + i * D;
    const float* r0 = a.table + (int64_t)(v & 0xff) * D;
    for (int64_t d = 0; d < D; ++d) o[d] = r0[d];
    for (int g = 1; g < G; ++g) add(o, a.table + (int64_t)(g * kBins + ((v >> (8 * g)) & 0xff)) * D, D);
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

// Chunks [cuts[c], cuts[c+1]) run on the calling thread plus up to nthreads - 1 helpers taking chunks
// from a shared counter. With OpenMP (-fopenmp, sharing torch's libgomp) an OpenMP loop on torch's
// worker threads; otherwise detached std::thread helpers, and the caller waits only for chunks that
// were taken (a helper the OS has not scheduled yet is never waited for).
// Returns the smallest bad index any chunk reported, or -1.
struct Job {
  RangeFn fn;
  Args a;
  std::vector<int64_t> cuts;
  std::vector<int64_t> bad;
  std::atomic<int> next{0};
  std::atomic<int> done{0};
  int C = 0;
};

inline void work(Job& j) {
  for (int c = j.next.fetch_add(1); c < j.C; c = j.next.fetch_add(1)) {
    j.bad[c] = j.fn(j.a, j.cuts[c], j.cuts[c + 1]);
    j.done.fetch_add(1, std::memory_order_release);
  }
}

inline int64_t run_chunks(RangeFn fn, const Args& a, const std::vector<int64_t>& cuts, int nthreads) {
  const int C = (int)cuts.size() - 1;
  if (nthreads <= 1 || C <= 1) {
    int64_t first = -1;
    for (int c = 0; c < C && first < 0; ++c) first = fn(a, cuts[c], cuts[c + 1]);
    return first;
  }
#ifdef _OPENMP
  {
    std::vector<int64_t> bad(C, -1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int c = 0; c < C; ++c) bad[c] = fn(a, cuts[c], cuts[c + 1]);
    int64_t first = -1;
    for (int c = 0; c < C; ++c)
      if (bad[c] >= 0 && (first < 0 || bad[c] < first)) first = bad[c];
    return first;
  }
#else
  auto j = std::make_shared<Job>();
  j->fn = fn;
  j->a = a;
  j->cuts = cuts;
  j->C = C;
  j->bad.assign(C, -1);
  const int helpers = std::min(nthreads, C) - 1;
  for (int t = 0; t < helpers; ++t) {
    try {
      std::thread([j]() { work(*j); }).detach();
    } catch (...) {
      break;  // no thread available: the caller does the rest
    }
  }
  work(*j);
  while (j->done.load(std::memory_order_acquire) < C) std::this_thread::yield();
  int64_t first = -1;
  for (int c = 0; c < C; ++c)
    if (j->bad[c] >= 0 && (first < 0 || j->bad[c] < first)) first = j->bad[c];
  return first;
#endif
}

// Offsets must start at 0, never decrease and end at N. Returns -1 if they do, else the first bad
// position (B + 1 for a wrong last offset... reported as B).
inline int64_t bad_offset(const int64_t* offsets, int64_t B, int64_t N) {
  if (offsets[0] != 0) return 0;
  for (int64_t b = 0; b < B; ++b)
    if (offsets[b + 1] < offsets[b]) return b + 1;
  if (offsets[B] != N) return B;
  return -1;
}

// -2: bad arguments; -3: bad offsets; -1: all SIDs valid (or check == 0); else first bad SID index.
inline int64_t pool_grouped(const int64_t* sids, int64_t N, const int64_t* offsets, int64_t B,
                            const float* weights, int G, const uint8_t* limits, const float* table,
                            int64_t D, float* out, int check, int64_t hist_min, int nthreads,
                            int64_t min_work) {
  RangeFn fn = pool_fn(G, weights != nullptr);
  if (fn == nullptr || B < 0 || D <= 0) return -2;
  if (bad_offset(offsets, B, N) >= 0) return -3;
  Args a{sids, offsets, weights, limits, table, out, D, hist_min, check};
  const int64_t total = N;
  int T = std::max(1, nthreads);
  if (total * G < min_work) T = 1;
  // 4 chunks per thread, balanced by events (+1 per bag for its fixed cost)
  const int C = (int)std::min<int64_t>(T == 1 ? 1 : 4 * T, std::max<int64_t>(B, 1));
  std::vector<int64_t> cuts(C + 1, 0);
  cuts[C] = B;
  for (int c = 1; c < C; ++c) {
    const int64_t target = (total + B) * c / C;
    int64_t lo = cuts[c - 1], hi = B;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (offsets[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    cuts[c] = lo;
  }
  if (B == 0) return -1;
  return run_chunks(fn, a, cuts, T);
}

inline int64_t embed_grouped(const int64_t* sids, int64_t N, int G, const uint8_t* limits,
                             const float* table, int64_t D, float* out, int check, int nthreads,
                             int64_t min_work) {
  RangeFn fn = embed_fn(G);
  if (fn == nullptr || N < 0 || D <= 0) return -2;
  Args a{sids, nullptr, nullptr, limits, table, out, D, 0, check};
  int T = std::max(1, nthreads);
  if (N * G * D < min_work) T = 1;
  const int C = (int)std::min<int64_t>(T == 1 ? 1 : 4 * T, std::max<int64_t>(N, 1));
  std::vector<int64_t> cuts(C + 1, 0);
  for (int c = 0; c <= C; ++c) cuts[c] = N * c / C;
  if (N == 0) return -1;
  return run_chunks(fn, a, cuts, T);
}

}  // namespace side

#ifdef SIDE_NO_TORCH

extern "C" {

int side_kernel_version() { return 8; }

int64_t side_pool_grouped(const int64_t* sids, int64_t N, const int64_t* offsets, int64_t B,
                          const float* weights, int G, const uint8_t* limits, const float* table,
                          int64_t D, float* out, int check, int64_t hist_min, int nthreads,
                          int64_t min_work) {
  return side::pool_grouped(sids, N, offsets, B, weights, G, limits, table, D, out, check, hist_min,
                            nthreads, min_work);
}

int64_t side_embed_grouped(const int64_t* sids, int64_t N, int G, const uint8_t* limits,
                           const float* table, int64_t D, float* out, int check, int nthreads,
                           int64_t min_work) {
  return side::embed_grouped(sids, N, G, limits, table, D, out, check, nthreads, min_work);
}

}  // extern "C"

#else  // the torch.library build

#include <ATen/core/Tensor.h>
#include <ATen/Functions.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace side {

constexpr int64_t kParallelMinWork = int64_t(1) << 15;

int resolve_threads(int64_t threads) {
  return threads > 0 ? (int)threads : std::max(1, at::get_num_threads());
}

std::string sid_error(const at::Tensor& sids, int64_t index, const at::Tensor& limits) {
  const uint64_t v = (uint64_t)sids.data_ptr<int64_t>()[index];
  const uint8_t* lim = limits.data_ptr<uint8_t>();
  const int64_t G = limits.numel();
  std::string why;
  for (int64_t g = 0; g < G && why.empty(); ++g) {
    const uint64_t byte = (v >> (8 * g)) & 0xff;
    if (byte > lim[g])
      why = "byte group " + std::to_string(g) + " holds " + std::to_string(byte) + " > " +
            std::to_string((int)lim[g]);
  }
  if (why.empty()) why = "bytes above group " + std::to_string(G - 1) + " are not zero";
  return "SIDE: invalid SID " + std::to_string((int64_t)v) + " at index " + std::to_string(index) +
         ": " + why;
}

void check_common(const at::Tensor& sids, const at::Tensor& table, const at::Tensor& limits) {
  TORCH_CHECK(sids.device().is_cpu() && table.device().is_cpu() && limits.device().is_cpu(),
              "SIDE CPU kernel: tensors must be on CPU");
  TORCH_CHECK(sids.scalar_type() == at::kLong && sids.dim() == 1,
              "SIDE CPU kernel: sids must be 1-D int64, got ", sids.scalar_type(), " ", sids.sizes());
  TORCH_CHECK(table.scalar_type() == at::kFloat && table.dim() == 2,
              "SIDE CPU kernel: table must be 2-D float32, got ", table.scalar_type(), " ", table.sizes());
  TORCH_CHECK(limits.scalar_type() == at::kByte && limits.dim() == 1 && limits.numel() >= 1 &&
                  limits.numel() <= 8,
              "SIDE CPU kernel: limits must be uint8 [G] with 1 <= G <= 8, got ", limits.sizes());
  TORCH_CHECK(table.size(0) == limits.numel() * kBins, "SIDE CPU kernel: table has ", table.size(0),
              " rows, expected G * 256 = ", limits.numel() * kBins);
}

at::Tensor pool_cpu(const at::Tensor& sids_in, const at::Tensor& offsets_in,
                    const std::optional<at::Tensor>& weights_in, const at::Tensor& table_in,
                    const at::Tensor& limits_in, bool check, int64_t hist_min, int64_t threads) {
  check_common(sids_in, table_in, limits_in);
  TORCH_CHECK(offsets_in.dim() == 1 && offsets_in.numel() >= 1,
              "SIDE CPU kernel: offsets must be 1-D [B + 1], got ", offsets_in.sizes());
  const at::Tensor sids = sids_in.contiguous();
  const at::Tensor offsets = offsets_in.to(at::kLong).contiguous();
  const at::Tensor table = table_in.contiguous();
  const at::Tensor limits = limits_in.contiguous();
  const int64_t N = sids.numel(), B = offsets.numel() - 1, D = table.size(1);
  const int64_t bad_off = bad_offset(offsets.data_ptr<int64_t>(), B, N);
  if (bad_off >= 0) {
    TORCH_CHECK_VALUE(false, "SIDE: bad offsets: offsets[", bad_off, "] = ",
                      offsets.data_ptr<int64_t>()[bad_off], "; offsets must start at 0, never "
                      "decrease and end at the number of values (", N, ")");
  }
  at::Tensor weights;
  const float* w_ptr = nullptr;
  if (weights_in.has_value()) {
    TORCH_CHECK_VALUE(weights_in->numel() == N, "SIDE: weights have ", weights_in->numel(),
                      " entries for ", N, " SIDs");
    weights = weights_in->to(at::kFloat).contiguous();
    w_ptr = weights.data_ptr<float>();
  }
  at::Tensor out = at::empty({B, D}, table.options());
  const int64_t bad = pool_grouped(sids.data_ptr<int64_t>(), N, offsets.data_ptr<int64_t>(), B, w_ptr,
                                   (int)limits.numel(), limits.data_ptr<uint8_t>(),
                                   table.data_ptr<float>(), D, out.data_ptr<float>(), check ? 1 : 0,
                                   hist_min, resolve_threads(threads), kParallelMinWork);
  TORCH_CHECK(bad != -2, "SIDE CPU kernel: bad arguments (G=", limits.numel(), ", D=", D, ")");
  TORCH_CHECK_VALUE(bad < 0, sid_error(sids, bad, limits));
  return out;
}

at::Tensor embed_cpu(const at::Tensor& sids_in, const at::Tensor& table_in, const at::Tensor& limits_in,
                     bool check, int64_t threads) {
  check_common(sids_in, table_in, limits_in);
  const at::Tensor sids = sids_in.contiguous();
  const at::Tensor table = table_in.contiguous();
  const at::Tensor limits = limits_in.contiguous();
  const int64_t N = sids.numel(), D = table.size(1);
  at::Tensor out = at::empty({N, D}, table.options());
  const int64_t bad = embed_grouped(sids.data_ptr<int64_t>(), N, (int)limits.numel(),
                                    limits.data_ptr<uint8_t>(), table.data_ptr<float>(), D,
                                    out.data_ptr<float>(), check ? 1 : 0, resolve_threads(threads),
                                    kParallelMinWork * 64);
  TORCH_CHECK(bad != -2, "SIDE CPU kernel: bad arguments (G=", limits.numel(), ", D=", D, ")");
  TORCH_CHECK_VALUE(bad < 0, sid_error(sids, bad, limits));
  return out;
}

int64_t kernel_version() { return 8; }

}  // namespace side

TORCH_LIBRARY(torchrec_side, m) {
  m.def("sid_pool_grouped(Tensor sids, Tensor offsets, Tensor? weights, Tensor table, Tensor limits, "
        "bool check, int hist_min, int threads) -> Tensor");
  m.def("sid_embed_grouped(Tensor sids, Tensor table, Tensor limits, bool check, int threads) -> Tensor");
}

TORCH_LIBRARY_IMPL(torchrec_side, CPU, m) {
  m.impl("sid_pool_grouped", &side::pool_cpu);
  m.impl("sid_embed_grouped", &side::embed_cpu);
}

#endif  // SIDE_NO_TORCH
