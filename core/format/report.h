// The report model: one version of a report (draft or sealed), its validation, signing and JSON form.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/id.h"
#include "crypto/crypto.h"
#include "dala/v1/report.pb.h"
#include "base/status.h"

namespace dala {

// ReportId: base/id.h.

enum class ReportState : int { kDraft = 0, kSealed = 1, kQueued = 2, kDelivered = 3, kRejected = 4 };
const char* ReportStateName(ReportState s);

// Documented limits (docs/c-api.md).
struct ReportLimits {
  static constexpr size_t kFormName = 64;
  static constexpr size_t kKey = 64;
  static constexpr size_t kText = 64 * 1024;
  static constexpr size_t kDecimal = 64;
  static constexpr size_t kNarrative = 1024 * 1024;
  static constexpr size_t kFields = 256;
  static constexpr size_t kPeople = 1000;
  static constexpr size_t kPersonName = 256;
  static constexpr size_t kPersonRole = 64;
  static constexpr size_t kSerialized = 4 * 1024 * 1024;
};

struct Report {
  v1::ReportContent content;   // the draft being edited, or the verified sealed content
  ReportState state = ReportState::kDraft;
  int32_t priority = 0;
  bool purged = false;         // content deleted after delivery
  int64_t updated_ms = 0;
  crypto::Hash content_hash{}; // sealed only: BLAKE2b-256 of the SignedReport bytes

  ReportId id() const;
  std::string form() const { return content.form() + "/" + std::to_string(content.form_version()); }
  bool sealed() const { return state != ReportState::kDraft; }

  // Draft edits. Each validates its input and fails with kState on a sealed version.
  Status SetValue(std::string_view key, v1::FieldValue value);
  Status RemoveField(std::string_view key);
  Status SetNarrative(std::string_view text);
  Status SetLocation(const v1::GeoPoint* location);
  const v1::FieldValue* Find(std::string_view key) const;
};

bool IsValidUtf8(std::string_view s);
Status ValidateText(std::string_view what, std::string_view s, size_t max_bytes, bool allow_empty);
Status ValidateKey(std::string_view key);
Status ValidateDecimal(std::string_view s);
Status ValidateGeo(const v1::GeoPoint& g);
// "name/version" -> (name, version)
Status ParseForm(std::string_view form, std::string* name, uint32_t* version);
Status CheckSerializedSize(const v1::ReportContent& content);

// Sealing: serializes content, signs it (domain dala/v1/report) and returns SignedReport bytes.
std::string SignContent(const crypto::SigningKey& device, const v1::ReportContent& content);
// Parses and verifies SignedReport bytes: the signature must verify under the content's device key.
Result<v1::ReportContent> VerifySignedReport(std::span<const uint8_t> signed_bytes);
// The same shapes, with no signature check: for bytes VerifySignedReport accepted before (envelope::OpenAgain).
Result<v1::ReportContent> ReadSignedReport(std::span<const uint8_t> signed_bytes);

std::string ReportToJson(const Report& r);
std::string JsonEscape(std::string_view s);

}  // namespace dala
