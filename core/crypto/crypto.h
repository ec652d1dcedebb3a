// Thin wrappers over libsodium's standard constructions. No cryptography is invented here:
// Ed25519 signatures with a domain prefix, BLAKE2b-256 hashes, X25519 key pairs for sealed boxes.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/secret.h"
#include "base/status.h"

namespace dala::crypto {

using Hash = std::array<uint8_t, 32>;
using PublicKey = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>;

// Signature domains: a signature made for one purpose never verifies for another.
inline constexpr std::string_view kDomainReport = "dala/v1/report";

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
// From a 32-byte seed (crypto_sign_seed_keypair). The caller checks the size.
SigningKey SigningKeyFromSeed(const SecretBuffer& seed32);
// A 32-byte subkey of a 32-byte master key: libsodium's crypto_kdf_derive_from_key (BLAKE2b) with an
// 8-character context and a subkey number.
SecretBuffer DeriveSubkey(const SecretBuffer& master32, const char (&context)[9], uint64_t id);

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

}  // namespace dala::crypto
