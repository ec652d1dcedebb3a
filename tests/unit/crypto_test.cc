// Known answers (RFC 8032, RFC 7693, draft-irtf-cfrg-xchacha) through libsodium, and the properties our
// wrappers add: domain separation, envelope sealing and tamper detection.
#include <gtest/gtest.h>
#include <algorithm>
#include <array>
#include <sodium.h>

#include <boost/multiprecision/cpp_int.hpp>

#include "base/encoding.h"
#include "crypto/crypto.h"
#include "format/envelope.h"
#include "format/report.h"

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

// The desk reads each report of a large export twice rather than holding them all (OpenReport, then
// OpenAgain with the content key it gave): the second reading gives the same report, and only for the very
// bytes the first one checked.
TEST(Crypto, AnEnvelopeOpenedAgainIsTheSameReportForTheSameBytesOnly) {
  SigningKey dev = GenerateSigningKey();
  BoxKeyPair org = GenerateBoxKeyPair();
  v1::ReportContent c;
  ReportId id{};
  randombytes_buf(id.data(), id.size());
  c.set_report_id(id.data(), id.size());
  c.set_version(1);
  c.set_device_key(dev.public_key.data(), 32);
  c.set_narrative("taken from the square at noon");
  envelope::Header h;
  h.report_id = id;
  h.version = 1;
  h.device_key = dev.public_key;
  const std::string signed_report = SignContent(dev, c);
  std::vector<PublicKey> rec = {org.public_key};
  auto env = envelope::Seal(dev, h, Bytes(signed_report), rec);
  ASSERT_TRUE(env.ok());
  std::array<uint8_t, 32> key{};
  auto first = envelope::OpenReport(Bytes(*env), org, key);
  ASSERT_TRUE(first.ok()) << first.status().message();
  const Hash opened = Blake2b256(Bytes(*env));
  auto again = envelope::OpenAgain(Bytes(*env), opened, key);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->content.SerializeAsString(), first->content.SerializeAsString());
  EXPECT_EQ(again->content_hash, first->content_hash);
  EXPECT_EQ(again->header.report_id, id);

  // Other bytes than those opened, even ones that would open (the same report sealed again): refused.
  auto resealed = envelope::Seal(dev, h, Bytes(signed_report), rec);
  ASSERT_TRUE(resealed.ok());
  EXPECT_EQ(envelope::OpenAgain(Bytes(*resealed), opened, key).status().code(), Code::kVerify);
  std::string flipped = *env;
  flipped[flipped.size() / 2] ^= 1;
  EXPECT_EQ(envelope::OpenAgain(Bytes(flipped), opened, key).status().code(), Code::kVerify);
  // Above all, bytes that decrypt as well as the checked ones but whose signature no longer holds (its last
  // byte is the device signature's): signatures are not checked again, the hash stands for them.
  std::string forged = *env;
  forged.back() ^= 1;
  EXPECT_FALSE(envelope::OpenReport(Bytes(forged), org).ok());
  EXPECT_EQ(envelope::OpenAgain(Bytes(forged), opened, key).status().code(), Code::kVerify);
  // Another content key than the one committed to: refused.
  std::array<uint8_t, 32> other = key;
  other[0] ^= 1;
  EXPECT_EQ(envelope::OpenAgain(Bytes(*env), opened, other).status().code(), Code::kVerify);
  // A failed opening leaves no key behind.
  std::array<uint8_t, 32> none{};
  none.fill(0xaa);
  EXPECT_FALSE(envelope::OpenReport(Bytes(flipped), org, none).ok());
  EXPECT_EQ(none, (std::array<uint8_t, 32>{}));
}

// Sealing and opening reuse one scratch buffer per thread for the content key and the plaintext (fresh
// sodium_malloc pages per call cost a batch seal a third of its time): neither is left there afterwards,
// and the copy the caller gets back is the only one.
TEST(Crypto, EnvelopeScratchHoldsNothingAfterwards) {
  SigningKey dev = GenerateSigningKey();
  BoxKeyPair org = GenerateBoxKeyPair();
  envelope::Header h;
  randombytes_buf(h.report_id.data(), 16);
  h.version = 1;
  h.device_key = dev.public_key;
  const std::string canary = "CANARY-detained-at-the-checkpoint-" + std::string(3000, 'x');
  std::vector<PublicKey> rec = {org.public_key};
  auto all_zero = [](std::span<const uint8_t> b) {
    return std::all_of(b.begin(), b.end(), [](uint8_t c) { return c == 0; });
  };
  auto holds_canary = [&](std::span<const uint8_t> b) {
    return std::string_view(reinterpret_cast<const char*>(b.data()), b.size()).find("CANARY") != std::string_view::npos;
  };
  auto env = envelope::Seal(dev, h, Bytes(canary), rec);
  ASSERT_TRUE(env.ok());
  auto scratch = envelope::ScratchForTesting();
  ASSERT_EQ(scratch.size(), 2u);
  EXPECT_EQ(scratch[0].size(), 32u);
  EXPECT_GE(scratch[1].size(), canary.size());  // the plaintext went through it
  EXPECT_TRUE(all_zero(scratch[0])) << "the content key was left in the scratch after Seal";
  EXPECT_TRUE(all_zero(scratch[1])) << "the padded report was left in the scratch after Seal";

  envelope::Header got;
  auto plain = envelope::Open(Bytes(*env), org, &got);
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(holds_canary(plain->span()));
  scratch = envelope::ScratchForTesting();
  EXPECT_TRUE(all_zero(scratch[0])) << "the content key was left in the scratch after Open";
  EXPECT_FALSE(holds_canary(scratch[1])) << "the report was left in the scratch after Open";

  // A seal that fails once the content key is made (a recipient key libsodium refuses) leaves it no more.
  PublicKey low_order{};  // the all-zero point
  std::vector<PublicKey> bad = {low_order};
  EXPECT_FALSE(envelope::Seal(dev, h, Bytes(canary), bad).ok());
  EXPECT_TRUE(all_zero(envelope::ScratchForTesting()[0])) << "the content key was left after a failed Seal";
}

