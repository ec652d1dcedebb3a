#include "crypto/store_key_file.h"

#include <sodium.h>

#include <cstring>
#include <string_view>

namespace dala {
namespace {

constexpr size_t kSaltSize = 16, kNonceSize = 24, kSealedSize = 32 + 16, kSlotSize = kNonceSize + kSealedSize;
static_assert(kSaltSize + 2 * kSlotSize == kStoreKeyFileSize);
static_assert(crypto_pwhash_SALTBYTES == kSaltSize);
static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == kNonceSize);
constexpr std::string_view kSlotLabel = "dala/v2/store-key/slot";

size_t SlotOffset(KeySlot slot) { return kSaltSize + static_cast<size_t>(slot) * kSlotSize; }

void Mix(crypto_generichash_state& st, std::string_view label) {
  crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(label.data()), label.size());
}

// The associated data of a slot: the label and the slot's number, so that a slot cannot be moved.
std::vector<uint8_t> SlotAd(KeySlot slot) {
  std::vector<uint8_t> ad(kSlotLabel.begin(), kSlotLabel.end());
  ad.push_back(static_cast<uint8_t>(slot));
  return ad;
}

bool TryOpen(std::span<const uint8_t> f, KeySlot slot, const SecretBuffer& kek, SecretBuffer& out) {
  const uint8_t* p = f.data() + SlotOffset(slot);
  std::vector<uint8_t> ad = SlotAd(slot);
  unsigned long long mlen = 0;
  return crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), &mlen, nullptr, p + kNonceSize, kSealedSize,
                                                    ad.data(), ad.size(), p, kek.data()) == 0;
}

}  // namespace

// KEK derivations (docs/storage-format.md):
//   passphrase:           BLAKE2b-256(key = Argon2id(passphrase, salt), "dala/v2/kek/passphrase" || salt)
//   platform key:         BLAKE2b-256(key = platform key, "dala/v2/kek/key" || salt)
//   passphrase and key:   BLAKE2b-256(key = platform key, "dala/v2/kek/passphrase+key" || Argon2id(...) || salt)
Result<SecretBuffer> DeriveStoreKek(const Credential& cred, std::span<const uint8_t> salt, const KdfParams& kdf) {
  DALA_RETURN_IF_ERROR(ValidateCredential(cred));
  if (salt.size() != kSaltSize) return Status(Code::kInternal, "a key-file salt is 16 bytes");
  SecretBuffer stretched;
  if (cred.has_passphrase()) {
    DALA_RETURN_IF_ERROR(ValidateKdfParams(kdf));
    stretched = SecretBuffer(32);
    if (crypto_pwhash(stretched.data(), stretched.size(), reinterpret_cast<const char*>(cred.bytes.data()),
                      cred.bytes.size(), salt.data(), kdf.opslimit, kdf.memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
      return Status(Code::kNoMemory, "not enough memory for the passphrase key derivation (Argon2id)");
  }
  SecretBuffer kek(32);
  crypto_generichash_state st;
  switch (cred.kind) {
    case CredentialKind::kPassphrase:
      crypto_generichash_init(&st, stretched.data(), stretched.size(), kek.size());
      Mix(st, "dala/v2/kek/passphrase");
      break;
    case CredentialKind::kRawKey:
      crypto_generichash_init(&st, cred.bytes.data(), cred.bytes.size(), kek.size());
      Mix(st, "dala/v2/kek/key");
      break;
    case CredentialKind::kPassphraseAndKey:
      crypto_generichash_init(&st, cred.key.data(), cred.key.size(), kek.size());
      Mix(st, "dala/v2/kek/passphrase+key");
      crypto_generichash_update(&st, stretched.data(), stretched.size());
      break;
  }
  crypto_generichash_update(&st, salt.data(), salt.size());
  crypto_generichash_final(&st, kek.data(), kek.size());
  sodium_memzero(&st, sizeof st);
  return kek;
}

std::vector<uint8_t> SealSlot(std::span<const uint8_t> file, KeySlot slot, const SecretBuffer& kek,
                              const SecretBuffer& secret) {
  std::vector<uint8_t> f(file.begin(), file.end());
  uint8_t* p = f.data() + SlotOffset(slot);
  randombytes_buf(p, kNonceSize);
  std::vector<uint8_t> ad = SlotAd(slot);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(p + kNonceSize, &clen, secret.data(), secret.size(), ad.data(),
                                             ad.size(), nullptr, p, kek.data());
  return f;
}

std::vector<uint8_t> ClearSlot(std::span<const uint8_t> file, KeySlot slot) {
  std::vector<uint8_t> f(file.begin(), file.end());
  randombytes_buf(f.data() + SlotOffset(slot), kSlotSize);
  return f;
}

Result<std::vector<uint8_t>> NewStoreKeyFile(const SecretBuffer& db_key, const Credential& cred, const KdfParams& kdf) {
  if (db_key.size() != 32) return Status(Code::kInternal, "the database key must be 32 bytes");
  std::vector<uint8_t> f(kStoreKeyFileSize);
  randombytes_buf(f.data(), f.size());  // the salt, and slot 1 stays random
  DALA_ASSIGN_OR_RETURN(SecretBuffer kek, DeriveStoreKek(cred, StoreKeySalt(f), kdf));
  return SealSlot(f, KeySlot::kStore, kek, db_key);
}

Result<OpenedStoreKey> OpenStoreKeyFile(std::span<const uint8_t> file, const Credential& cred, const KdfParams& kdf) {
  if (file.size() != kStoreKeyFileSize)
    return Status(Code::kCorrupt, "the key file is damaged (wrong size); restore it from a backup");
  DALA_ASSIGN_OR_RETURN(SecretBuffer kek, DeriveStoreKek(cred, StoreKeySalt(file), kdf));
  return OpenStoreKeyFileWithKek(file, std::move(kek));
}

Result<OpenedStoreKey> OpenStoreKeyFileWithKek(std::span<const uint8_t> file, SecretBuffer kek) {
  if (file.size() != kStoreKeyFileSize)
    return Status(Code::kCorrupt, "the key file is damaged (wrong size); restore it from a backup");
  OpenedStoreKey out;
  out.kek = std::move(kek);
  out.secret = SecretBuffer(32);
  // Both slots are always tried, so that which one opened takes no different time.
  bool store = TryOpen(file, KeySlot::kStore, out.kek, out.secret);
  SecretBuffer other(32);
  bool duress = TryOpen(file, KeySlot::kDuress, out.kek, other);
  if (store) return out;
  if (duress) {
    out.slot = KeySlot::kDuress;
    out.secret = std::move(other);
    return out;
  }
  // A damaged file reads the same: the file carries no checksum, which would mark it as a key file.
  return Status(Code::kWrongKey, "wrong passphrase or platform key (or a damaged key file)");
}

std::span<const uint8_t> StoreKeySalt(std::span<const uint8_t> file) { return file.subspan(0, kSaltSize); }

bool IsLegacyKeyFile(std::span<const uint8_t> file) {
  static constexpr char kMagic[8] = {'D', 'A', 'L', 'A', 'K', 'E', 'Y', '1'};
  return file.size() == kKeyFileSize && std::memcmp(file.data(), kMagic, sizeof kMagic) == 0;
}

}  // namespace dala
