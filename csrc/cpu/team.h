// A team of intra-op threads that stays together for a whole time loop
// and meets at a barrier between steps, instead of opening a parallel
// region per step.
//
// At a small batch a step's arithmetic takes a few microseconds, about
// what waking the pool's threads for a parallel region costs; and each
// region may hand a thread other units, whose weights then come from L3.
// A team is one region for the whole loop: worker w always takes the same
// units (so its slice of W_hh stays in its own L2), and the workers only
// wait for each other at a barrier, a shared counter that each spins on.
//
// The barrier needs every worker to run at the same time. at::parallel_for
// gives that under OpenMP, where each chunk of the range goes to its own
// thread of the team; a thread given several workers' chunk (fewer
// threads than asked for, or a nested region, which runs all of them on
// the calling thread) arrives for all of them at once. ATen's own thread
// pool may queue chunks behind one another, so without OpenMP a team has
// one worker.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <cstdint>
#include <thread>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

namespace fusedrnn::cpu {

class TeamBarrier {
 public:
  explicit TeamBarrier(int64_t workers) : workers_(workers) {}

  // Arrives for `count` workers and returns once all of them have arrived.
  // What a worker wrote before arriving is visible to every worker after.
  void arrive_and_wait(int64_t count) {
    const int64_t generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(count, std::memory_order_acq_rel) + count ==
        workers_) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
      return;
    }
    // Spin for about the length of a step, then yield the core: on a
    // loaded machine a worker may be waiting for one that is not running.
    constexpr int kSpinsBeforeYield = 1 << 14;
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == generation) {
      if (++spins < kSpinsBeforeYield) {
#if defined(__x86_64__) || defined(_M_X64)
        _mm_pause();
#endif
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  const int64_t workers_;
  std::atomic<int64_t> arrived_{0};
  std::atomic<int64_t> generation_{0};
};

// Workers a team can have here: the intra-op threads under OpenMP, one
// elsewhere (see above).
inline int64_t team_workers() {
#if AT_PARALLEL_OPENMP
  return at::in_parallel_region() ? 1 : at::get_num_threads();
#else
  return 1;
#endif
}

// body(w0, w1, barrier) on every thread of a team of `workers`, for the
// workers [w0, w1) that thread runs; it calls barrier.arrive_and_wait(w1 -
// w0) at each meeting. The body must not throw: a worker that left early
// would leave the others waiting.
template <class Body>
void run_team(int64_t workers, const Body& body) {
  TeamBarrier barrier(workers);
  at::parallel_for(0, workers, 1, [&](int64_t w0, int64_t w1) {
    body(w0, w1, barrier);
  });
}

}  // namespace fusedrnn::cpu
