// Thin wrappers over libsodium's standard constructions. No cryptography is invented here:
// Ed25519 signatures with a domain prefix, BLAKE2b-256 hashes, XChaCha20-Poly1305 and sealed boxes.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dala/v1/report.pb.h"
#include "secret.h"
#include "status.h"

namespace dala::crypto {

using Hash = std::array<uint8_t, 32>;
using PublicKey = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>;

// Signature domains: a signature made for one purpose never verifies for another.
inline constexpr std::string_view kDomainReport = "dala/v1/report";
inline constexpr std::string_view kDomainEnvelope = "dala/v1/envelope";

inline std::span<const uint8_t> Bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Hash Blake2b256(std::span<const uint8_t> data);

struct SigningKey {
  PublicKey public_key{};
  SecretBuffer secret_key;  // 64 bytes (libsodium's seed || public key form)
};
SigningKey GenerateSigningKey();
Result<SigningKey> SigningKeyFromSecret(std::span<const uint8_t> secret64);

// Ed25519 over domain || 0x00 || message.
Signature Sign(const SigningKey& key, std::string_view domain, std::span<const uint8_t> message);
bool Verify(std::span<const uint8_t> public_key, std::string_view domain, std::span<const uint8_t> message,
            std::span<const uint8_t> signature);

struct BoxKeyPair {
  PublicKey public_key{};
  SecretBuffer secret_key;  // 32 bytes, X25519
};
BoxKeyPair GenerateBoxKeyPair();
// False for keys a sealed box cannot use (all-zero and other low-order points).
bool IsUsableBoxPublicKey(const PublicKey& key);
PublicKey BoxPublicFromSecret(const SecretBuffer& secret_key);

// The envelope: the signed report encrypted under a random content key (XChaCha20-Poly1305), the key
// sealed (crypto_box_seal) to each recipient, and the device's signature over the whole body.
struct EnvelopeHeader {
  std::array<uint8_t, 16> report_id{};
  uint32_t version = 0;
  PublicKey device_key{};
  std::vector<v1::AttachmentManifest> attachments;  // each checked (shape, root) by VerifyEnvelope
};
Result<std::string> SealEnvelope(const SigningKey& device, const EnvelopeHeader& header,
                                 std::span<const uint8_t> plaintext, std::span<const PublicKey> recipients);
// Checks the outer signature only (what a server can do). Fills header on success.
Status VerifyEnvelope(std::span<const uint8_t> envelope, EnvelopeHeader* header);
// Verifies the outer signature, then decrypts with the recipient key pair.
Result<SecretBuffer> OpenEnvelope(std::span<const uint8_t> envelope, const BoxKeyPair& recipient,
                                  EnvelopeHeader* header);

std::string ToHex(std::span<const uint8_t> bytes);
bool FromHex(std::string_view hex, std::span<uint8_t> out);  // exact length

}  // namespace dala::crypto
