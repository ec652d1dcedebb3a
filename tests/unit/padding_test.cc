// Issue 14, item 7: sizes that say little. Padmé lengths; envelopes, signed requests and attachment files
// of nearby sizes are the same size on the wire; what was padded comes back exactly.
#include <gtest/gtest.h>
#include <sodium.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "base/padding.h"
#include "crypto/attachment_file.h"
#include "crypto/crypto.h"
#include "format/envelope.h"
#include "format/request.h"

namespace dala {
namespace {

TEST(Padding, PadmeLengths) {
  EXPECT_EQ(PadmeLength(0, 512), 512u);
  EXPECT_EQ(PadmeLength(512, 512), 512u);
  EXPECT_EQ(PadmeLength(1000, 0), 1024u);        // E = 9, S = 4: the last 5 bits rounded up
  EXPECT_EQ(PadmeLength(1025, 0), 1088u);         // E = 10, S = 4: the last 6 bits
  EXPECT_EQ(PadmeLength(1u << 20, 0), 1u << 20);  // already a bucket
  uint64_t prev = 0;
  std::set<uint64_t> buckets;
  for (uint64_t n = 1; n < (1u << 22); n = n * 9 / 8 + 1) {
    uint64_t p = PadmeLength(n, 0);
    EXPECT_GE(p, n);
    EXPECT_GE(p, prev);                           // monotonic
    EXPECT_LE(p - n, n / 8 + 1) << n;             // at most about 12% more
    prev = p;
  }
  for (uint64_t n = 100000; n < 110000; ++n) buckets.insert(PadmeLength(n, 0));
  EXPECT_LE(buckets.size(), 6u);                  // 10,000 lengths fall into a handful of sizes (2 KiB apart)
}

TEST(Padding, EnvelopesOfNearbySizesAreTheSameSize) {
  crypto::SigningKey dev = crypto::GenerateSigningKey();
  crypto::BoxKeyPair org = crypto::GenerateBoxKeyPair();
  envelope::Header h;
  randombytes_buf(h.report_id.data(), 16);
  h.version = 1;
  h.device_key = dev.public_key;
  std::set<size_t> sizes;
  for (size_t n : {size_t{1}, size_t{300}, size_t{900}, size_t{1000}}) {
    std::string report(n, 'r');
    auto env = envelope::Seal(dev, h, crypto::Bytes(report), std::vector<crypto::PublicKey>{org.public_key});
    ASSERT_TRUE(env.ok());
    sizes.insert(env->size());
    envelope::Header got;
    auto back = envelope::Open(crypto::Bytes(*env), org, &got);
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(back->data()), back->size()), report);  // unpadded exactly
  }
  EXPECT_EQ(sizes.size(), 1u) << "reports of 1 to 1000 bytes sealed to envelopes of different sizes";
  std::set<size_t> larger;
  for (size_t n = 5000; n < 5100; n += 10) {
    std::string report(n, 'r');
    auto env = envelope::Seal(dev, h, crypto::Bytes(report), std::vector<crypto::PublicKey>{org.public_key});
    ASSERT_TRUE(env.ok());
    larger.insert(env->size());
  }
  EXPECT_EQ(larger.size(), 1u);
}

TEST(Padding, SignedRequestsOfNearbySizesAreTheSameSize) {
  crypto::SigningKey dev = crypto::GenerateSigningKey();
  std::set<size_t> sizes;
  for (size_t n : {size_t{10}, size_t{100}, size_t{300}}) {
    v1::Request r;
    r.set_device_key(dev.public_key.data(), 32);
    r.set_server_key(std::string(32, 's'));
    r.mutable_push()->add_envelopes(std::string(n, 'e'));
    std::string signed_request = protocol::SignRequest(dev, r);
    sizes.insert(signed_request.size());
    auto back = protocol::VerifyRequest(crypto::Bytes(signed_request));
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->push().envelopes(0).size(), n);
  }
  EXPECT_EQ(sizes.size(), 1u);
  EXPECT_EQ(*sizes.begin(), protocol::kRequestMinimum);
  // Larger requests land exactly on their Padmé length too, across the lengths where a prefix grows.
  for (size_t n : {size_t{600}, size_t{16000}, size_t{16500}, size_t{70000}, size_t{2'100'000}}) {
    v1::Request r;
    r.set_device_key(dev.public_key.data(), 32);
    r.set_server_key(std::string(32, 's'));
    r.mutable_push()->add_envelopes(std::string(n, 'e'));
    size_t got = protocol::SignRequest(dev, r).size();
    EXPECT_EQ(PadmeLength(got, protocol::kRequestMinimum), got) << n;
    EXPECT_LE(got, n + n / 8 + 200) << n;
  }
}

