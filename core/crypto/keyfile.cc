#include "crypto/keyfile.h"

#include <sodium.h>

#include <cstring>

namespace dala {
namespace {

constexpr char kMagic[8] = {'D', 'A', 'L', 'A', 'K', 'E', 'Y', '1'};
constexpr uint8_t kFormatVersion = 1;
constexpr size_t kOffVersion = 8, kOffPurpose = 9, kOffKdf = 10, kOffSalt = 12, kOffOps = 28, kOffMem = 36,
                 kOffNonce = 44, kOffCipher = 68, kOffChecksum = 116;
constexpr size_t kSaltSize = 16, kNonceSize = 24, kCipherSize = kWrappedSecretSize + 16, kChecksumSize = 32;
static_assert(kOffCipher + kCipherSize == kOffChecksum);
static_assert(kOffChecksum + kChecksumSize == kKeyFileSize);
static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == kNonceSize);
static_assert(crypto_pwhash_SALTBYTES == kSaltSize);

void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t GetU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

Result<SecretBuffer> DeriveKek(const Credential& cred, const uint8_t* salt, const KdfParams& params) {
  SecretBuffer kek(32);
  if (cred.kind == CredentialKind::kPassphrase) {
    if (crypto_pwhash(kek.data(), kek.size(), reinterpret_cast<const char*>(cred.bytes.data()), cred.bytes.size(),
                      salt, params.opslimit, params.memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0) {
      return Status(Code::kNoMemory, "not enough memory for the passphrase key derivation (Argon2id)");
    }
  } else {
    // Keyed BLAKE2b as a PRF: KEK = BLAKE2b-256(key = platform key, "dala/v1/kek-raw" || salt).
    static constexpr char kLabel[] = "dala/v1/kek-raw";
    crypto_generichash_state st;
    crypto_generichash_init(&st, cred.bytes.data(), cred.bytes.size(), kek.size());
    crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(kLabel), sizeof kLabel - 1);
    crypto_generichash_update(&st, salt, kSaltSize);
    crypto_generichash_final(&st, kek.data(), kek.size());
    sodium_memzero(&st, sizeof st);
  }
  return kek;
}

}  // namespace

Status ValidateCredential(const Credential& cred) {
  if (cred.kind == CredentialKind::kPassphrase) {
    if (cred.bytes.size() < 1 || cred.bytes.size() > 1024)
      return {Code::kInvalidArgument, "a passphrase must be 1 to 1024 bytes long"};
  } else if (cred.kind == CredentialKind::kRawKey) {
    if (cred.bytes.size() != 32) return {Code::kInvalidArgument, "a raw key must be exactly 32 bytes"};
  } else if (cred.kind == CredentialKind::kPassphraseAndKey) {
    if (cred.bytes.size() < 1 || cred.bytes.size() > 1024)
      return {Code::kInvalidArgument, "a passphrase must be 1 to 1024 bytes long"};
    if (cred.key.size() != 32)
      return {Code::kInvalidArgument, "this credential needs the platform key as well (exactly 32 bytes)"};
  } else {
    return {Code::kInvalidArgument, "unknown credential kind"};
  }
  return Status::Ok();
}

Status ValidateKdfParams(const KdfParams& p) {
  if (p.opslimit < kKdfOpsMin || p.opslimit > kKdfOpsMax)
    return {Code::kInvalidArgument, "Argon2id opslimit must be between 1 and 16"};
  if (p.memlimit < kKdfMemMin || p.memlimit > kKdfMemMax)
    return {Code::kInvalidArgument, "Argon2id memlimit must be between 8 MiB and 1 GiB"};
  return Status::Ok();
}

