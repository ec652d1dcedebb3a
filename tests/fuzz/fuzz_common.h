// Shared by the fuzz targets and the seed generator: fixed keys (so that seeds made once stay valid), a
// reader over the fuzz input, and scratch directories. Each target defines LLVMFuzzerTestOneInput; it is
// linked either with libFuzzer (clang, DALA_FUZZ=ON) or with replay_main.cc, which runs the committed
// corpus and regression inputs in every ordinary build.
#pragma once

#include <sodium.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "crypto/crypto.h"
#include "format/invite.h"
#include "format/organisation.h"
#include "crypto/keyfile.h"

namespace dala::fuzz {

// Deterministic keys from a one-byte label: the seed corpus is signed and sealed with these.
inline crypto::SigningKey FixedSigningKey(uint8_t label) {
  if (sodium_init() < 0) std::abort();
  uint8_t seed[crypto_sign_SEEDBYTES], pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
  std::memset(seed, label, sizeof seed);
  crypto_sign_seed_keypair(pk, sk, seed);
  auto key = crypto::SigningKeyFromSecret(std::span<const uint8_t>(sk, sizeof sk));
  sodium_memzero(sk, sizeof sk);
  if (!key.ok()) std::abort();
  return std::move(*key);
}

inline crypto::BoxKeyPair FixedBoxKeyPair(uint8_t label) {
  if (sodium_init() < 0) std::abort();
  uint8_t seed[crypto_box_SEEDBYTES];
  std::memset(seed, label, sizeof seed);
  crypto::BoxKeyPair kp;
  kp.secret_key = SecretBuffer(crypto_box_SECRETKEYBYTES);
  crypto_box_seed_keypair(kp.public_key.data(), kp.secret_key.data(), seed);
  return kp;
}

inline constexpr uint8_t kDeviceLabel = 0xD1, kServerLabel = 0x5E, kOrgLabel = 0x0A, kRootLabel = 0x0B;

// The fixed organisation: root FixedSigningKey(kRootLabel), recipient FixedBoxKeyPair(kOrgLabel), a statement
// (version 2) authorising `server`, and an invite to it signed by the root, as the desk makes them.
inline std::string FixedOrgStatement(const crypto::PublicKey& server) {
  const crypto::SigningKey root = FixedSigningKey(kRootLabel);
  v1::OrgStatement st;
  st.set_organisation_key(root.public_key.data(), 32);
  st.set_version(2);
  st.set_name("fuzz");
  st.add_recipients(FixedBoxKeyPair(kOrgLabel).public_key.data(), 32);
  auto* a = st.add_servers();
  a->set_server_key(server.data(), 32);
  return protocol::SignStatement(root, st);
}
inline std::string FixedOrgInvite(const crypto::PublicKey& server, uint32_t uses) {
  v1::Invite inv;
  inv.add_urls("http://127.0.0.1:1");
  inv.set_server_key(server.data(), 32);
  inv.set_uses(uses);
  inv.set_issued_ms(1764000000000);
  inv.set_expires_ms(4102444800000);
  inv.set_statement(FixedOrgStatement(server));
  return protocol::EncodeInvite(std::move(inv), FixedSigningKey(kRootLabel));
}

inline Credential FixedRawKey() {
  if (sodium_init() < 0) std::abort();
  Credential c;
  c.kind = CredentialKind::kRawKey;
  c.bytes = SecretBuffer(32);
  for (size_t i = 0; i < 32; ++i) c.bytes.data()[i] = static_cast<uint8_t>(0x40 + i);
  return c;
}

// Reads the fuzz input front to back; past the end every read yields zeros / empty.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t Byte() { return n_ == 0 ? 0 : (--n_, *p_++); }
  uint16_t U16() { return static_cast<uint16_t>(Byte() | (Byte() << 8)); }
  std::string_view Bytes(size_t len) {
    len = len < n_ ? len : n_;
    std::string_view s(reinterpret_cast<const char*>(p_), len);
    p_ += len;
    n_ -= len;
    return s;
  }
  std::string_view Rest() { return Bytes(n_); }
  bool empty() const { return n_ == 0; }

 private:
  const uint8_t* p_;
  size_t n_;
};

// A directory for the whole process (removed at exit).
inline const std::string& ScratchDir() {
  static const std::string dir = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "dala-fuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    static std::string copy;
    copy = tmpl;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(copy, ec);
    });
    return tmpl;
  }();
  return dir;
}

}  // namespace dala::fuzz
