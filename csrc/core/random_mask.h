// Bernoulli masks for the regularization inside the recurrence (dropout
// and zoneout masks, regularization.h), the same bits on the CPU and on
// CUDA for the same seed.
//
// Unit i of a mask is SplitMix64's i-th output (Steele, Lea and Flood
// 2014: a Weyl sequence through a 64-bit mixing function) from a 64-bit
// seed that Python draws from torch's generator, so torch.manual_seed
// reproduces the masks. Every unit is computed on its own from (seed, i):
// the work splits over any number of threads with the same result, and
// each unit costs a few integer instructions instead of a call into the
// generator's sequential Mersenne Twister (torch's bernoulli_).
#pragma once

#include <cstdint>

#include "../cells/activations.h"  // FUSEDRNN_HOST_DEVICE

namespace fusedrnn {

// The threshold of probability p (of true) on the top 32 bits of a unit's
// random word: a unit is true below it. p = 1 gives 2^32: always true.
inline uint64_t mask_threshold(double p) {
  if (!(p > 0)) return 0;
  if (p >= 1) return uint64_t(1) << 32;
  return static_cast<uint64_t>(p * 4294967296.0);
}

FUSEDRNN_HOST_DEVICE uint64_t splitmix64(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

FUSEDRNN_HOST_DEVICE bool mask_unit(uint64_t seed, uint64_t threshold,
                                    uint64_t i) {
  return (splitmix64(seed, i) >> 32) < threshold;
}

}  // namespace fusedrnn