// The attack key commitment stops ("invisible salamanders"): XChaCha20-Poly1305 is not key-committing, so
// a malicious device can make one ciphertext that authenticates under two content keys, seal one key to
// each recipient, and sign the lot. Without the commitment both recipients open it, to different bytes.
namespace salamander {
using boost::multiprecision::cpp_int;
const cpp_int kP = (cpp_int(1) << 130) - 5;

cpp_int Le(const uint8_t* b, size_t n) {
  cpp_int v = 0;
  for (size_t i = n; i-- > 0;) v = (v << 8) | b[i];
  return v;
}
void PutLe(cpp_int v, uint8_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i, v >>= 8) out[i] = static_cast<uint8_t>(v & 0xff);
}
cpp_int PowMod(cpp_int b, cpp_int e) {
  cpp_int r = 1;
  for (b %= kP; e > 0; e >>= 1, b = b * b % kP)
    if ((e & 1) != 0) r = r * b % kP;
  return r;
}
struct Poly {
  cpp_int r, s;
  std::vector<uint8_t> stream;  // ChaCha20 keystream from block 1 (the ciphertext's)
};
// What XChaCha20-Poly1305-IETF derives from a key and nonce: the Poly1305 key and the keystream.
Poly Derive(const uint8_t key[32], const uint8_t nonce[24], size_t len) {
  uint8_t sub[32], n2[12] = {0}, block0[64] = {0};
  crypto_core_hchacha20(sub, nonce, key, nullptr);
  std::memcpy(n2 + 4, nonce + 16, 8);
  crypto_stream_chacha20_ietf_xor_ic(block0, block0, 64, n2, 0, sub);
  Poly p;
  p.r = Le(block0, 16) & cpp_int("0x0ffffffc0ffffffc0ffffffc0fffffff");
  p.s = Le(block0 + 16, 16);
  p.stream.assign(len, 0);
  crypto_stream_chacha20_ietf_xor_ic(p.stream.data(), p.stream.data(), len, n2, 1, sub);
  return p;
}
// Poly1305 accumulator (before adding s) over 16-byte-aligned AEAD input.
cpp_int Accumulate(const std::vector<uint8_t>& msg, const cpp_int& r) {
  cpp_int h = 0;
  for (size_t i = 0; i < msg.size(); i += 16) h = (h + Le(&msg[i], 16) + (cpp_int(1) << 128)) * r % kP;
  return h;
}
std::vector<uint8_t> MacInput(const std::vector<uint8_t>& ad, const std::vector<uint8_t>& ct) {
  std::vector<uint8_t> m = ad;
  m.resize((m.size() + 15) / 16 * 16, 0);
  m.insert(m.end(), ct.begin(), ct.end());
  m.resize((m.size() + 15) / 16 * 16, 0);
  uint8_t lens[16];
  PutLe(ad.size(), lens, 8);
  PutLe(ct.size(), lens + 8, 8);
  m.insert(m.end(), lens, lens + 16);
  return m;
}
}  // namespace salamander

