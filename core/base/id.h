// The one 16-byte id type (reports and attachments), and its conversions to and from protobuf bytes.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace dala {

using Id16 = std::array<uint8_t, 16>;
using ReportId = Id16;
using AttachmentId = Id16;

// The id as protobuf `bytes`.
inline std::string IdBytes(const Id16& id) { return std::string(reinterpret_cast<const char*>(id.data()), id.size()); }
// False unless `bytes` is exactly 16 bytes.
inline bool IdFromBytes(std::string_view bytes, Id16* out) {
  if (bytes.size() != out->size()) return false;
  std::memcpy(out->data(), bytes.data(), out->size());
  return true;
}

}  // namespace dala
