// dala-server's attachments in an S3 bucket (sync/server/attachment_s3.cc) against a real SeaweedFS
// server, which tests/support/seaweedfs.py starts on 127.0.0.1 and names in DALA_TEST_S3_URL (without it
// these tests fail, they do not skip). Each test writes under a prefix of its own. Two stores opened on the
// same bucket stand for two nodes.
#include <gtest/gtest.h>
#include <sodium.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/fsutil.h"
#include "crypto/chunk_tree.h"
#include "server/attachment_store.h"
#include "server/s3/s3_client.h"
#include "test_util.h"

namespace dala::server {
namespace {

constexpr uint32_t kChunk = 1 << 20;

std::string BucketUrl() {
  const char* url = std::getenv("DALA_TEST_S3_URL");
  return url != nullptr ? url : "";
}

// An attachment of `size` random bytes, its chunk hashes, and its name in the store.
struct Attachment {
  std::vector<uint8_t> bytes;
  std::string hashes;
  std::string name;
  AttachmentShape shape() const { return {bytes.size(), kChunk, hashes}; }
  std::span<const uint8_t> range(uint64_t from, uint64_t to) const { return {bytes.data() + from, to - from}; }
};

Attachment Make(uint64_t size) {
  Attachment a;
  a.bytes.resize(size);
  randombytes_buf(a.bytes.data(), a.bytes.size());
  for (uint64_t at = 0; at < size; at += kChunk) {
    auto h = attachment::ChunkTree::HashChunk({a.bytes.data() + at, std::min<uint64_t>(kChunk, size - at)});
    a.hashes.append(reinterpret_cast<const char*>(h.data()), h.size());
  }
  uint8_t id[8];
  randombytes_buf(id, sizeof id);
  for (uint8_t b : id) a.name += "0123456789abcdef"[b >> 4], a.name += "0123456789abcdef"[b & 15];
  return a;
}

class S3Store : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(BucketUrl().empty()) << "run through tests/support/seaweedfs.py (DALA_TEST_S3_URL)";
    uint8_t p[6];
    randombytes_buf(p, sizeof p);
    prefix_ = "unit";
    for (uint8_t b : p) prefix_ += "0123456789abcdef"[b >> 4], prefix_ += "0123456789abcdef"[b & 15];
    prefix_ += "/";
    url_ = BucketUrl() + "&prefix=" + prefix_;
  }

  // A node's store on the bucket.
  std::unique_ptr<AttachmentStore> Node() {
    auto s = OpenS3Store(url_, true);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(*s) : nullptr;
  }

  // A client of its own, to look at and change the bucket behind the store's back.
  std::unique_ptr<s3::Client> Raw() {
    auto where = s3::ParseUrl(url_);
    auto creds = s3::CredentialsFromEnvironment();
    EXPECT_TRUE(where.ok() && creds.ok());
    return std::make_unique<s3::Client>(*where, *creds);
  }

  // Writes [from, to) in chunks, as an upload request does.
  static void Append(AttachmentWriter& w, const Attachment& a, uint64_t from, uint64_t to) {
    for (uint64_t at = from; at < to; at += kChunk) {
      const uint64_t end = std::min<uint64_t>(to, at + kChunk);
      Status st = w.Append(at, a.range(at, end));
      ASSERT_TRUE(st.ok()) << "at " << at << ": " << st.message();
    }
  }

  // The whole object read back from the bucket equals the attachment.
  void ExpectStored(AttachmentStore& store, const Attachment& a) {
    auto v = store.Verified(a.name, a.shape());
    ASSERT_TRUE(v.ok()) << v.status().message();
    EXPECT_EQ(*v, a.bytes.size());
    const std::string out = dir_.sub("copy-" + a.name);
    ASSERT_TRUE(store.CopyTo(a.name, a.bytes.size(), out).ok());
    auto back = fs::ReadFile(out, a.bytes.size() + 1);
    ASSERT_TRUE(back.ok());
    EXPECT_TRUE(*back == a.bytes);
  }

