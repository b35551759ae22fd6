#include "buffer_pool.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fusedrnn::cpu {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;

class RecyclingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    // Whole huge pages, so that a block fits every request of its size
    // class and the next call of the same shapes finds it.
    const size_t size = (n + kHugePage - 1) / kHugePage * kHugePage;
    void* block = take(size);
    if (block == nullptr) block = fresh(size);
    return {block, block, &release, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, size_t count) const override {
    default_copy_data(dest, src, count);
  }

 private:
  // The smallest free block of at least `size` bytes, unless it wastes more
  // than a quarter of itself (a shorter sequence may reuse a longer one's
  // block), or null.
  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto it = free_.lower_bound(size);
    if (it == free_.end() || it->first > size + size / 4) return nullptr;
    void* block = it->second;
    free_bytes_ -= it->first;
    free_.erase(it);
    return block;
  }

  void* fresh(size_t size) {
    void* block = std::aligned_alloc(kHugePage, size);
    TORCH_CHECK(block != nullptr, "fusedrnn: cannot allocate ", size,
                " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(block, size, MADV_HUGEPAGE);  // a hint: failure changes nothing
#endif
    std::lock_guard<std::mutex> lock(mutex_);
    sizes_[block] = size;
    return block;
  }

  // The deleter of every block: back to the free list, or to the OS once
  // the pool holds kMaxPooledBytes.
  static void release(void* block);

  std::mutex mutex_;
  std::unordered_map<void*, size_t> sizes_;  // every block handed out
  std::multimap<size_t, void*> free_;        // by size
  size_t free_bytes_ = 0;
};

// Never destroyed: tensors may die after static destructors ran (at
// interpreter exit), and their deleter still needs the pool.
RecyclingAllocator& pool() {
  static auto* allocator = new RecyclingAllocator();
  return *allocator;
}

void RecyclingAllocator::release(void* block) {
  RecyclingAllocator& self = pool();
  {
    std::lock_guard<std::mutex> lock(self.mutex_);
    const size_t size = self.sizes_.at(block);
    if (self.free_bytes_ + size <= size_t(kMaxPooledBytes)) {
      self.free_.emplace(size, block);
      self.free_bytes_ += size;
      return;
    }
    self.sizes_.erase(block);
  }
  std::free(block);
}

}  // namespace

at::Tensor pooled_empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_INTERNAL_ASSERT(options.device().is_cpu());
  const int64_t bytes =
      c10::multiply_integers(sizes) * int64_t(options.dtype().itemsize());
  if (bytes < kMinPooledBytes) return at::empty(sizes, options);
  return at::detail::empty_generic(sizes, &pool(),
                                   c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   options.dtype().toScalarType(),
                                   std::nullopt);
}

at::Tensor pooled_to(const at::Tensor& t, at::ScalarType dtype) {
  if (t.scalar_type() == dtype) return t;
  return pooled_empty(t.sizes(), t.options().dtype(dtype)).copy_(t);
}

}  // namespace fusedrnn::cpu
