#include "crypto/crypto.h"

#include <sodium.h>

#include <cstring>


namespace dala::crypto {

Hash Blake2b256(std::span<const uint8_t> data) {
  Hash h;
  crypto_generichash(h.data(), h.size(), data.data(), data.size(), nullptr, 0);
  return h;
}

SigningKey GenerateSigningKey() {
  SigningKey k;
  k.secret_key = SecretBuffer(crypto_sign_SECRETKEYBYTES);
  crypto_sign_keypair(k.public_key.data(), k.secret_key.data());
  return k;
}

Result<SigningKey> SigningKeyFromSecret(std::span<const uint8_t> secret64) {
  if (secret64.size() != crypto_sign_SECRETKEYBYTES) return Status(Code::kCorrupt, "device key has the wrong size");
  SigningKey k;
  k.secret_key = SecretBuffer(secret64.data(), secret64.size());
  crypto_sign_ed25519_sk_to_pk(k.public_key.data(), k.secret_key.data());
  return k;
}

SigningKey SigningKeyFromSeed(const SecretBuffer& seed32) {
  SigningKey k;
  k.secret_key = SecretBuffer(crypto_sign_SECRETKEYBYTES);
  crypto_sign_seed_keypair(k.public_key.data(), k.secret_key.data(), seed32.data());
  return k;
}

SecretBuffer DeriveSubkey(const SecretBuffer& master32, const char (&context)[9], uint64_t id) {
  SecretBuffer out(32);
  crypto_kdf_derive_from_key(out.data(), out.size(), id, context, master32.data());
  return out;
}

static std::vector<uint8_t> Framed(std::string_view domain, std::span<const uint8_t> message) {
  std::vector<uint8_t> m;
  m.reserve(domain.size() + 1 + message.size());
  m.insert(m.end(), domain.begin(), domain.end());
  m.push_back(0);
  m.insert(m.end(), message.begin(), message.end());
  return m;
}

Signature Sign(const SigningKey& key, std::string_view domain, std::span<const uint8_t> message) {
  Signature sig;
  auto m = Framed(domain, message);
  crypto_sign_detached(sig.data(), nullptr, m.data(), m.size(), key.secret_key.data());
  return sig;
}

bool Verify(std::span<const uint8_t> public_key, std::string_view domain, std::span<const uint8_t> message,
            std::span<const uint8_t> signature) {
  if (public_key.size() != crypto_sign_PUBLICKEYBYTES || signature.size() != crypto_sign_BYTES) return false;
  auto m = Framed(domain, message);
  return crypto_sign_verify_detached(signature.data(), m.data(), m.size(), public_key.data()) == 0;
}

BoxKeyPair GenerateBoxKeyPair() {
  BoxKeyPair k;
  k.secret_key = SecretBuffer(crypto_box_SECRETKEYBYTES);
  crypto_box_keypair(k.public_key.data(), k.secret_key.data());
  return k;
}

bool IsUsableBoxPublicKey(const PublicKey& key) {
  uint8_t probe[32] = {0}, sealed[crypto_box_SEALBYTES + sizeof probe];
  return crypto_box_seal(sealed, probe, sizeof probe, key.data()) == 0;
}

PublicKey BoxPublicFromSecret(const SecretBuffer& secret_key) {
  PublicKey pk;
  crypto_scalarmult_base(pk.data(), secret_key.data());
  return pk;
}

}  // namespace dala::crypto
