// Issue 14, item 7: sizes that say little. Padmé lengths; envelopes, signed requests and attachment files
// of nearby sizes are the same size on the wire; what was padded comes back exactly.
#include <gtest/gtest.h>
#include <sodium.h>

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

TEST(Padding, AttachmentFilesOfNearbySizesAreTheSameSize) {
  EXPECT_EQ(attachment::PaddedSize(1), 4096u);
  EXPECT_EQ(attachment::PaddedSize(100000), attachment::PaddedSize(100300));
  EXPECT_EQ(attachment::CiphertextSize(attachment::PaddedSize(3'000'000)),
            attachment::CiphertextSize(attachment::PaddedSize(3'010'000)));
}

}  // namespace
}  // namespace dala