// An envelope that says it is padded and is not (the device signed it, the content key is right) does not
// open: unpadding is checked, not assumed.
TEST(Padding, AnEnvelopeWhosePaddingIsWrongDoesNotOpen) {
  crypto::SigningKey dev = crypto::GenerateSigningKey();
  crypto::BoxKeyPair org = crypto::GenerateBoxKeyPair();
  envelope::Header h;
  randombytes_buf(h.report_id.data(), 16);
  h.version = 1;
  h.device_key = dev.public_key;
  auto env = envelope::Seal(dev, h, crypto::Bytes(std::string(100, 'r')), std::vector<crypto::PublicKey>{org.public_key});
  ASSERT_TRUE(env.ok());
  // Re-made as a forger holding the device key would: the same content key, the padding's 0x80 removed.
  v1::SealedEnvelope se;
  ASSERT_TRUE(se.ParseFromString(*env));
  v1::EnvelopeBody body;
  ASSERT_TRUE(body.ParseFromString(se.body()));
  uint8_t key[32];
  ASSERT_EQ(crypto_box_seal_open(key, reinterpret_cast<const uint8_t*>(body.keys(0).sealed_key().data()),
                                 body.keys(0).sealed_key().size(), org.public_key.data(), org.secret_key.data()),
            0);
  std::string ad = "dala/v2/envelope-aead";
  ad.append(reinterpret_cast<const char*>(h.report_id.data()), 16);
  uint8_t v[4] = {1, 0, 0, 0};
  ad.append(reinterpret_cast<const char*>(v), 4);
  ad.append(reinterpret_cast<const char*>(dev.public_key.data()), 32);
  std::string plain(body.ciphertext().size() - 16, '\0');
  unsigned long long n = 0;
  ASSERT_EQ(crypto_aead_xchacha20poly1305_ietf_decrypt(
                reinterpret_cast<uint8_t*>(plain.data()), &n, nullptr,
                reinterpret_cast<const uint8_t*>(body.ciphertext().data()), body.ciphertext().size(),
                reinterpret_cast<const uint8_t*>(ad.data()), ad.size(),
                reinterpret_cast<const uint8_t*>(body.nonce().data()), key),
            0)
      << "the test's associated data is not the envelope's";
  ASSERT_EQ(static_cast<uint8_t>(plain[100]), 0x80);
  plain[100] = 0;  // no marker: all zeros after the report
  std::string ct(plain.size() + 16, '\0');
  crypto_aead_xchacha20poly1305_ietf_encrypt(reinterpret_cast<uint8_t*>(ct.data()), &n,
                                             reinterpret_cast<const uint8_t*>(plain.data()), plain.size(),
                                             reinterpret_cast<const uint8_t*>(ad.data()), ad.size(), nullptr,
                                             reinterpret_cast<const uint8_t*>(body.nonce().data()), key);
  body.set_ciphertext(ct);
  se.set_body(body.SerializeAsString());
  auto sig = crypto::Sign(dev, envelope::kDomain, crypto::Bytes(se.body()));
  se.set_signature(sig.data(), sig.size());
  envelope::Header got;
  auto opened = envelope::Open(crypto::Bytes(se.SerializeAsString()), org, &got);
  EXPECT_EQ(opened.status().code(), Code::kVerify);
  EXPECT_NE(opened.status().message().find("padded"), std::string::npos) << opened.status().message();
}

// An attachment file whose padding is not zeros (written with the file's key) does not read.
TEST(Padding, AnAttachmentWhosePaddingIsNotZerosDoesNotRead) {
  uint8_t key[32];
  crypto_secretstream_xchacha20poly1305_keygen(key);
  const std::string data = "a photograph";
  std::string plain = data + std::string(attachment::PaddedSize(data.size()) - data.size(), '\0');
  plain[data.size() + 7] = 1;  // one byte of the padding
  crypto_secretstream_xchacha20poly1305_state st;
  uint8_t header[crypto_secretstream_xchacha20poly1305_HEADERBYTES];
  crypto_secretstream_xchacha20poly1305_init_push(&st, header, key);
  std::string file(reinterpret_cast<const char*>(header), sizeof header);
  std::string piece(plain.size() + crypto_secretstream_xchacha20poly1305_ABYTES, '\0');
  crypto_secretstream_xchacha20poly1305_push(&st, reinterpret_cast<uint8_t*>(piece.data()), nullptr,
                                             reinterpret_cast<const uint8_t*>(plain.data()), plain.size(), nullptr, 0,
                                             crypto_secretstream_xchacha20poly1305_TAG_FINAL);
  file += piece;
  std::string path = std::filesystem::temp_directory_path() / ("dala-pad-" + std::to_string(getpid()));
  { std::ofstream(path, std::ios::binary) << file; }
  attachment::Reader::Expect expect;
  expect.size = data.size();
  expect.plaintext_hash = crypto::Blake2b256(crypto::Bytes(data));
  auto reader = attachment::Reader::Open(path, std::span<const uint8_t>(key, 32), expect);
  ASSERT_TRUE(reader.ok());
  uint8_t buf[64];
  auto n = (*reader)->Read(buf);
  EXPECT_EQ(n.status().code(), Code::kVerify);
  EXPECT_NE(n.status().message().find("padding"), std::string::npos) << n.status().message();
  std::filesystem::remove(path);
}

TEST(Padding, AttachmentFilesOfNearbySizesAreTheSameSize) {
  EXPECT_EQ(attachment::PaddedSize(1), 4096u);
  EXPECT_EQ(attachment::PaddedSize(100000), attachment::PaddedSize(100300));
  EXPECT_EQ(attachment::CiphertextSize(attachment::PaddedSize(3'000'000)),
            attachment::CiphertextSize(attachment::PaddedSize(3'010'000)));
}

}  // namespace
}  // namespace dala
