// safetensors reader/writer. The header is untrusted input: every check is
// done before a view is handed out, so later code can index data freely.
#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dirent.h>
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace ftune {
namespace {

// Headers larger than this are refused (the format's reference
// implementation uses the same bound).
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeInfo {
  StDType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {StDType::kF64, "F64", 8}, {StDType::kF32, "F32", 4},
    {StDType::kF16, "F16", 2}, {StDType::kBF16, "BF16", 2},
    {StDType::kI64, "I64", 8}, {StDType::kI32, "I32", 4},
    {StDType::kI16, "I16", 2}, {StDType::kI8, "I8", 1},
    {StDType::kU8, "U8", 1},   {StDType::kBool, "BOOL", 1},
};

absl::Status Invalid(absl::string_view file, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("safetensors ", file, ": ", what));
}

}  // namespace

absl::string_view StDTypeName(StDType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d.name;
  return "?";
}

size_t StDTypeSize(StDType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d.size;
  return 0;
}

absl::StatusOr<StDType> ParseStDType(absl::string_view name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.dtype;
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported safetensors dtype \"", name, "\""));
}

int64_t StTensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------
// SafetensorsFile

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(
    const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    std::string msg = absl::StrCat("open ", path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::InternalError(msg);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return absl::InternalError(
        absl::StrCat("stat ", path, ": ", std::strerror(err)));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      return absl::InternalError(
          absl::StrCat("mmap ", path, ": ", std::strerror(err)));
    }
    file->mapping_ = p;
    file->base_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping keeps the file alive
  FTUNE_RETURN_IF_ERROR(file->Parse());
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::string bytes, const std::string& label) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = label;
  file->owned_ = std::move(bytes);
  file->base_ = reinterpret_cast<const uint8_t*>(file->owned_.data());
  file->size_ = file->owned_.size();
  FTUNE_RETURN_IF_ERROR(file->Parse());
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, size_);
}

absl::Status SafetensorsFile::Parse() {
  if (size_ < 8) {
    return Invalid(path_, absl::StrCat("file is ", size_,
                                       " bytes, shorter than the 8-byte "
                                       "header length"));
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base_[i];
  if (header_len > kMaxHeaderBytes) {
    return Invalid(path_,
                   absl::StrCat("header length ", header_len,
                                " exceeds the limit of ", kMaxHeaderBytes));
  }
  if (header_len > size_ - 8) {
    return Invalid(path_, absl::StrCat("header length ", header_len,
                                       " runs past the end of the file (",
                                       size_, " bytes)"));
  }
  const char* hdr = reinterpret_cast<const char*>(base_ + 8);
  nlohmann::json j = nlohmann::json::parse(hdr, hdr + header_len, nullptr,
                                           /*allow_exceptions=*/false);
  if (j.is_discarded()) return Invalid(path_, "header is not valid JSON");
  if (!j.is_object()) return Invalid(path_, "header is not a JSON object");

  const uint8_t* data = base_ + 8 + header_len;
  const uint64_t data_size = size_ - 8 - header_len;
  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object())
        return Invalid(path_, "__metadata__ is not an object");
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string()) {
          return Invalid(path_, absl::StrCat("__metadata__ value for \"",
                                             m.key(), "\" is not a string"));
        }
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](absl::string_view what) {
      return Invalid(path_, absl::StrCat("tensor \"", name, "\": ", what));
    };
    if (!e.is_object()) return bad("entry is not an object");
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) return bad("missing string dtype");
    if (sh == e.end() || !sh->is_array()) return bad("missing shape array");
    if (off == e.end() || !off->is_array() || off->size() != 2)
      return bad("data_offsets must be an array [begin, end]");
    StTensorView v;
    v.name = name;
    auto dtype = ParseStDType(dt->get<std::string>());
    if (!dtype.ok()) return bad(dtype.status().message());
    v.dtype = *dtype;
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        return bad("shape entries must be non-negative integers");
      uint64_t dim = d.get<uint64_t>();
      if (dim != 0 && numel > (uint64_t{1} << 62) / dim)
        return bad("shape overflows");
      numel *= dim;
      v.shape.push_back(static_cast<int64_t>(dim));
    }
    for (const auto& o : *off)
      if (!o.is_number_unsigned() &&
          !(o.is_number_integer() && o.get<int64_t>() >= 0))
        return bad("data_offsets must be non-negative integers");
    uint64_t begin = (*off)[0].get<uint64_t>();
    uint64_t end = (*off)[1].get<uint64_t>();
    if (begin > end)
      return bad(
          absl::StrCat("data_offsets begin ", begin, " is after end ", end));
    if (end > data_size)
      return bad(absl::StrCat("data_offsets end ", end,
                              " is past the data buffer (", data_size,
                              " bytes)"));
    uint64_t expect = numel * StDTypeSize(v.dtype);
    if (end - begin != expect)
      return bad(absl::StrCat("holds ", end - begin, " bytes but dtype ",
                              StDTypeName(v.dtype), " and shape need ",
                              expect));
    v.data = data + begin;
    v.size_bytes = static_cast<size_t>(end - begin);
    auto [pos, inserted] = tensors_.emplace(name, std::move(v));
    (void)inserted;
    ranges.push_back({begin, end, &pos->first});
  }
  // No overlaps and no holes: sorted ranges must tile [0, data_size).
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t cursor = 0;
  for (const Range& r : ranges) {
    if (r.begin < cursor) {
      return Invalid(path_, absl::StrCat("tensor \"", *r.name,
                                         "\" overlaps the previous tensor (",
                                         "starts at ", r.begin,
                                         ", previous "
                                         "ends at ",
                                         cursor, ")"));
    }
    if (r.begin > cursor) {
      return Invalid(path_, absl::StrCat("hole in the data buffer before "
                                         "tensor \"",
                                         *r.name, "\" (bytes ", cursor, "..",
                                         r.begin, ")"));
    }
    cursor = r.end;
  }
  if (cursor != data_size) {
    return Invalid(path_, absl::StrCat("data buffer has ", data_size - cursor,
                                       " trailing bytes not owned by any "
                                       "tensor"));
  }
  return absl::OkStatus();
}

