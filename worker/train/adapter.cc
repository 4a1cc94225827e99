// PEFT's on-disk adapter format: key names and config fields follow what
// peft.PeftModel.save_pretrained writes for a LoRA model of the family, so
// PeftModel.from_pretrained and vLLM read it unchanged.
#include "worker/train/adapter.h"

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/ids.h"
#include "common/safetensors.h"
#include "common/sha256.h"
#include "common/status.h"
#include "worker/train/checkpoint.h"
#include "worker/train/torch_compat.h"

namespace ftune::train {
namespace {

absl::StatusOr<StDType> ToStDType(torch::ScalarType t,
                                  const std::string& name) {
  switch (t) {
    case torch::kFloat32:
      return StDType::kF32;
    case torch::kFloat64:
      return StDType::kF64;
    case torch::kFloat16:
      return StDType::kF16;
    case torch::kBFloat16:
      return StDType::kBF16;
    case torch::kInt64:
      return StDType::kI64;
    case torch::kInt32:
      return StDType::kI32;
    case torch::kUInt8:
      return StDType::kU8;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\": unsupported dtype"));
  }
}

torch::Dtype FromStDType(StDType d) {
  switch (d) {
    case StDType::kF32:
      return torch::kFloat32;
    case StDType::kF64:
      return torch::kFloat64;
    case StDType::kF16:
      return torch::kFloat16;
    case StDType::kBF16:
      return torch::kBFloat16;
    case StDType::kI64:
      return torch::kInt64;
    case StDType::kI32:
      return torch::kInt32;
    case StDType::kI16:
      return torch::kInt16;
    case StDType::kI8:
      return torch::kInt8;
    case StDType::kU8:
      return torch::kUInt8;
    case StDType::kBool:
      return torch::kBool;
  }
  return torch::kUInt8;
}

std::string StagingDir(const std::string& final_dir) {
  return absl::StrCat(final_dir, ".tmp-", NewId("stage"));
}

}  // namespace

absl::Status AddTensor(SafetensorsWriter& writer, const std::string& name,
                       const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
  FTUNE_ASSIGN_OR_RETURN(StDType dt, ToStDType(c.scalar_type(), name));
  return writer.Add(name, dt, c.sizes().vec(), c.data_ptr(),
                    c.numel() * c.element_size());
}

nlohmann::json AdapterConfig(const LoraOptions& lora,
                             const std::string& base_model_name) {
  return {{"peft_type", "LORA"},
          {"task_type", "CAUSAL_LM"},
          {"base_model_name_or_path", base_model_name},
          {"revision", nullptr},
          {"r", lora.rank},
          {"lora_alpha", lora.alpha},
          {"lora_dropout", lora.dropout},
          {"target_modules", lora.target_modules},
          {"bias", "none"},
          {"fan_in_fan_out", lora.fan_in_fan_out},
          {"inference_mode", true},
          {"init_lora_weights", true},
          {"modules_to_save", nullptr},
          {"layers_to_transform", nullptr},
          {"layers_pattern", nullptr},
          {"rank_pattern", nlohmann::json::object()},
          {"alpha_pattern", nlohmann::json::object()},
          {"use_rslora", false},
          {"use_dora", false}};
}

absl::Status WriteTensors(const std::string& path,
                          const NamedTensors& tensors) {
  SafetensorsWriter writer;
  writer.SetMetadata("format", "pt");
  for (const auto& [name, t] : tensors) {
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    FTUNE_ASSIGN_OR_RETURN(StDType dt, ToStDType(c.scalar_type(), name));
    FTUNE_RETURN_IF_ERROR(writer.Add(name, dt, c.sizes().vec(), c.data_ptr(),
                                     c.numel() * c.element_size()));
  }
  return writer.WriteAtomically(path);
}

absl::StatusOr<NamedTensors> ReadTensors(const std::string& path) {
  FTUNE_ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(path));
  NamedTensors out;
  for (const std::string& name : file->Names()) {
    FTUNE_ASSIGN_OR_RETURN(StTensorView v, file->Get(name));
    torch::Tensor t =
        torch::from_blob(const_cast<uint8_t*>(v.data), v.shape,
                         torch::TensorOptions().dtype(FromStDType(v.dtype)))
            .clone();
    out.emplace_back(name, t);
  }
  return out;
}

absl::Status WriteAdapterFiles(const std::string& dir, const LoraOptions& lora,
                               const std::string& base_model_name,
                               const NamedTensors& lora_tensors) {
  FTUNE_RETURN_IF_ERROR(
      WriteFileAtomically(JoinPath(dir, "adapter_config.json"),
                          AdapterConfig(lora, base_model_name).dump(2)));
  return WriteTensors(JoinPath(dir, "adapter_model.safetensors"), lora_tensors);
}

