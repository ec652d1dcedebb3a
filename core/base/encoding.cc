#include "encoding.h"

#include <sodium.h>

namespace dala::encoding {

std::string ToHex(std::span<const uint8_t> bytes) {
  std::string s(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(s.data(), s.size(), bytes.data(), bytes.size());
  s.pop_back();
  return s;
}

bool FromHex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) return false;
  if (out.empty()) return true;  // an empty span's data() may be null, which libsodium must not be given
  size_t len = 0;
  const char* end = nullptr;
  return sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &len, &end) == 0 &&
         len == out.size() && end == hex.data() + hex.size();
}

std::string Base64Url(std::span<const uint8_t> bytes) {
  const int variant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_encoded_len(bytes.size(), variant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), variant);
  out.pop_back();  // the NUL
  return out;
}

bool FromBase64Url(std::string_view text, std::string* out) {
  out->assign(text.size() * 3 / 4 + 3, '\0');
  size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(reinterpret_cast<uint8_t*>(out->data()), out->size(), text.data(), text.size(), nullptr, &len,
                        &end, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size())
    return false;
  out->resize(len);
  return true;
}

}  // namespace dala::encoding