std::vector<std::string> SafetensorsFile::Names() const {
  std::vector<std::string> names;
  names.reserve(tensors_.size());
  for (const auto& [name, v] : tensors_) names.push_back(name);
  return names;
}

bool SafetensorsFile::Contains(const std::string& name) const {
  return tensors_.count(name) > 0;
}

absl::StatusOr<StTensorView> SafetensorsFile::Get(
    const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor \"", name, "\" not found in ", path_));
  }
  return it->second;
}

// ---------------------------------------------------------------------------
// SafetensorsCheckpoint

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>>
SafetensorsCheckpoint::Open(const std::string& dir) {
  auto ckpt = std::make_unique<SafetensorsCheckpoint>();
  const std::string index_path = JoinPath(dir, "model.safetensors.index.json");
  std::vector<std::string> shard_names;
  nlohmann::json weight_map;
  auto index_text = ReadFile(index_path);
  if (index_text.ok()) {
    nlohmann::json j = nlohmann::json::parse(*index_text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
        !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          index_path, ": not a JSON object with a \"weight_map\" object"));
    }
    weight_map = j["weight_map"];
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      if (!it.value().is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(
            index_path, ": weight_map[\"", it.key(), "\"] is not a string"));
      }
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": shard name \"", shard,
                         "\" must be a plain file name"));
      }
      if (std::find(shard_names.begin(), shard_names.end(), shard) ==
          shard_names.end()) {
        shard_names.push_back(shard);
      }
    }
  } else if (index_text.status().code() == absl::StatusCode::kNotFound) {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("model directory ", dir, ": ", std::strerror(errno)));
    }
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (absl::EndsWith(n, ".safetensors")) shard_names.push_back(n);
    }
    ::closedir(d);
    std::sort(shard_names.begin(), shard_names.end());
    if (shard_names.empty()) {
      return absl::NotFoundError(
          absl::StrCat("no *.safetensors files in ", dir));
    }
  } else {
    return index_text.status();
  }
  for (const std::string& shard : shard_names) {
    FTUNE_ASSIGN_OR_RETURN(auto file,
                           SafetensorsFile::Open(JoinPath(dir, shard)));
    for (const std::string& name : file->Names()) {
      if (!weight_map.is_null()) {
        auto w = weight_map.find(name);
        if (w == weight_map.end() || w->get<std::string>() != shard) continue;
      } else if (ckpt->index_.count(name)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor \"", name, "\" appears in more than one file in ", dir));
      }
      ckpt->index_[name] = file.get();
    }
    ckpt->files_.push_back(std::move(file));
  }
  if (!weight_map.is_null()) {
    for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
      if (!ckpt->index_.count(it.key())) {
        return absl::InvalidArgumentError(absl::StrCat(
            index_path, ": tensor \"", it.key(), "\" is mapped to ",
            it.value().get<std::string>(), " which does not contain it"));
      }
    }
  }
  return ckpt;
}

