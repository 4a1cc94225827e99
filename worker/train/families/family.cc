#include "worker/train/families/family.h"

namespace ftune::train {

// One line per family (each defined in its own file).
extern const Family kLlamaFamily;
extern const Family kQwen3Family;
extern const Family kPhi3Family;
extern const Family kGemma2Family;
extern const Family kGpt2Family;

const std::vector<const Family*>& Families() {
  static const auto* families = new std::vector<const Family*>{
      &kLlamaFamily, &kQwen3Family, &kPhi3Family, &kGemma2Family, &kGpt2Family};
  return *families;
}

const Family* FindFamily(absl::string_view architecture) {
  for (const Family* f : Families()) {
    for (const std::string& a : f->architectures)
      if (a == architecture) return f;
  }
  return nullptr;
}

}  // namespace ftune::train
