#include "worker/agent/capabilities.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/contract/capabilities.h"
#include "common/status.h"
#include "proto/convert/trainer_capabilities.h"

#ifndef FTUNE_VERSION
#define FTUNE_VERSION "unknown"
#endif

namespace ftune::agent {

absl::StatusOr<std::vector<NvidiaSmiRow>> SplitNvidiaSmiCsv(
    absl::string_view text, size_t num_fields, absl::string_view field_names) {
  std::vector<NvidiaSmiRow> rows;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    NvidiaSmiRow row;
    row.line = line_no;
    row.fields = absl::StrSplit(line, ',');
    if (row.fields.size() != num_fields) {
      return absl::InvalidArgumentError(absl::StrCat(
          "nvidia-smi line ", line_no, " \"", line, "\": ", row.fields.size(),
          " fields, want ", num_fields, " (", field_names, ")"));
    }
    for (auto& x : row.fields) x = absl::StripAsciiWhitespace(x);
    int32_t index;
    if (!absl::SimpleAtoi(row.fields[0], &index) || index < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "nvidia-smi line ", line_no, ": bad index \"", row.fields[0], "\""));
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<std::vector<v1::GpuDevice>> ParseNvidiaSmiCsv(
    absl::string_view text) {
  FTUNE_ASSIGN_OR_RETURN(
      std::vector<NvidiaSmiRow> rows,
      SplitNvidiaSmiCsv(text, 4, "index, name, memory.total, compute_cap"));
  std::vector<v1::GpuDevice> gpus;
  for (const NvidiaSmiRow& row : rows) {
    const std::vector<absl::string_view>& f = row.fields;
    int64_t mib;
    if (!absl::SimpleAtoi(f[2], &mib) || mib < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "nvidia-smi line ", row.line, ": bad memory.total \"", f[2], "\""));
    }
    v1::GpuDevice g;
    int32_t index = 0;
    (void)absl::SimpleAtoi(f[0], &index);  // Checked by SplitNvidiaSmiCsv.
    g.set_index(index);
    g.set_name(std::string(f[1]));
    g.set_memory_bytes(mib * 1024 * 1024);
    g.set_compute_capability(std::string(f[3]));
    gpus.push_back(std::move(g));
  }
  return gpus;
}

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    absl::string_view text) {
  std::map<std::string, std::string> labels;
  if (absl::StripAsciiWhitespace(text).empty()) return labels;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--labels: \"", entry, "\" is not key=value with a non-empty key"));
    }
    std::string key(entry.substr(0, eq));
    if (!labels.emplace(key, std::string(entry.substr(eq + 1))).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--labels: key \"", key, "\" given twice"));
    }
  }
  return labels;
}

absl::StatusOr<std::vector<v1::GpuDevice>> SelectGpus(
    absl::string_view mode, const std::vector<v1::GpuDevice>& found) {
  if (mode == "auto") return found;
  if (mode == "none" || mode.empty()) return std::vector<v1::GpuDevice>();
  std::vector<v1::GpuDevice> out;
  std::set<int32_t> seen;
  for (absl::string_view part : absl::StrSplit(mode, ',')) {
    int32_t index;
    if (!absl::SimpleAtoi(part, &index) || index < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gpus: \"", part, "\" is not a GPU index (or use auto|none)"));
    }
    if (!seen.insert(index).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gpus: index ", index, " given twice"));
    }
    bool ok = false;
    for (const v1::GpuDevice& g : found) {
      if (g.index() == index) {
        out.push_back(g);
        ok = true;
      }
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("--gpus: GPU ", index, " is not among the ",
                       found.size(), " GPUs nvidia-smi lists"));
    }
  }
  return out;
}

std::optional<std::string> QueryNvidiaSmi(const std::string& nvidia_smi,
                                          absl::string_view fields) {
  const std::string cmd = absl::StrCat(nvidia_smi, " --query-gpu=", fields,
                                       " --format=csv,noheader,nounits "
                                       "2>/dev/null");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return std::nullopt;
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return std::nullopt;
  }
  return out;
}

absl::StatusOr<std::vector<v1::GpuDevice>> DiscoverGpus(
    const std::string& nvidia_smi) {
  std::optional<std::string> out =
      QueryNvidiaSmi(nvidia_smi, "index,name,memory.total,compute_cap");
  if (!out) return std::vector<v1::GpuDevice>();  // not installed, no driver
  return ParseNvidiaSmiCsv(*out);
}

namespace {

// popen's command line is a shell's: quote the path.
std::string ShellQuote(absl::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

}  // namespace

absl::StatusOr<v1::TrainerCapabilities> QueryTrainer(
    const std::string& trainer_path) {
  const std::string cmd =
      absl::StrCat(ShellQuote(trainer_path), " capabilities 2>/dev/null");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot run ", trainer_path, " capabilities"));
  }
  std::string out;
  char buf[4096];
  size_t n;
  // Bounded: a capabilities object is a few hundred bytes.
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
    if (out.size() < (1 << 20)) out.append(buf, n);
  }
  const int status = ::pclose(p);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "trainer ", trainer_path, " capabilities failed (",
        WIFEXITED(status) ? absl::StrCat("exit ", WEXITSTATUS(status))
                          : std::string("killed"),
        "): is it an ftune-train of this release?"));
  }
  absl::StatusOr<contract::TrainerCapabilities> caps =
      contract::ParseCapabilities(out);
  if (!caps.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("trainer ", trainer_path, ": ", caps.status().message()));
  }
  return TrainerCapabilitiesToProto(*caps);
}

std::string Hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') {
    return "localhost";
  }
  return buf;
}

int32_t OnlineCpus() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int32_t>(n) : 1;
}

int64_t PhysicalMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
}

std::string SoftwareVersion() { return FTUNE_VERSION; }

}  // namespace ftune::agent
