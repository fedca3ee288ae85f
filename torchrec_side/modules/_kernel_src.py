# pyre-strict
"""C++ source of the CPU SIDE kernels (compiled on first use by :mod:`torchrec_side.modules._kernels`).

Kept as a Python string so it ships inside the wheel without package-data rules. The code is plain
C++17 with an ``extern "C"`` interface taking raw pointers (called through ``ctypes``, which releases
the GIL); it has no dependency on torch headers, so it compiles in about a second.

Kernels (``G`` byte groups, ``D`` embedding width, tables ``[G * 256, D]`` float32 with zero rows
for byte values a group never uses):

* ``side_pool_grouped``: pooled sum over bags. Long bags (``n * G >= hist_min``) build a per-bag
  histogram of the ``G * 256`` byte bins in L1 (int32 counts, or float32 weighted), then add
  ``count * row`` for each non-empty bin; short bags add the rows directly.
* ``side_embed_grouped``: per-event embeddings ``out[i] = sum_g table[g * 256 + byte_g(sid_i)]``.

Threads: built with ``-fopenmp`` (the default where torch uses GNU OpenMP), chunks (4 per thread) run
in an OpenMP loop on torch's own libgomp worker threads. Otherwise the calling thread plus detached
``std::thread`` helpers take chunks from a shared counter; the caller never waits for a helper that
has not started (on a busy machine a new thread can wait milliseconds to be scheduled).

Both validate the bytes on the fly when ``check`` is set (byte ``g`` at most ``limits[g]``, unused high
bytes zero) and return the smallest bad event index, or -1.
"""

KERNEL_VERSION = 7

SOURCE = r"""
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(SIDE_NO_CLONES)
#define SIDE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIDE_CLONES
#endif

namespace {

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

// true if sid v is invalid for G groups
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
        // Unweighted: validation is folded into the histogram (no extra pass over the events):
        // an invalid byte lands in a bin above its group's limit, a stray high byte shows in `orv`.
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

// Runs fn over the chunks [cuts[c], cuts[c+1]) on the calling thread plus up to nthreads - 1 detached
// helpers, all taking chunks from a shared counter. The caller waits only for chunks that were
// *taken*: a helper the OS has not scheduled yet (common on a busy machine) is never waited for; when
// it does start it finds no chunk left and exits without touching the caller's buffers.
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

void work(Job& j) {
  for (int c = j.next.fetch_add(1); c < j.C; c = j.next.fetch_add(1)) {
    j.bad[c] = j.fn(j.a, j.cuts[c], j.cuts[c + 1]);
    j.done.fetch_add(1, std::memory_order_release);
  }
}

int64_t run_chunks(RangeFn fn, const Args& a, const std::vector<int64_t>& cuts, int nthreads) {
#ifdef _OPENMP
  // Built with -fopenmp, the library binds to the libgomp torch already loaded (same soname): the
  // chunks run on torch's own worker threads, which are awake (spinning) right after torch's ops,
  // instead of competing with them for the cores.
  if (nthreads > 1 && cuts.size() > 2) {
    const int C = (int)cuts.size() - 1;
    std::vector<int64_t> bad(C, -1);
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads)
    for (int c = 0; c < C; ++c) bad[c] = fn(a, cuts[c], cuts[c + 1]);
    int64_t first = -1;
    for (int c = 0; c < C; ++c)
      if (bad[c] >= 0 && (first < 0 || bad[c] < first)) first = bad[c];
    return first;
  }
#endif
  auto j = std::make_shared<Job>();
  j->fn = fn;
  j->a = a;
  j->cuts = cuts;
  j->C = (int)cuts.size() - 1;
  j->bad.assign(j->C, -1);
  const int helpers = std::min(nthreads, j->C) - 1;
  for (int t = 0; t < helpers; ++t) {
    try {
      std::thread([j]() { work(*j); }).detach();
    } catch (...) {
      break;  // no thread available: the caller does the rest
    }
  }
  work(*j);
  while (j->done.load(std::memory_order_acquire) < j->C) std::this_thread::yield();
  int64_t first = -1;
  for (int c = 0; c < j->C; ++c)
    if (j->bad[c] >= 0 && (first < 0 || j->bad[c] < first)) first = j->bad[c];
  return first;
}

}  // namespace

extern "C" {

int side_kernel_version() { return 7; }

// Returns -2 on bad arguments, -1 if all SIDs are valid (or check == 0), else the first bad index.
int64_t side_pool_grouped(const int64_t* sids, const int64_t* offsets, int64_t B, const float* weights,
                          int G, const uint8_t* limits, const float* table, int64_t D, float* out,
                          int check, int64_t hist_min, int nthreads, int64_t min_work) {
  RangeFn fn = pool_fn(G, weights != nullptr);
  if (fn == nullptr || B < 0 || D <= 0) return -2;
  Args a{sids, offsets, weights, limits, table, out, D, hist_min, check};
  const int64_t total = offsets[B] - offsets[0];
  int T = std::max(1, nthreads);
  if (total * G < min_work) T = 1;
  // 4 chunks per thread, balanced by events (+1 per bag for its fixed cost)
  const int C = (int)std::min<int64_t>(T == 1 ? 1 : 4 * T, std::max<int64_t>(B, 1));
  std::vector<int64_t> cuts(C + 1, 0);
  cuts[C] = B;
  for (int c = 1; c < C; ++c) {
    const int64_t target = offsets[0] + (total + B) * c / C;
    int64_t lo = cuts[c - 1], hi = B;
    while (lo < hi) {
      int64_t mid = (lo + hi) / 2;
      if (offsets[mid] + mid < target) lo = mid + 1; else hi = mid;
    }
    cuts[c] = lo;
  }
  return run_chunks(fn, a, cuts, T);
}

int64_t side_embed_grouped(const int64_t* sids, int64_t N, int G, const uint8_t* limits,
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
  return run_chunks(fn, a, cuts, T);
}

}  // extern "C"
"""