std::vector<std::string> SafetensorsCheckpoint::Names() const {
  std::vector<std::string> names;
  for (const auto& [n, f] : index_) names.push_back(n);
  return names;
}

bool SafetensorsCheckpoint::Contains(const std::string& name) const {
  return index_.count(name) > 0;
}

absl::StatusOr<StTensorView> SafetensorsCheckpoint::Get(
    const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return absl::NotFoundError(
        absl::StrCat("tensor \"", name, "\" not found in the checkpoint"));
  }
  return it->second->Get(name);
}

// ---------------------------------------------------------------------------
// Writer

absl::Status SafetensorsWriter::Add(const std::string& name, StDType dtype,
                                    std::vector<int64_t> shape,
                                    const void* data, size_t size_bytes) {
  if (name.empty() || name == "__metadata__") {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid tensor name \"", name, "\""));
  }
  if (tensors_.count(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\" added twice"));
  }
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\": negative dimension"));
    }
    numel *= d;
  }
  if (static_cast<size_t>(numel) * StDTypeSize(dtype) != size_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\": ", size_bytes,
                     " bytes given, shape needs ", numel * StDTypeSize(dtype)));
  }
  Entry e{dtype, std::move(shape),
          std::string(static_cast<const char*>(data), size_bytes)};
  tensors_.emplace(name, std::move(e));
  return absl::OkStatus();
}

std::vector<std::string> SafetensorsWriter::Names() const {
  std::vector<std::string> names;
  for (const auto& [n, e] : tensors_) names.push_back(n);
  return names;
}

size_t SafetensorsWriter::data_bytes() const {
  size_t n = 0;
  for (const auto& [name, e] : tensors_) n += e.bytes.size();
  return n;
}

std::string SafetensorsWriter::Serialize() const {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, e] : tensors_) {
    header[name] = {{"dtype", std::string(StDTypeName(e.dtype))},
                    {"shape", e.shape},
                    {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string text = header.dump();
  // Pad with spaces so the data buffer starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  std::string out;
  out.reserve(8 + text.size() + offset);
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  out += text;
  for (const auto& [name, e] : tensors_) out += e.bytes;
  return out;
}

absl::Status SafetensorsWriter::WriteAtomically(const std::string& path) const {
  return WriteFileAtomically(path, Serialize());
}

absl::Status WriteShardedSafetensors(
    const std::string& dir, const std::vector<SafetensorsWriter>& shards) {
  if (shards.empty()) return absl::InvalidArgumentError("no shards to write");
  if (shards.size() == 1) {
    return shards[0].WriteAtomically(JoinPath(dir, "model.safetensors"));
  }
  nlohmann::json weight_map = nlohmann::json::object();
  size_t total = 0;
  for (size_t i = 0; i < shards.size(); ++i) {
    std::string file =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    for (const std::string& name : shards[i].Names()) {
      if (weight_map.contains(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor \"", name, "\" is in two shards"));
      }
      weight_map[name] = file;
    }
    total += shards[i].data_bytes();
    FTUNE_RETURN_IF_ERROR(shards[i].WriteAtomically(JoinPath(dir, file)));
  }
  nlohmann::json index = {{"metadata", {{"total_size", total}}},
                          {"weight_map", weight_map}};
  return WriteFileAtomically(JoinPath(dir, "model.safetensors.index.json"),
                             index.dump(2));
}

}  // namespace ftune