TEST(Crypto, EnvelopeOpensToOneReportForEveryRecipient) {
  using namespace salamander;
  SigningKey dev = GenerateSigningKey();
  BoxKeyPair org1 = GenerateBoxKeyPair(), org2 = GenerateBoxKeyPair();
  ReportId id{};
  randombytes_buf(id.data(), id.size());
  std::vector<uint8_t> ad;  // docs/storage-format.md: label || report_id || version (u32 LE) || device key
  const std::string label = "dala/v2/envelope-aead";
  ad.insert(ad.end(), label.begin(), label.end());
  ad.insert(ad.end(), id.begin(), id.end());
  ad.insert(ad.end(), {1, 0, 0, 0});
  ad.insert(ad.end(), dev.public_key.begin(), dev.public_key.end());

  uint8_t k1[32], k2[32], nonce[24];
  crypto_aead_xchacha20poly1305_ietf_keygen(k1);
  crypto_aead_xchacha20poly1305_ietf_keygen(k2);
  randombytes_buf(nonce, sizeof nonce);
  const size_t len = 64, free_block = 2;  // the ciphertext's third block is solved for
  Poly p1 = Derive(k1, nonce, len), p2 = Derive(k2, nonce, len);
  std::vector<uint8_t> ct(len);
  std::vector<uint8_t> tag(16);
  bool found = false;
  for (int attempt = 0; attempt < 200 && !found; ++attempt) {
    randombytes_buf(ct.data(), ct.size());
    std::memset(&ct[free_block * 16], 0, 16);
    const std::vector<uint8_t> mac = MacInput(ad, ct);
    const size_t blocks = mac.size() / 16, index = (ad.size() + 15) / 16 + free_block;
    const cpp_int e = blocks - index;  // the free block is multiplied by r^e
    const cpp_int h1 = Accumulate(mac, p1.r), h2 = Accumulate(mac, p2.r);
    const cpp_int c1 = PowMod(p1.r, e), c2 = PowMod(p2.r, e);
    // With X added to that block: h_i(X) = h_i + X c_i (mod p). Ask for h1 - h2 = s2 - s1 exactly.
    const cpp_int want = ((p2.s - p1.s) % kP + kP) % kP;
    const cpp_int diff = ((c1 - c2) % kP + kP) % kP;
    const cpp_int x = (((want - (h1 - h2)) % kP + kP) % kP) * PowMod(diff, kP - 2) % kP;
    if (x >= (cpp_int(1) << 128)) continue;  // must fit in the block
    PutLe(x, &ct[free_block * 16], 16);
    const std::vector<uint8_t> solved = MacInput(ad, ct);
    const cpp_int t1 = (Accumulate(solved, p1.r) + p1.s) % (cpp_int(1) << 128);
    const cpp_int t2 = (Accumulate(solved, p2.r) + p2.s) % (cpp_int(1) << 128);
    if (t1 != t2) continue;
    PutLe(t1, tag.data(), 16);
    found = true;
  }
  ASSERT_TRUE(found);
  std::vector<uint8_t> sealed_ct = ct;
  sealed_ct.insert(sealed_ct.end(), tag.begin(), tag.end());
  // The crafted ciphertext really authenticates under both keys, to different bytes.
  std::vector<uint8_t> m1(len), m2(len);
  ASSERT_EQ(crypto_aead_xchacha20poly1305_ietf_decrypt(m1.data(), nullptr, nullptr, sealed_ct.data(), sealed_ct.size(),
                                                       ad.data(), ad.size(), nonce, k1), 0);
  ASSERT_EQ(crypto_aead_xchacha20poly1305_ietf_decrypt(m2.data(), nullptr, nullptr, sealed_ct.data(), sealed_ct.size(),
                                                       ad.data(), ad.size(), nonce, k2), 0);
  ASSERT_NE(m1, m2);

  // The device seals k1 to one recipient and k2 to the other, commits to k1 and signs.
  v1::EnvelopeBody body;
  body.set_report_id(id.data(), id.size());
  body.set_version(1);
  body.set_device_key(dev.public_key.data(), 32);
  for (auto [kp, key] : {std::pair{&org1, k1}, std::pair{&org2, k2}}) {
    std::string wrapped(crypto_box_SEALBYTES + 32, '\0');
    crypto_box_seal(reinterpret_cast<uint8_t*>(wrapped.data()), key, 32, kp->public_key.data());
    auto* wk = body.add_keys();
    wk->set_recipient(kp->public_key.data(), 32);
    wk->set_sealed_key(wrapped);
  }
  body.set_nonce(nonce, sizeof nonce);
  body.set_ciphertext(sealed_ct.data(), sealed_ct.size());
  Hash commitment{};
  std::string to_hash(envelope::kDomainKeyCommitment);
  to_hash.append(reinterpret_cast<const char*>(k1), 32);
  commitment = Blake2b256(Bytes(to_hash));
  body.set_key_commitment(commitment.data(), commitment.size());
  v1::SealedEnvelope env;
  env.set_body(body.SerializeAsString());
  Signature sig = Sign(dev, envelope::kDomain, Bytes(env.body()));
  env.set_signature(sig.data(), sig.size());
  const std::string bytes = env.SerializeAsString();

  envelope::Header got;
  ASSERT_TRUE(envelope::Verify(Bytes(bytes), &got).ok());  // a server sees nothing wrong
  auto one = envelope::Open(Bytes(bytes), org1, &got);
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(std::vector<uint8_t>(one->data(), one->data() + one->size()), m1);
  auto two = envelope::Open(Bytes(bytes), org2, &got);
  EXPECT_EQ(two.status().code(), Code::kVerify) << "the second recipient opened other bytes";
}

}  // namespace
}  // namespace dala::crypto