  std::string prefix_, url_;
  test::TempDir dir_;
};

TEST_F(S3Store, ASmallAttachmentSentInOneRequestIsOneObject) {
  auto store = Node();
  ASSERT_NE(store, nullptr);
  Attachment a = Make(3 * kChunk + 12345);
  auto w = store->Open(a.name, a.shape(), std::nullopt);
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ((*w)->held(), 0u);
  Append(**w, a, 0, a.bytes.size());
  auto durable = (*w)->Sync();
  ASSERT_TRUE(durable.ok()) << durable.status().message();
  EXPECT_EQ(*durable, a.bytes.size());
  ASSERT_TRUE((*w)->Finish().ok());
  ExpectStored(*store, a);
  // Nothing left behind: the object alone, no tail, no open upload.
  auto raw = Raw();
  auto tail = raw->Size(prefix_ + "uploads/" + a.name + ".tail");
  ASSERT_TRUE(tail.ok());
  EXPECT_FALSE(tail->has_value());
  auto uploads = raw->ListUploads(prefix_ + "attachments/" + a.name);
  ASSERT_TRUE(uploads.ok());
  EXPECT_TRUE(uploads->empty());
  auto held = store->Held(a.name, a.shape());
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, a.bytes.size());
}

// A phone's connection cut after 11 of 20 chunks: one 8 MiB part and a 3 MiB tail are durable; another
// node resumes there, and the object is whole and exact.
TEST_F(S3Store, ACutUploadResumesOnAnotherNodeFromItsPartsAndTail) {
  auto a_node = Node(), b_node = Node();
  ASSERT_TRUE(a_node && b_node);
  Attachment a = Make(20 * kChunk + 777);
  {
    auto w = a_node->Open(a.name, a.shape(), std::nullopt);
    ASSERT_TRUE(w.ok()) << w.status().message();
    Append(**w, a, 0, 11 * kChunk);
    auto durable = (*w)->Sync();
    ASSERT_TRUE(durable.ok()) << durable.status().message();
    EXPECT_EQ(*durable, 11u * kChunk);
  }
  auto held = b_node->Held(a.name, a.shape());
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 11u * kChunk);
  auto w = b_node->Open(a.name, a.shape(), std::nullopt);
  ASSERT_TRUE(w.ok()) << w.status().message();
  EXPECT_EQ((*w)->held(), 11u * kChunk);
  Append(**w, a, 11 * kChunk, a.bytes.size());
  auto durable = (*w)->Sync();
  ASSERT_TRUE(durable.ok()) << durable.status().message();
  EXPECT_EQ(*durable, a.bytes.size());
  ASSERT_TRUE((*w)->Finish().ok());
  ExpectStored(*a_node, a);
}

// An attachment sent in three requests, each taken by another node, the first cut after its first part:
// each node resumes where the bucket stands.
TEST_F(S3Store, AnUploadInThreeRequestsOnThreeNodes) {
  Attachment a = Make(20 * kChunk + 4321);
  {
    auto first = Node();  // (a writer lives within its store)
    auto w = first->Open(a.name, a.shape(), std::nullopt);
    ASSERT_TRUE(w.ok()) << w.status().message();
    Append(**w, a, 0, 9 * kChunk);  // cut: the first part stored, a chunk in memory only
  }
  uint64_t at = 0;
  for (uint64_t to : {uint64_t{16} * kChunk, uint64_t{a.bytes.size()}}) {
    auto store = Node();
    auto w = store->Open(a.name, a.shape(), std::nullopt);
    ASSERT_TRUE(w.ok()) << w.status().message();
    at = (*w)->held();
    EXPECT_EQ(at, to == a.bytes.size() ? 16ull * kChunk : 8ull * kChunk);
    Append(**w, a, at, to);
    auto durable = (*w)->Sync();
    ASSERT_TRUE(durable.ok()) << durable.status().message();
    EXPECT_EQ(*durable, to);
    if (to == a.bytes.size()) {
      ASSERT_TRUE((*w)->Finish().ok());
      ExpectStored(*store, a);
    }
  }
}

