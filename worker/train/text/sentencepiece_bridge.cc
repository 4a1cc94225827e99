// Opens libftune_spm.so in its own link-map namespace and adapts its C ABI to
// SpModel (see the header for why it is a plugin).
#include "worker/train/text/sentencepiece_bridge.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>

namespace ftune::train::sp {
namespace {

struct Plugin {
  decltype(&ftune_spm_load) load = nullptr;
  decltype(&ftune_spm_free) free = nullptr;
  decltype(&ftune_spm_encode) encode = nullptr;
  decltype(&ftune_spm_decode) decode = nullptr;
  decltype(&ftune_spm_size) size = nullptr;
  decltype(&ftune_spm_piece) piece = nullptr;
  decltype(&ftune_spm_piece_to_id) piece_to_id = nullptr;
  decltype(&ftune_spm_special_ids) special_ids = nullptr;
  decltype(&ftune_spm_train) train = nullptr;
  std::string error;  // why it could not be opened; "" when it was
};

std::string ExecutableDir() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  std::string path(buf, static_cast<size_t>(n));
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

template <typename Fn>
bool Resolve(void* handle, const char* name, Fn* fn, std::string* missing) {
  *fn = reinterpret_cast<Fn>(dlsym(handle, name));
  if (*fn == nullptr) *missing += std::string(" ") + name;
  return *fn != nullptr;
}

Plugin* OpenPlugin() {
  auto* p = new Plugin;
  // Where to look, first hit wins: $FTUNE_SPM_PLUGIN, <exe dir>/../lib
  // (build/bin, build/tests and an install prefix all have one), the build
  // tree this binary came from, then the dynamic loader's search path.
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("FTUNE_SPM_PLUGIN"); env && *env)
    candidates.push_back(env);
  candidates.push_back(ExecutableDir() + "/../lib/libftune_spm.so");
#ifdef FTUNE_SPM_PLUGIN_BUILD_PATH
  candidates.push_back(FTUNE_SPM_PLUGIN_BUILD_PATH);
#endif
  candidates.push_back("libftune_spm.so");
  std::string tried;
  for (const auto& path : candidates) {
    void* handle = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* why = dlerror();
      tried += "\n  " + path + ": " + (why ? why : "unknown error");
      continue;
    }
    std::string missing;
    bool ok = Resolve(handle, "ftune_spm_load", &p->load, &missing);
    ok &= Resolve(handle, "ftune_spm_free", &p->free, &missing);
    ok &= Resolve(handle, "ftune_spm_encode", &p->encode, &missing);
    ok &= Resolve(handle, "ftune_spm_decode", &p->decode, &missing);
    ok &= Resolve(handle, "ftune_spm_size", &p->size, &missing);
    ok &= Resolve(handle, "ftune_spm_piece", &p->piece, &missing);
    ok &= Resolve(handle, "ftune_spm_piece_to_id", &p->piece_to_id, &missing);
    ok &= Resolve(handle, "ftune_spm_special_ids", &p->special_ids, &missing);
    ok &= Resolve(handle, "ftune_spm_train", &p->train, &missing);
    if (ok) return p;
    tried += "\n  " + path + ": missing" + missing;
    dlclose(handle);
  }
  p->load = nullptr;
  p->train = nullptr;
  p->error =
      "cannot load the SentencePiece plugin libftune_spm.so (set "
      "FTUNE_SPM_PLUGIN to its path); tried:" +
      tried;
  return p;
}

const Plugin& GetPlugin() {
  static const Plugin* plugin = OpenPlugin();  // never unloaded
  return *plugin;
}

class PluginModel final : public SpModel {
 public:
  PluginModel(const Plugin& p, void* handle) : p_(p), handle_(handle) {
    p_.special_ids(handle_, special_);
  }
  ~PluginModel() override { p_.free(handle_); }

  std::vector<int> Encode(std::string_view text,
                          bool add_dummy_prefix) const override {
    std::vector<int> ids(text.size() + 8);
    size_t n = p_.encode(handle_, text.data(), text.size(), add_dummy_prefix,
                         ids.data(), ids.size());
    if (n > ids.size()) {
      ids.resize(n);
      n = p_.encode(handle_, text.data(), text.size(), add_dummy_prefix,
                    ids.data(), ids.size());
    }
    ids.resize(n);
    return ids;
  }

  std::string Decode(const std::vector<int>& ids) const override {
    std::string text(ids.size() * 8 + 16, '\0');
    size_t n =
        p_.decode(handle_, ids.data(), ids.size(), text.data(), text.size());
    if (n > text.size()) {
      text.resize(n);
      n = p_.decode(handle_, ids.data(), ids.size(), text.data(), text.size());
    }
    text.resize(n);
    return text;
  }

  int size() const override { return p_.size(handle_); }

  Piece piece(int id) const override {
    Piece out;
    int type = 0;
    char buf[64];
    const size_t n = p_.piece(handle_, id, buf, sizeof(buf), &out.score, &type);
    if (n <= sizeof(buf)) {
      out.text.assign(buf, n);
    } else {
      out.text.resize(n);
      p_.piece(handle_, id, out.text.data(), n, &out.score, &type);
    }
    out.type = static_cast<PieceType>(type);
    return out;
  }

  int PieceToId(std::string_view piece) const override {
    return p_.piece_to_id(handle_, piece.data(), piece.size());
  }

  int bos_id() const override { return special_[0]; }
  int eos_id() const override { return special_[1]; }
  int unk_id() const override { return special_[2]; }
  int pad_id() const override { return special_[3]; }

 private:
  const Plugin& p_;
  void* handle_;
  int special_[4];
};

}  // namespace

std::unique_ptr<SpModel> SpModel::Load(const std::string& serialized,
                                       std::string* error) {
  const Plugin& p = GetPlugin();
  if (p.load == nullptr) {
    *error = p.error;
    return nullptr;
  }
  char buf[1024] = {0};
  void* handle = p.load(serialized.data(), serialized.size(), buf, sizeof(buf));
  if (handle == nullptr) {
    *error = buf;
    return nullptr;
  }
  return std::make_unique<PluginModel>(p, handle);
}

std::string TrainSentencePiece(const std::string& args) {
  const Plugin& p = GetPlugin();
  if (p.train == nullptr) return p.error;
  char buf[1024] = {0};
  return p.train(args.c_str(), buf, sizeof(buf)) == 0 ? "" : std::string(buf);
}

}  // namespace ftune::train::sp