absl::Status PublishAdapter(const std::string& output_dir,
                            const LoraOptions& lora,
                            const std::string& base_model_name,
                            const NamedTensors& lora_tensors,
                            nlohmann::json manifest_extra) {
  if (access(output_dir.c_str(), F_OK) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("output_dir ", output_dir, " already exists"));
  }
  const std::string staging = StagingDir(output_dir);
  // What a crashed earlier attempt left half-written.
  FTUNE_RETURN_IF_ERROR(RemovePublishLeftovers(output_dir));
  FTUNE_RETURN_IF_ERROR(MakeDirs(staging));
  absl::Status st = [&]() -> absl::Status {
    FTUNE_RETURN_IF_ERROR(
        WriteAdapterFiles(staging, lora, base_model_name, lora_tensors));
    nlohmann::json files = nlohmann::json::object();
    for (const char* f : {"adapter_config.json", "adapter_model.safetensors"}) {
      FTUNE_ASSIGN_OR_RETURN(std::string sha, Sha256File(JoinPath(staging, f)));
      files[f] = {{"sha256", sha}};
    }
    nlohmann::json manifest = std::move(manifest_extra);
    manifest["format"] = "ftune-adapter";
    manifest["format_version"] = 1;
    manifest["files"] = files;
    FTUNE_RETURN_IF_ERROR(WriteFileAtomically(
        JoinPath(staging, "ftune_manifest.json"), manifest.dump(2)));
    return PublishDirectory(staging, output_dir);
  }();
  if (!st.ok()) (void)RemoveAll(staging);
  return st;
}

absl::Status MergeModel(Model& model, const std::string& output_dir) {
  if (access(output_dir.c_str(), F_OK) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("merge_output_dir ", output_dir, " already exists"));
  }
  const std::string staging = StagingDir(output_dir);
  // What a crashed earlier attempt left half-written.
  FTUNE_RETURN_IF_ERROR(RemovePublishLeftovers(output_dir));
  FTUNE_RETURN_IF_ERROR(MakeDirs(staging));
  absl::Status st = [&]() -> absl::Status {
    FTUNE_RETURN_IF_ERROR(WriteTensors(JoinPath(staging, "model.safetensors"),
                                       model.MergedStateDict()));
    FTUNE_RETURN_IF_ERROR(WriteFileAtomically(JoinPath(staging, "config.json"),
                                              model.config().ToJson()));
    return PublishDirectory(staging, output_dir);
  }();
  if (!st.ok()) (void)RemoveAll(staging);
  return st;
}

absl::Status LoadAdapter(Model& model, const std::string& dir) {
  const std::string config_path = JoinPath(dir, "adapter_config.json");
  FTUNE_ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  auto bad = [&](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": ", field, ": ", why));
  };
  if (!j.is_object()) return bad("(file)", "not a JSON object");
  if (j.value("peft_type", "LORA") != "LORA")
    return bad("peft_type", "only \"LORA\" adapters are supported");
  LoraOptions lora;
  if (!j.contains("r") || !j["r"].is_number_integer())
    return bad("r", "must be an integer");
  lora.rank = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number())
    return bad("lora_alpha", "must be a number");
  lora.alpha = j["lora_alpha"].get<double>();
  lora.dropout = 0;  // inference
  const nlohmann::json& t = j.value("target_modules", nlohmann::json());
  if (t.is_string()) {
    lora.target_modules = {t.get<std::string>()};
  } else if (t.is_array() && !t.empty()) {
    lora.target_modules.clear();
    for (const auto& m : t) {
      if (!m.is_string()) return bad("target_modules", "must be strings");
      lora.target_modules.push_back(m.get<std::string>());
    }
  } else {
    return bad("target_modules", "must be a name or a non-empty list");
  }
  for (const char* unsupported : {"use_dora", "use_rslora"}) {
    if (j.value(unsupported, false))
      return bad(unsupported, "true is not supported");
  }
  if (j.value("fan_in_fan_out", false) != model.config().fan_in_fan_out())
    return bad("fan_in_fan_out",
               absl::StrCat("must be ",
                            model.config().fan_in_fan_out() ? "true" : "false",
                            " for a ", model.config().architecture));
  absl::Status st = model.ApplyLora(lora);
  if (!st.ok()) return Annotate(st, config_path);
  NamedTensors params = model.LoraParameters();
  FTUNE_ASSIGN_OR_RETURN(
      NamedTensors tensors,
      ReadTensors(JoinPath(dir, "adapter_model.safetensors")));
  // A module's tensors only; PEFT writes nothing else for plain LoRA.
  if (tensors.size() != params.size())
    return absl::InvalidArgumentError(
        absl::StrCat(JoinPath(dir, "adapter_model.safetensors"), ": ",
                     tensors.size(), " tensors, but the target modules of ",
                     model.config().architecture, " take ", params.size()));
  return CopyInto(params, tensors, JoinPath(dir, "adapter_model.safetensors"));
}

}  // namespace ftune::train