// Bytes appended but never synced (a node killed mid-request) do not count: the next node holds what was
// durable, whole parts only.
TEST_F(S3Store, BytesNeverSyncedAreNotCounted) {
  auto store = Node();
  ASSERT_NE(store, nullptr);
  Attachment a = Make(20 * kChunk);
  {
    auto w = store->Open(a.name, a.shape(), std::nullopt);
    ASSERT_TRUE(w.ok()) << w.status().message();
    Append(**w, a, 0, 10 * kChunk);  // the first 8 MiB went out as a part; 2 MiB only in memory
  }
  auto held = Node()->Held(a.name, a.shape());
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 8u * kChunk);
}

// A tail object whose bytes do not verify (damaged, or left from an older position) counts for nothing.
TEST_F(S3Store, ATailThatDoesNotVerifyCountsForNothing) {
  auto store = Node();
  ASSERT_NE(store, nullptr);
  Attachment a = Make(12 * kChunk);
  {
    auto w = store->Open(a.name, a.shape(), std::nullopt);
    ASSERT_TRUE(w.ok()) << w.status().message();
    Append(**w, a, 0, 10 * kChunk);
    ASSERT_TRUE((*w)->Sync().ok());
  }
  auto raw = Raw();
  const std::string tail_key = prefix_ + "uploads/" + a.name + ".tail";
  auto tail = raw->GetSmall(tail_key, 16 << 20);
  ASSERT_TRUE(tail.ok() && tail->has_value());
  ASSERT_EQ((*tail)->size(), 2u * kChunk);
  std::string damaged = **tail;
  damaged[kChunk + 5] ^= 1;  // the tail's second chunk
  ASSERT_TRUE(raw->Put(tail_key, {reinterpret_cast<const uint8_t*>(damaged.data()), damaged.size()}).ok());
  auto held = store->Held(a.name, a.shape());
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 9u * kChunk);  // the part, and the tail's first chunk
  // Bytes of the attachment from another place (a tail left from an older position) do not verify here.
  ASSERT_TRUE(raw->Put(tail_key, a.range(0, 2 * kChunk)).ok());
  held = store->Held(a.name, a.shape());
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, 8u * kChunk);
  // Nor does one larger than any the server writes: it does not stop the upload either.
  std::vector<uint8_t> huge(10 * kChunk, 0x5a);
  ASSERT_TRUE(raw->Put(tail_key, huge).ok());
  held = store->Held(a.name, a.shape());
  ASSERT_TRUE(held.ok()) << held.status().message();
  EXPECT_EQ(*held, 8u * kChunk);
}

// A part of the wrong size (another program's, or the bucket changed behind the server's back) counts for
// nothing, least of all one larger than what is left of the attachment: only parts of the store's part
// size from the start, the last one what remains.
TEST_F(S3Store, APartOfTheWrongSizeIsNotCounted) {
  auto raw = Raw();
  Attachment a = Make(20 * kChunk);  // parts of 8 MiB
  const std::string key = prefix_ + "attachments/" + a.name;
  auto id = raw->CreateUpload(key);
  ASSERT_TRUE(id.ok()) << id.status().message();
  ASSERT_TRUE(raw->UploadPart(key, *id, 1, a.range(0, 5 * kChunk)).ok());  // its own bytes, 5 MiB
  auto held = Node()->Held(a.name, a.shape());
  ASSERT_TRUE(held.ok()) << held.status().message();
  EXPECT_EQ(*held, 0u);
  // 3 MiB attachment, one part of 4 MiB: its bytes, then a megabyte more.
  Attachment b = Make(3 * kChunk);
  Attachment more = Make(4 * kChunk);
  std::copy(b.bytes.begin(), b.bytes.end(), more.bytes.begin());
  const std::string key_b = prefix_ + "attachments/" + b.name;
  auto id_b = raw->CreateUpload(key_b);
  ASSERT_TRUE(id_b.ok());
  ASSERT_TRUE(raw->UploadPart(key_b, *id_b, 1, more.bytes).ok());
  held = Node()->Held(b.name, b.shape());
  ASSERT_TRUE(held.ok()) << held.status().message();
  EXPECT_EQ(*held, 0u);
}

