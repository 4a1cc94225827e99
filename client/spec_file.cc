#include "client/spec_file.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <google/protobuf/util/json_util.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace ftune::client {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using nlohmann::json;

// The field named `key`, by its JSON name or its proto name, as the
// protobuf JSON parser accepts either; null when none.
const FieldDescriptor* FindField(const Descriptor* d, const std::string& key) {
  if (const FieldDescriptor* f = d->FindFieldByName(key); f != nullptr) {
    return f;
  }
  for (int i = 0; i < d->field_count(); ++i) {
    if (d->field(i)->json_name() == key) return d->field(i);
  }
  return nullptr;
}

// Well-known types (Duration, Timestamp, Struct, wrappers) have JSON forms
// of their own; they are passed through unchecked.
bool IsWellKnown(const Descriptor* d) {
  return absl::StartsWith(d->full_name(), "google.protobuf.");
}

std::string Join(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : absl::StrCat(prefix, ".", key);
}

// --- JSON: find unknown fields -------------------------------------------

absl::Status CheckJson(const json& value, const Descriptor* d,
                       const std::string& prefix);

absl::Status CheckJsonValue(const json& value, const FieldDescriptor* field,
                            const std::string& name) {
  if (field->is_map()) {
    const FieldDescriptor* map_value = field->message_type()->map_value();
    if (!value.is_object() ||
        map_value->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      return absl::OkStatus();  // the protobuf parser judges the rest
    }
    for (const auto& [key, item] : value.items()) {
      if (absl::Status s = CheckJson(item, map_value->message_type(),
                                     absl::StrCat(name, "[", key, "]"));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE ||
      IsWellKnown(field->message_type())) {
    return absl::OkStatus();
  }
  if (field->is_repeated() && value.is_array()) {
    for (size_t i = 0; i < value.size(); ++i) {
      if (absl::Status s = CheckJson(value[i], field->message_type(),
                                     absl::StrCat(name, "[", i, "]"));
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }
  return CheckJson(value, field->message_type(), name);
}

absl::Status CheckJson(const json& value, const Descriptor* d,
                       const std::string& prefix) {
  if (!value.is_object()) return absl::OkStatus();
  for (const auto& [key, item] : value.items()) {
    const std::string name = Join(prefix, key);
    const FieldDescriptor* field = FindField(d, key);
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown field \"", name,
                                                     "\" (", d->name(),
                                                     " has no \"", key, "\")"));
    }
    if (absl::Status s = CheckJsonValue(item, field, name); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// --- YAML: convert to JSON, guided by the descriptor ----------------------

absl::Status AtLine(const YAML::Node& node, absl::string_view message) {
  if (node.Mark().is_null()) return absl::InvalidArgumentError(message);
  return absl::InvalidArgumentError(
      absl::StrCat("line ", node.Mark().line + 1, ": ", message));
}

// A YAML value with no proto to follow (inside a well-known type): maps,
// lists and scalars (as strings, except booleans and null).
json FreeForm(const YAML::Node& node) {
  if (node.IsMap()) {
    json out = json::object();
    for (const auto& entry : node) {
      out[entry.first.Scalar()] = FreeForm(entry.second);
    }
    return out;
  }
  if (node.IsSequence()) {
    json out = json::array();
    for (const auto& item : node) out.push_back(FreeForm(item));
    return out;
  }
  if (node.IsNull()) return nullptr;
  bool b;
  if (node.Tag() != "!" && YAML::convert<bool>::decode(node, b)) return b;
  return node.Scalar();
}

absl::Status MessageFromYaml(const YAML::Node& node, const Descriptor* d,
                             const std::string& prefix, json* out);

// One value of `field` (an element, for a repeated field) into *out.
absl::Status ValueFromYaml(const YAML::Node& node, const FieldDescriptor* field,
                           const std::string& name, json* out) {
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (IsWellKnown(field->message_type())) {
      *out = FreeForm(node);
      return absl::OkStatus();
    }
    return MessageFromYaml(node, field->message_type(), name, out);
  }
  if (!node.IsScalar()) {
    return AtLine(node, absl::StrCat("\"", name, "\" needs a single value"));
  }
  const std::string& text = node.Scalar();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool b;
      if (!YAML::convert<bool>::decode(node, b)) {
        return AtLine(node, absl::StrCat("\"", name, "\": \"", text,
                                         "\" is not true or false"));
      }
      *out = b;
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
    case FieldDescriptor::CPPTYPE_FLOAT:
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      // Protobuf JSON takes numbers as strings too, and parses them exactly
      // (int64 beyond a double's precision stays intact).
      double number;
      const bool special =
          text == "NaN" || text == "Infinity" || text == "-Infinity";
      if (!absl::SimpleAtod(text, &number) && !special) {
        return AtLine(node, absl::StrCat("\"", name, "\": \"", text,
                                         "\" is not a number"));
      }
      *out = text;
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      int number;  // by number, or (usually) by name
      if (absl::SimpleAtoi(text, &number)) {
        *out = number;
      } else {
        *out = text;
      }
      return absl::OkStatus();
    }
    default:  // string, bytes (base64)
      *out = text;
      return absl::OkStatus();
  }
}

absl::Status MessageFromYaml(const YAML::Node& node, const Descriptor* d,
                             const std::string& prefix, json* out) {
  *out = json::object();
  if (node.IsNull()) return absl::OkStatus();
  if (!node.IsMap()) {
    return AtLine(node, absl::StrCat(prefix.empty() ? "the file" : prefix,
                                     " needs \"field: value\" lines (a ",
                                     d->name(), ")"));
  }
  for (const auto& entry : node) {
    const YAML::Node& key_node = entry.first;
    const YAML::Node& value = entry.second;
    if (!key_node.IsScalar()) {
      return AtLine(key_node, "field names must be plain names");
    }
    const std::string key = key_node.Scalar();
    const std::string name = Join(prefix, key);
    const FieldDescriptor* field = FindField(d, key);
    if (field == nullptr) {
      return AtLine(key_node,
                    absl::StrCat("unknown field \"", name, "\" (", d->name(),
                                 " has no \"", key, "\")"));
    }
    if (value.IsNull() &&
        field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      return AtLine(value, absl::StrCat("\"", name, "\" has no value"));
    }
    json& converted = (*out)[key];
    if (field->is_map()) {
      if (!value.IsMap()) {
        return AtLine(value, absl::StrCat("\"", name, "\" needs a map"));
      }
      const FieldDescriptor* map_value = field->message_type()->map_value();
      converted = json::object();
      for (const auto& item : value) {
        const std::string item_key = item.first.Scalar();
        if (absl::Status s = ValueFromYaml(
                item.second, map_value, absl::StrCat(name, "[", item_key, "]"),
                &converted[item_key]);
            !s.ok()) {
          return s;
        }
      }
    } else if (field->is_repeated()) {
      if (!value.IsSequence()) {
        return AtLine(value, absl::StrCat("\"", name, "\" needs a list"));
      }
      converted = json::array();
      for (size_t i = 0; i < value.size(); ++i) {
        json element;
        if (absl::Status s = ValueFromYaml(
                value[i], field, absl::StrCat(name, "[", i, "]"), &element);
            !s.ok()) {
          return s;
        }
        converted.push_back(std::move(element));
      }
    } else if (absl::Status s = ValueFromYaml(value, field, name, &converted);
               !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Prefixed(absl::string_view source, const absl::Status& status) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": ", status.message()));
}

}  // namespace

