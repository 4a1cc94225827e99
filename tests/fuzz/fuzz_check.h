// FUZZ_CHECK(cond): a property a harness asserts; a violation aborts with
// the condition, which libFuzzer reports as a crash (and saves the input).
#ifndef FTUNE_TESTS_FUZZ_FUZZ_CHECK_H_
#define FTUNE_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                               \
  do {                                                                 \
    if (!(cond)) {                                                     \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK failed: %s\n", __FILE__, \
                   __LINE__, #cond);                                   \
      std::abort();                                                    \
    }                                                                  \
  } while (false)

#endif  // FTUNE_TESTS_FUZZ_FUZZ_CHECK_H_
