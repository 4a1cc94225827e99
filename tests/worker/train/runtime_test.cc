// Process-level runtime settings of the trainer (worker/train/runtime.h).
// ctest runs each test in its own process, so changing malloc's settings
// here touches nothing else.
#include "worker/train/runtime.h"

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ftune::train {
namespace {

#if defined(__GLIBC__)
// A block far above glibc's mmap threshold comes from the heap, not from
// mmap, and freeing it does not hand the memory back to the kernel: the
// next step's tensors reuse it without page faults.
TEST(KeepFreedMemoryInProcessTest, LargeBlocksStayInTheHeap) {
  constexpr size_t kBig = size_t{256} << 20;
  {
    // glibc's default, for contrast: a 256 MB block is mmap'd.
    void* p = std::malloc(kBig);
    ASSERT_NE(p, nullptr);
    EXPECT_GE(mallinfo2().hblkhd, kBig);
    std::free(p);
    EXPECT_LT(mallinfo2().hblkhd, kBig);
  }
  ASSERT_TRUE(KeepFreedMemoryInProcess());
  void* p = std::malloc(kBig);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kBig);
  EXPECT_LT(mallinfo2().hblkhd, kBig);  // not mmap'd
  EXPECT_GE(mallinfo2().arena, kBig);   // from the heap
  std::free(p);
  EXPECT_GE(mallinfo2().arena, kBig);  // and kept after free
  // Reused: a second block of the same size does not grow the heap.
  const size_t arena = mallinfo2().arena;
  void* q = std::malloc(kBig);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(mallinfo2().arena, arena);
  std::free(q);
}
#endif

TEST(OpenMpSpinPolicyTest, NamesTheSetting) {
  unsetenv("OMP_WAIT_POLICY");
  setenv("GOMP_SPINCOUNT", "123", 1);
  EXPECT_EQ(OpenMpSpinPolicy(), "GOMP_SPINCOUNT=123");
  unsetenv("GOMP_SPINCOUNT");
  EXPECT_EQ(OpenMpSpinPolicy(), "libgomp default");
}

}  // namespace
}  // namespace ftune::train