// Two nodes writing the same attachment at once (a phone's request retried on the other node while the
// first still runs): each part holds the same bytes whichever node wrote it, both complete, the object
// is exact.
TEST_F(S3Store, TwoNodesCompletingTheSameUploadAtOnce) {
  auto a_node = Node(), b_node = Node();
  ASSERT_TRUE(a_node && b_node);
  Attachment a = Make(18 * kChunk + 5);
  auto wa = a_node->Open(a.name, a.shape(), std::nullopt);
  auto wb = b_node->Open(a.name, a.shape(), std::nullopt);
  ASSERT_TRUE(wa.ok() && wb.ok());
  Status sa, sb;
  std::thread ta([&] {
    Append(**wa, a, 0, a.bytes.size());
    auto d = (*wa)->Sync();
    sa = d.ok() ? (*wa)->Finish() : d.status();
  });
  std::thread tb([&] {
    Append(**wb, a, 0, a.bytes.size());
    auto d = (*wb)->Sync();
    sb = d.ok() ? (*wb)->Finish() : d.status();
  });
  ta.join();
  tb.join();
  EXPECT_TRUE(sa.ok()) << sa.message();
  EXPECT_TRUE(sb.ok()) << sb.message();
  ExpectStored(*a_node, a);
}

// `dala-server check` reads every byte back: an object changed in the bucket is found.
TEST_F(S3Store, AnObjectChangedInTheBucketIsFoundByAFullRead) {
  auto store = Node();
  ASSERT_NE(store, nullptr);
  Attachment a = Make(9 * kChunk + 100);
  auto w = store->Open(a.name, a.shape(), std::nullopt);
  ASSERT_TRUE(w.ok()) << w.status().message();
  Append(**w, a, 0, a.bytes.size());
  ASSERT_TRUE((*w)->Sync().ok());
  ASSERT_TRUE((*w)->Finish().ok());
  std::vector<uint8_t> changed = a.bytes;
  changed[5 * kChunk + 3] ^= 0x20;
  ASSERT_TRUE(Raw()->Put(prefix_ + "attachments/" + a.name, changed).ok());
  auto v = store->Verified(a.name, a.shape());
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 5u * kChunk);
  // The size alone (HEAD) is unchanged: only reading finds it.
  auto held = store->Held(a.name, a.shape());
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(*held, a.bytes.size());
}

TEST(S3Url, OnlyWellFormedLocationsAreTaken) {
  auto ok = s3::ParseUrl("s3://my-bucket?endpoint=https://s3.example.org:9000&region=eu-west-1&prefix=org/a");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->bucket, "my-bucket");
  EXPECT_EQ(ok->endpoint, "https://s3.example.org:9000");
  EXPECT_EQ(ok->region, "eu-west-1");
  EXPECT_EQ(ok->prefix, "org/a/");
  EXPECT_EQ(ok->stall_seconds, 20);
  auto quick = s3::ParseUrl("s3://bucket?endpoint=http://127.0.0.1:9&timeout=3");
  ASSERT_TRUE(quick.ok());
  EXPECT_EQ(quick->stall_seconds, 3);
  for (const char* bad : {"s3://b?endpoint=http://h", "s3://Bucket?endpoint=http://h", "http://bucket",
                          "s3://bucket", "s3://bucket?endpoint=ftp://h", "s3://bucket?endpoint=http://h/path",
                          "s3://bucket?endpoint=http://user@h", "s3://bucket?endpoint=http://h&color=red",
                          "s3://bucket?endpoint=http://h&prefix=/abs", "s3://bucket?endpoint=http://h&prefix=a%2f",
                          "s3://bucket?endpoint=http://h&timeout=0", "s3://bucket?endpoint=http://h&timeout=5s"})
    EXPECT_FALSE(s3::ParseUrl(bad).ok()) << bad;
}

}  // namespace
}  // namespace dala::server
