#include "format/report.h"
#include "base/encoding.h"

#include <charconv>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>

namespace dala {

const char* ReportStateName(ReportState s) {
  switch (s) {
    case ReportState::kDraft: return "draft";
    case ReportState::kSealed: return "sealed";
    case ReportState::kQueued: return "queued";
    case ReportState::kDelivered: return "delivered";
    case ReportState::kRejected: return "rejected";
  }
  return "unknown";
}

ReportId Report::id() const {
  ReportId id{};
  if (content.report_id().size() == id.size()) std::memcpy(id.data(), content.report_id().data(), id.size());
  return id;
}

bool IsValidUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0, n = s.size();
  while (i < n) {
    unsigned c = p[i];
    if (c < 0x80) {
      if (c == 0) return false;
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

Status ValidateText(std::string_view what, std::string_view s, size_t max_bytes, bool allow_empty) {
  if (!allow_empty && s.empty()) return {Code::kInvalidArgument, std::string(what) + " must not be empty"};
  if (s.size() > max_bytes)
    return {Code::kTooLarge, std::string(what) + " is longer than the limit of " + std::to_string(max_bytes) + " bytes"};
  if (!IsValidUtf8(s)) return {Code::kInvalidArgument, std::string(what) + " is not valid UTF-8"};
  return Status::Ok();
}

static bool IsNameChar(char c, bool allow_upper) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
         (allow_upper && c >= 'A' && c <= 'Z');
}

Status ValidateKey(std::string_view key) {
  if (key.empty() || key.size() > ReportLimits::kKey ||
      !std::all_of(key.begin(), key.end(), [](char c) { return IsNameChar(c, true); }))
    return {Code::kInvalidArgument, "a field key must be 1 to 64 characters of A-Z a-z 0-9 _ . -"};
  return Status::Ok();
}

Status ValidateDecimal(std::string_view s) {
  size_t i = 0;
  if (s.size() > ReportLimits::kDecimal) return {Code::kTooLarge, "a decimal is longer than 64 characters"};
  if (i < s.size() && s[i] == '-') ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') { ++i; ++int_digits; }
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') { ++i; ++frac_digits; }
    if (frac_digits == 0) int_digits = 0;
  }
  if (int_digits == 0 || i != s.size())
    return {Code::kInvalidArgument, "a decimal must look like 12, -3 or 4.50"};
  return Status::Ok();
}

Status ValidateGeo(const v1::GeoPoint& g) {
  if (!std::isfinite(g.latitude()) || !std::isfinite(g.longitude()) || !std::isfinite(g.accuracy_m()) ||
      g.latitude() < -90 || g.latitude() > 90 || g.longitude() < -180 || g.longitude() > 180 || g.accuracy_m() < 0)
    return {Code::kInvalidArgument, "a location needs latitude -90..90, longitude -180..180 and accuracy >= 0"};
  return Status::Ok();
}

Status ParseForm(std::string_view form, std::string* name, uint32_t* version) {
  auto slash = form.find('/');
  static const Status kBad(Code::kInvalidArgument,
                           "a form must be NAME/VERSION, e.g. detention/1 (NAME: 1-64 of a-z 0-9 _ . -)");
  if (slash == std::string_view::npos || slash == 0 || slash > ReportLimits::kFormName) return kBad;
  std::string_view n = form.substr(0, slash), v = form.substr(slash + 1);
  if (!std::all_of(n.begin(), n.end(), [](char c) { return IsNameChar(c, false); })) return kBad;
  if (v.empty() || v.size() > 9 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return kBad;
  uint32_t ver = static_cast<uint32_t>(std::stoul(std::string(v)));
  if (ver == 0) return kBad;
  *name = std::string(n);
  *version = ver;
  return Status::Ok();
}

Status CheckSerializedSize(const v1::ReportContent& content) {
  if (content.ByteSizeLong() > ReportLimits::kSerialized)
    return {Code::kTooLarge, "the report is larger than the 4 MiB limit"};
  return Status::Ok();
}

static Status ValidateValue(const v1::FieldValue& v) {
  switch (v.value_case()) {
    case v1::FieldValue::kText: return ValidateText("a text field", v.text(), ReportLimits::kText, true);
    case v1::FieldValue::kDecimal: return ValidateDecimal(v.decimal());
    case v1::FieldValue::kGeo: return ValidateGeo(v.geo());
    case v1::FieldValue::kPeople: {
      if (static_cast<size_t>(v.people().people_size()) > ReportLimits::kPeople)
        return {Code::kTooLarge, "a people field holds at most 1000 people"};
      for (const auto& p : v.people().people()) {
        DALA_RETURN_IF_ERROR(ValidateText("a person's name", p.name(), ReportLimits::kPersonName, false));
        DALA_RETURN_IF_ERROR(ValidateText("a person's role", p.role(), ReportLimits::kPersonRole, true));
      }
      return Status::Ok();
    }
    case v1::FieldValue::kInteger:
    case v1::FieldValue::kBoolean:
    case v1::FieldValue::kTimestampMs: return Status::Ok();
    case v1::FieldValue::VALUE_NOT_SET: break;
  }
  return {Code::kInvalidArgument, "a field needs a value"};
}

static const Status kSealedImmutable(Code::kState,
                                     "this version is sealed and cannot change; edit the report to make a new version");

Status Report::SetValue(std::string_view key, v1::FieldValue value) {
  if (sealed()) return kSealedImmutable;
  DALA_RETURN_IF_ERROR(ValidateKey(key));
  DALA_RETURN_IF_ERROR(ValidateValue(value));
  auto* fields = content.mutable_fields();
  auto it = std::lower_bound(fields->begin(), fields->end(), key,
                             [](const v1::Field& f, std::string_view k) { return f.key() < k; });
  if (it != fields->end() && it->key() == key) {
    v1::FieldValue old = it->value();
    *it->mutable_value() = std::move(value);
    if (Status st = CheckSerializedSize(content); !st.ok()) {
      *it->mutable_value() = std::move(old);
      return st;
    }
    return Status::Ok();
  }
  if (static_cast<size_t>(fields->size()) >= ReportLimits::kFields)
    return {Code::kTooLarge, "a report holds at most 256 fields"};
  v1::Field f;
  f.set_key(std::string(key));
  *f.mutable_value() = std::move(value);
  // Append then rotate into sorted position (RepeatedPtrField has no insert).
  int pos = static_cast<int>(it - fields->begin());
  *fields->Add() = std::move(f);
  for (int i = fields->size() - 1; i > pos; --i) fields->SwapElements(i, i - 1);
  if (Status st = CheckSerializedSize(content); !st.ok()) {
    fields->DeleteSubrange(pos, 1);
    return st;
  }
  return Status::Ok();
}

Status Report::RemoveField(std::string_view key) {
  if (sealed()) return kSealedImmutable;
  auto* fields = content.mutable_fields();
  for (int i = 0; i < fields->size(); ++i) {
    if (fields->Get(i).key() == key) {
      fields->DeleteSubrange(i, 1);
      return Status::Ok();
    }
  }
  return {Code::kNotFound, "the report has no field with that key"};
}

Status Report::SetNarrative(std::string_view text) {
  if (sealed()) return kSealedImmutable;
  DALA_RETURN_IF_ERROR(ValidateText("the narrative", text, ReportLimits::kNarrative, true));
  std::string old = content.narrative();
  content.set_narrative(std::string(text));
  if (Status st = CheckSerializedSize(content); !st.ok()) {
    content.set_narrative(std::move(old));
    return st;
  }
  return Status::Ok();
}

Status Report::SetLocation(const v1::GeoPoint* location) {
  if (sealed()) return kSealedImmutable;
  auto* cap = content.mutable_capture();
  if (location == nullptr) {
    cap->clear_location();
    return Status::Ok();
  }
  DALA_RETURN_IF_ERROR(ValidateGeo(*location));
  *cap->mutable_location() = *location;
  return Status::Ok();
}

const v1::FieldValue* Report::Find(std::string_view key) const {
  const auto& fields = content.fields();
  auto it = std::lower_bound(fields.begin(), fields.end(), key,
                             [](const v1::Field& f, std::string_view k) { return f.key() < k; });
  if (it != fields.end() && it->key() == key) return &it->value();
  return nullptr;
}

std::string SignContent(const crypto::SigningKey& device, const v1::ReportContent& content) {
  v1::SignedReport sr;
  sr.set_content(content.SerializeAsString());
  crypto::Signature sig = crypto::Sign(device, crypto::kDomainReport, crypto::Bytes(sr.content()));
  sr.set_signature(sig.data(), sig.size());
  return sr.SerializeAsString();
}

namespace {
Result<v1::ReportContent> ParseSignedReport(std::span<const uint8_t> signed_bytes, bool check_signature) {
  v1::SignedReport sr;
  if (!sr.ParseFromArray(signed_bytes.data(), static_cast<int>(signed_bytes.size())))
    return Status(Code::kVerify, "the sealed report is malformed (altered or damaged)");
  v1::ReportContent c;
  if (!c.ParseFromString(sr.content()) || c.report_id().size() != 16 || c.device_key().size() != 32 ||
      c.version() == 0)
    return Status(Code::kVerify, "the sealed report's content is malformed (altered or damaged)");
  if (check_signature && !crypto::Verify(crypto::Bytes(c.device_key()), crypto::kDomainReport,
                                         crypto::Bytes(sr.content()), crypto::Bytes(sr.signature())))
    return Status(Code::kVerify, "the sealed report's signature does not verify (altered or forged)");
  return c;
}
}  // namespace

Result<v1::ReportContent> VerifySignedReport(std::span<const uint8_t> signed_bytes) {
  return ParseSignedReport(signed_bytes, true);
}
Result<v1::ReportContent> ReadSignedReport(std::span<const uint8_t> signed_bytes) {
  return ParseSignedReport(signed_bytes, false);
}

std::string JsonEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

// The shortest text that reads back as exactly `d` (51.2, not 51.200000000000003): a value read from the
// JSON and written back is the value that was stored (the Swift binding edits reports that way).
static std::string JsonNumber(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return ec == std::errc() ? std::string(buf, end) : std::string("null");
}

static std::string GeoJson(const v1::GeoPoint& g) {
  return "{\"latitude\":" + JsonNumber(g.latitude()) + ",\"longitude\":" + JsonNumber(g.longitude()) +
         ",\"accuracy_m\":" + JsonNumber(g.accuracy_m()) + "}";
}

std::string ReportToJson(const Report& r) {
  const auto& c = r.content;
  std::string j = "{";
  j += "\"id\":" + JsonEscape(encoding::ToHex(crypto::Bytes(c.report_id())));
  j += ",\"version\":" + std::to_string(c.version());
  j += ",\"form\":" + JsonEscape(r.form());
  j += ",\"state\":" + JsonEscape(ReportStateName(r.state));
  j += ",\"created\":" + std::to_string(c.created_ms());
  j += ",\"updated\":" + std::to_string(r.updated_ms);
  j += ",\"priority\":" + std::to_string(r.priority);
  j += std::string(",\"purged\":") + (r.purged ? "true" : "false");
  if (r.sealed()) {
    j += ",\"sealed\":" + std::to_string(c.sealed_ms());
    j += ",\"device_key\":" + JsonEscape(encoding::ToHex(crypto::Bytes(c.device_key())));
    j += ",\"content_hash\":" + JsonEscape(encoding::ToHex(r.content_hash));
  }
  j += ",\"previous_hash\":" + (c.previous_hash().empty() ? std::string("null")
                                                          : JsonEscape(encoding::ToHex(crypto::Bytes(c.previous_hash()))));
  j += ",\"capture\":{\"device_time\":" + std::to_string(c.capture().device_time_ms()) +
       ",\"counter\":" + std::to_string(c.capture().counter()) +
       ",\"location\":" + (c.capture().has_location() ? GeoJson(c.capture().location()) : std::string("null")) + "}";
  j += ",\"fields\":{";
  bool first = true;
  for (const auto& f : c.fields()) {
    if (!first) j += ",";
    first = false;
    j += JsonEscape(f.key()) + ":{\"type\":";
    const auto& v = f.value();
    switch (v.value_case()) {
      case v1::FieldValue::kText: j += "\"text\",\"value\":" + JsonEscape(v.text()); break;
      case v1::FieldValue::kInteger: j += "\"integer\",\"value\":" + std::to_string(v.integer()); break;
      case v1::FieldValue::kDecimal: j += "\"decimal\",\"value\":" + JsonEscape(v.decimal()); break;
      case v1::FieldValue::kBoolean: j += std::string("\"boolean\",\"value\":") + (v.boolean() ? "true" : "false"); break;
      case v1::FieldValue::kTimestampMs: j += "\"timestamp\",\"value\":" + std::to_string(v.timestamp_ms()); break;
      case v1::FieldValue::kGeo: j += "\"geo\",\"value\":" + GeoJson(v.geo()); break;
      case v1::FieldValue::kPeople: {
        j += "\"people\",\"value\":[";
        for (int i = 0; i < v.people().people_size(); ++i) {
          const auto& p = v.people().people(i);
          if (i) j += ",";
          j += "{\"name\":" + JsonEscape(p.name()) + ",\"role\":" + JsonEscape(p.role()) + "}";
        }
        j += "]";
        break;
      }
      case v1::FieldValue::VALUE_NOT_SET: j += "null"; break;
    }
    j += "}";
  }
  j += "},\"narrative\":" + JsonEscape(c.narrative());
  // Attachments: never the key.
  j += ",\"attachments\":[";
  for (int i = 0; i < c.attachments_size(); ++i) {
    const auto& a = c.attachments(i);
    if (i) j += ",";
    j += "{\"id\":" + JsonEscape(encoding::ToHex(crypto::Bytes(a.attachment_id()))) +
         ",\"mime\":" + JsonEscape(a.mime_type()) + ",\"size\":" + std::to_string(a.size()) +
         ",\"plaintext_hash\":" + JsonEscape(encoding::ToHex(crypto::Bytes(a.plaintext_hash()))) +
         ",\"ciphertext_hash\":" + JsonEscape(encoding::ToHex(crypto::Bytes(a.ciphertext_hash()))) + "}";
  }
  j += "]}";
  return j;
}

}  // namespace dala
