#include "tests/testing/temp_dir.h"

#include <stdlib.h>

#include <filesystem>

#include "common/logging.h"

namespace ftune::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ =
      std::string(base != nullptr ? base : "/tmp") + "/ftune-test-XXXXXX";
  FTUNE_CHECK(mkdtemp(templ.data()) != nullptr) << "mkdtemp " << templ;
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace ftune::testing