Result<std::vector<uint8_t>> WrapSecret(KeyPurpose purpose, const SecretBuffer& secret, const Credential& cred,
                                        const KdfParams& params) {
  DALA_RETURN_IF_ERROR(ValidateCredential(cred));
  if (cred.kind == CredentialKind::kPassphraseAndKey)
    return Status(Code::kInvalidArgument, "a passphrase and a platform key together protect stores only");
  if (cred.kind == CredentialKind::kPassphrase) DALA_RETURN_IF_ERROR(ValidateKdfParams(params));
  if (secret.size() != kWrappedSecretSize) return Status(Code::kInternal, "wrapped secret must be 32 bytes");

  std::vector<uint8_t> f(kKeyFileSize, 0);
  std::memcpy(f.data(), kMagic, sizeof kMagic);
  f[kOffVersion] = kFormatVersion;
  f[kOffPurpose] = static_cast<uint8_t>(purpose);
  f[kOffKdf] = static_cast<uint8_t>(cred.kind);
  randombytes_buf(f.data() + kOffSalt, kSaltSize);
  KdfParams recorded = cred.kind == CredentialKind::kPassphrase ? params : KdfParams{0, 0};
  PutU64(f.data() + kOffOps, recorded.opslimit);
  PutU64(f.data() + kOffMem, recorded.memlimit);
  randombytes_buf(f.data() + kOffNonce, kNonceSize);

  DALA_ASSIGN_OR_RETURN(SecretBuffer kek, DeriveKek(cred, f.data() + kOffSalt, params));
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(f.data() + kOffCipher, &clen, secret.data(), secret.size(),
                                             f.data(), kOffCipher,  // header is associated data
                                             nullptr, f.data() + kOffNonce, kek.data());
  crypto_generichash(f.data() + kOffChecksum, kChecksumSize, f.data(), kOffChecksum, nullptr, 0);
  return f;
}

Result<SecretBuffer> UnwrapSecret(KeyPurpose purpose, std::span<const uint8_t> f, const Credential& cred) {
  DALA_RETURN_IF_ERROR(ValidateCredential(cred));
  if (cred.kind == CredentialKind::kPassphraseAndKey)
    return Status(Code::kWrongKey, "this key file is protected by a passphrase alone or a platform key alone");
  if (f.size() != kKeyFileSize || std::memcmp(f.data(), kMagic, sizeof kMagic) != 0)
    return Status(Code::kCorrupt, "the key file is truncated or not a Dala key file; restore it from a backup");
  uint8_t sum[kChecksumSize];
  crypto_generichash(sum, sizeof sum, f.data(), kOffChecksum, nullptr, 0);
  if (sodium_memcmp(sum, f.data() + kOffChecksum, kChecksumSize) != 0)
    return Status(Code::kCorrupt, "the key file is damaged (checksum mismatch); restore it from a backup");
  if (f[kOffVersion] != kFormatVersion)
    return Status(Code::kCorrupt, "the key file has an unsupported format version; upgrade Dala");
  if (f[kOffPurpose] != static_cast<uint8_t>(purpose))
    return Status(Code::kInvalidArgument, purpose == KeyPurpose::kStoreDatabase
                                              ? "this key file belongs to an organisation desk, not a store"
                                          : f[kOffPurpose] == 2
                                              ? "this organisation key file was made by Dala 0.1, before "
                                                "organisation roots; make a new one with 'dala desk keygen'"
                                              : "this key file belongs to a store, not an organisation desk");
  if (f[kOffKdf] != static_cast<uint8_t>(cred.kind))
    return Status(Code::kWrongKey, cred.kind == CredentialKind::kPassphrase
                                       ? "this store is protected by a platform key, not a passphrase"
                                       : "this store is protected by a passphrase, not a platform key");
  KdfParams params{GetU64(f.data() + kOffOps), GetU64(f.data() + kOffMem)};
  if (cred.kind == CredentialKind::kPassphrase && !ValidateKdfParams(params).ok())
    return Status(Code::kCorrupt, "the key file records an unsupported Argon2id cost");

  DALA_ASSIGN_OR_RETURN(SecretBuffer kek, DeriveKek(cred, f.data() + kOffSalt, params));
  SecretBuffer secret(kWrappedSecretSize);
  unsigned long long mlen = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(secret.data(), &mlen, nullptr, f.data() + kOffCipher, kCipherSize,
                                                 f.data(), kOffCipher, f.data() + kOffNonce, kek.data()) != 0) {
    return Status(Code::kWrongKey, cred.kind == CredentialKind::kPassphrase ? "wrong passphrase"
                                                                            : "wrong platform key");
  }
  return secret;
}

}  // namespace dala
