// Known answers (RFC 8032, RFC 7693, draft-irtf-cfrg-xchacha) through libsodium, and the properties our
// wrappers add: domain separation, envelope sealing and tamper detection.
#include <gtest/gtest.h>
#include <sodium.h>

#include "base/encoding.h"
#include "crypto/crypto.h"
#include "format/envelope.h"

namespace dala::crypto {
namespace {

using encoding::FromHex;
using encoding::ToHex;

std::vector<uint8_t> Hex(std::string_view h) {
  std::vector<uint8_t> out(h.size() / 2);
  EXPECT_TRUE(FromHex(h, out));
  return out;
}

TEST(CryptoKat, Ed25519Rfc8032Test1) {
  auto seed = Hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
  uint8_t pk[32], sk[64], sig[64];
  crypto_sign_seed_keypair(pk, sk, seed.data());
  EXPECT_EQ(ToHex(pk), "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  crypto_sign_detached(sig, nullptr, nullptr, 0, sk);
  EXPECT_EQ(ToHex(sig),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f059"
            "5bbe24655141438e7a100b");
  // Our wrapper signs domain || 0 || message with the same key; the raw scheme verifies that framing.
  auto key = SigningKeyFromSecret({sk, 64});
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(ToHex(key->public_key), ToHex(pk));
  std::string msg = "report";
  Signature s = Sign(*key, "dala/v1/report", Bytes(msg));
  std::string framed = std::string("dala/v1/report") + '\0' + msg;
  EXPECT_EQ(crypto_sign_verify_detached(s.data(), Bytes(framed).data(), framed.size(), pk), 0);
}

TEST(CryptoKat, Blake2bRfc7693) {
  uint8_t out[64];
  std::string abc = "abc";
  crypto_generichash(out, 64, Bytes(abc).data(), 3, nullptr, 0);
  EXPECT_EQ(ToHex(out),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8db"
            "f1925ab92386edd4009923");
}

TEST(CryptoKat, XChaCha20Poly1305Draft) {
  auto key = Hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
  auto nonce = Hex("404142434445464748494a4b4c4d4e4f5051525354555657");
  auto ad = Hex("50515253c0c1c2c3c4c5c6c7");
  std::string pt =
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would "
      "be it.";
  std::vector<uint8_t> ct(pt.size() + 16);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(ct.data(), &clen, Bytes(pt).data(), pt.size(), ad.data(), ad.size(),
                                             nullptr, nonce.data(), key.data());
  EXPECT_EQ(ToHex({ct.data(), 16}), "bd6d179d3e83d43b9576579493c0e939");
  EXPECT_EQ(ToHex({ct.data() + pt.size(), 16}), "c0875924c1c7987947deafd8780acf49");
}

TEST(Crypto, DomainSeparation) {
  SigningKey k = GenerateSigningKey();
  std::string m = "same bytes";
  Signature s = Sign(k, kDomainReport, Bytes(m));
  EXPECT_TRUE(Verify(k.public_key, kDomainReport, Bytes(m), s));
  EXPECT_FALSE(Verify(k.public_key, envelope::kDomain, Bytes(m), s));
  std::string other = "same bytez";
  EXPECT_FALSE(Verify(k.public_key, kDomainReport, Bytes(other), s));
}

TEST(Crypto, EnvelopeRoundTripAndTamper) {
  SigningKey dev = GenerateSigningKey();
  BoxKeyPair org1 = GenerateBoxKeyPair(), org2 = GenerateBoxKeyPair(), stranger = GenerateBoxKeyPair();
  envelope::Header h;
  randombytes_buf(h.report_id.data(), 16);
  h.version = 3;
  h.device_key = dev.public_key;
  std::string secret = "the signed report bytes";
  std::vector<PublicKey> rec = {org1.public_key, org2.public_key};
  auto env = envelope::Seal(dev, h, Bytes(secret), rec);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->find(secret), std::string::npos);

  for (const BoxKeyPair* kp : {&org1, &org2}) {
    envelope::Header got;
    auto plain = envelope::Open(Bytes(*env), *kp, &got);
    ASSERT_TRUE(plain.ok()) << plain.status().message();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(plain->data()), plain->size()), secret);
    EXPECT_EQ(got.version, 3u);
    EXPECT_EQ(got.report_id, h.report_id);
  }
  envelope::Header got;
  EXPECT_EQ(envelope::Open(Bytes(*env), stranger, &got).status().code(), Code::kNotFound);
  EXPECT_TRUE(envelope::Verify(Bytes(*env), &got).ok());

  // Every single-byte change is detected, by the outer signature or by parsing.
  size_t detected = 0;
  for (size_t i = 0; i < env->size(); ++i) {
    std::string bad = *env;
    bad[i] ^= 0x01;
    if (!envelope::Open(Bytes(bad), org1, &got).ok()) ++detected;
  }
  EXPECT_EQ(detected, env->size());
}

}  // namespace
}  // namespace dala::crypto
