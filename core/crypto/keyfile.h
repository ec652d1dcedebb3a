// The key file: one 32-byte secret wrapped (XChaCha20-Poly1305) under a key-encryption key derived from
// a passphrase (Argon2id, salt and cost recorded in the file) or from a raw 32-byte platform key.
// Format: docs/storage-format.md.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/secret.h"
#include "base/status.h"

namespace dala {

// kPassphraseAndKey: both are needed (a store only): destroying the platform key (in a hardware keystore,
// where deletion is real) makes the store unreadable even to someone holding the passphrase and old
// copies of the key file.
enum class CredentialKind : uint8_t { kPassphrase = 1, kRawKey = 2, kPassphraseAndKey = 3 };

struct Credential {
  CredentialKind kind = CredentialKind::kPassphrase;
  SecretBuffer bytes;  // the passphrase, or the raw key for kRawKey
  SecretBuffer key;    // kPassphraseAndKey: the 32-byte platform key
  bool has_passphrase() const { return kind != CredentialKind::kRawKey; }
};

// 2 was Dala 0.1's desk key (one X25519 secret); 3 is the organisation's master secret (tools/desk).
enum class KeyPurpose : uint8_t { kStoreDatabase = 1, kOrganisation = 3 };

struct KdfParams {
  uint64_t opslimit = 3;
  uint64_t memlimit = 64ull << 20;
};

constexpr size_t kKeyFileSize = 148;
constexpr size_t kWrappedSecretSize = 32;
constexpr uint64_t kKdfOpsMin = 1, kKdfOpsMax = 16;
constexpr uint64_t kKdfMemMin = 8ull << 20, kKdfMemMax = 1ull << 30;

Status ValidateCredential(const Credential& cred);
Status ValidateKdfParams(const KdfParams& params);

// Wraps a 32-byte secret. Returns the key file bytes.
Result<std::vector<uint8_t>> WrapSecret(KeyPurpose purpose, const SecretBuffer& secret, const Credential& cred,
                                        const KdfParams& params);

// Unwraps. kCorrupt: truncated or damaged file (checksum); kWrongKey: authentication failed;
// kInvalidArgument: the credential kind differs from the one the file was made with.
Result<SecretBuffer> UnwrapSecret(KeyPurpose purpose, std::span<const uint8_t> file, const Credential& cred);

}  // namespace dala
