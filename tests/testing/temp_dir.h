// A fresh directory under $TMPDIR (or /tmp), removed with its contents when
// the object is destroyed. Not thread-safe.
#ifndef FTUNE_TESTS_TESTING_TEMP_DIR_H_
#define FTUNE_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace ftune::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace ftune::testing

#endif  // FTUNE_TESTS_TESTING_TEMP_DIR_H_
