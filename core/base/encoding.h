// Text encodings of bytes: lowercase hex and unpadded base64url (libsodium's constant-time codecs).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace dala::encoding {

std::string ToHex(std::span<const uint8_t> bytes);
bool FromHex(std::string_view hex, std::span<uint8_t> out);  // exact length

std::string Base64Url(std::span<const uint8_t> bytes);
bool FromBase64Url(std::string_view text, std::string* out);

}  // namespace dala::encoding