absl::Status ParseMessageText(absl::string_view text, SpecSyntax syntax,
                              absl::string_view source,
                              google::protobuf::Message* message) {
  const Descriptor* d = message->GetDescriptor();
  std::string json_text;
  if (syntax == SpecSyntax::kYaml) {
    YAML::Node root;
    try {
      root = YAML::Load(std::string(text));
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": line ", e.mark.line + 1, ": not valid YAML: ", e.msg));
    }
    json converted;
    if (absl::Status s = MessageFromYaml(root, d, "", &converted); !s.ok()) {
      return Prefixed(source, s);
    }
    json_text = converted.dump();
  } else {
    json parsed = json::parse(text.begin(), text.end(), nullptr,
                              /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": not valid JSON"));
    }
    if (!parsed.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": not a ", d->name(), " (a JSON object)"));
    }
    if (absl::Status s = CheckJson(parsed, d, ""); !s.ok()) {
      return Prefixed(source, s);
    }
    json_text = std::string(text);
  }
  message->Clear();
  // The check above named unknown fields; this catches bad values (an
  // unknown enum name, a number out of range).
  auto status = google::protobuf::util::JsonStringToMessage(json_text, message);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a ", d->name(),
                     " in protobuf JSON: ", status.message().as_string()));
  }
  return absl::OkStatus();
}

SpecSyntax DetectSyntax(absl::string_view path, absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".json")) return SpecSyntax::kJson;
  if (absl::EndsWith(lower, ".yaml") || absl::EndsWith(lower, ".yml")) {
    return SpecSyntax::kYaml;
  }
  absl::string_view body = absl::StripLeadingAsciiWhitespace(text);
  return !body.empty() && body.front() == '{' ? SpecSyntax::kJson
                                              : SpecSyntax::kYaml;
}

absl::Status ReadMessageFile(const std::string& path, absl::string_view what,
                             google::protobuf::Message* message) {
  const std::string source = absl::StrCat(what, " ", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": cannot be read"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseMessageText(text.str(), DetectSyntax(path, text.str()), source,
                          message);
}

}  // namespace ftune::client
