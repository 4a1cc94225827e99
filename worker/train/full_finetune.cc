#include "worker/train/full_finetune.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/safetensors.h"
#include "common/sha256.h"
#include "common/status.h"
#include "worker/train/adapter.h"

namespace ftune::train {
namespace {

// The names of the plain files directly in `dir`, sorted.
std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

absl::Status WriteWeights(const std::string& dir, Model& model,
                          int64_t shard_bytes) {
  std::vector<SafetensorsWriter> shards(1);
  for (const auto& [name, t] : model.MergedStateDict()) {
    const int64_t bytes = t.numel() * t.element_size();
    if (shards.back().size() > 0 &&
        static_cast<int64_t>(shards.back().data_bytes()) + bytes >
            shard_bytes) {
      shards.emplace_back();
    }
    FTUNE_RETURN_IF_ERROR(AddTensor(shards.back(), name, t));
  }
  for (SafetensorsWriter& w : shards) w.SetMetadata("format", "pt");
  return WriteShardedSafetensors(dir, shards);
}

}  // namespace

absl::Status PublishFullModel(const std::string& base_dir,
                              const std::string& output_dir, Model& model,
                              nlohmann::json manifest_extra,
                              int64_t shard_bytes) {
  if (access(output_dir.c_str(), F_OK) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("output_dir ", output_dir, " already exists"));
  }
  const std::string staging = absl::StrCat(output_dir, ".tmp-", NewId("stage"));
  // What a crashed earlier attempt left half-written.
  FTUNE_RETURN_IF_ERROR(RemovePublishLeftovers(output_dir));
  FTUNE_RETURN_IF_ERROR(MakeDirs(staging));
  absl::Status st = [&]() -> absl::Status {
    FTUNE_RETURN_IF_ERROR(WriteWeights(staging, model, shard_bytes));
    FTUNE_ASSIGN_OR_RETURN(std::string config,
                           ReadFile(JoinPath(base_dir, "config.json")));
    FTUNE_RETURN_IF_ERROR(
        WriteFileAtomically(JoinPath(staging, "config.json"), config));
    for (const char* f : kCopiedBaseFiles) {
      const std::string from = JoinPath(base_dir, f);
      if (access(from.c_str(), F_OK) != 0) continue;
      FTUNE_ASSIGN_OR_RETURN(std::string bytes, ReadFile(from));
      FTUNE_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(staging, f), bytes));
    }
    nlohmann::json files = nlohmann::json::object();
    for (const std::string& f : FilesIn(staging)) {
      FTUNE_ASSIGN_OR_RETURN(std::string sha, Sha256File(JoinPath(staging, f)));
      files[f] = {{"sha256", sha}};
    }
    nlohmann::json manifest = std::move(manifest_extra);
    manifest["format"] = "ftune-model";
    manifest["format_version"] = 1;
    manifest["files"] = files;
    FTUNE_RETURN_IF_ERROR(WriteFileAtomically(
        JoinPath(staging, "ftune_manifest.json"), manifest.dump(2)));
    return PublishDirectory(staging, output_dir);
  }();
  if (!st.ok()) (void)RemoveAll(staging);
  return st;
}

}  // namespace ftune::train
