// The store's key file (format 2): the database key, wrapped so that the file says nothing about itself.
// 160 bytes that are indistinguishable from random ones: no magic, no version, no kind of credential, no
// Argon2id cost (the app passes the same cost at every open). Layout and derivations:
// docs/storage-format.md, "The key file".
//
//   salt (16) | slot 0: nonce (24) + XChaCha20-Poly1305(KEK, database key, AD = label || 0) (48)
//             | slot 1: nonce (24) + XChaCha20-Poly1305(KEK', 32 random bytes, AD = label || 1) (48)
//
// Slot 0 holds the database key; slot 1 either opens with a duress passphrase's KEK or is random bytes
// (no duress passphrase set): the two cannot be told apart. One Argon2id run per open, both slots tried.
// Format 1 files (`DALAKEY1`, Dala 0.1) still open; the store rewrites them in format 2.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/secret.h"
#include "base/status.h"
#include "crypto/keyfile.h"

namespace dala {

constexpr size_t kStoreKeyFileSize = 160;

enum class KeySlot : uint8_t { kStore = 0, kDuress = 1 };

// The key-encryption key for one credential and salt (Argon2id for a passphrase, keyed BLAKE2b for a
// platform key, both chained for the two together).
Result<SecretBuffer> DeriveStoreKek(const Credential& cred, std::span<const uint8_t> salt, const KdfParams& kdf);

// A new key file: a fresh salt, `db_key` in slot 0, random bytes in slot 1.
Result<std::vector<uint8_t>> NewStoreKeyFile(const SecretBuffer& db_key, const Credential& cred, const KdfParams& kdf);

struct OpenedStoreKey {
  KeySlot slot = KeySlot::kStore;
  SecretBuffer kek;     // kept to rewrite a slot without a second Argon2id run
  SecretBuffer secret;  // the database key (slot 0) or the duress slot's bytes (slot 1)
};

// Derives the KEK once and tries both slots. kWrongKey when neither opens ("wrong passphrase or key");
// kCorrupt when the file has the wrong size.
Result<OpenedStoreKey> OpenStoreKeyFile(std::span<const uint8_t> file, const Credential& cred, const KdfParams& kdf);
// The same with a KEK already derived (it is moved into the result).
Result<OpenedStoreKey> OpenStoreKeyFileWithKek(std::span<const uint8_t> file, SecretBuffer kek);

// Writes `secret` into `slot` under `kek` (a fresh nonce); the other slot is kept.
std::vector<uint8_t> SealSlot(std::span<const uint8_t> file, KeySlot slot, const SecretBuffer& kek,
                              const SecretBuffer& secret);
// Fills `slot` with random bytes (a duress passphrase removed, or used).
std::vector<uint8_t> ClearSlot(std::span<const uint8_t> file, KeySlot slot);

std::span<const uint8_t> StoreKeySalt(std::span<const uint8_t> file);

// A Dala 0.1 key file (format 1, `DALAKEY1`).
bool IsLegacyKeyFile(std::span<const uint8_t> file);

}  // namespace dala
