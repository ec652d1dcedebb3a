// Attachments: capture without plaintext on disk, read-back that detects every alteration, the chunk tree
// the server verifies, sealing into the envelope, and the lifecycle of the files (issue 4).
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "crypto/attachment_file.h"
#include "base/fsutil.h"
#include "test_util.h"
#include "crypto/chunk_tree.h"
#include "format/envelope.h"
#include "format/manifest.h"

namespace dala {
namespace {

using test::FastOptions;
using test::RawKey;
using test::TempDir;

std::vector<uint8_t> Pattern(size_t n, uint32_t seed) { return test::PseudoRandomBytes(n, seed); }

struct Fixture {
  TempDir t;
  std::string dir = t.sub("s");
  std::unique_ptr<Store> store;
  Fixture() {
    auto s = Store::Create(dir, RawKey(1), FastOptions());
    EXPECT_TRUE(s.ok()) << s.status().message();
    store = std::move(s).value();
  }
  Report Draft() {
    auto r = store->CreateDraft("detention/1");
    EXPECT_TRUE(r.ok());
    return std::move(r).value();
  }
  // Captures `data` in writes of `step` bytes.
  AttachmentInfo Capture(const ReportId& id, const std::vector<uint8_t>& data, size_t step = 7000,
                         const std::string& mime = "video/mp4") {
    auto c = store->CaptureAttachment(id, mime);
    EXPECT_TRUE(c.ok()) << c.status().message();
    for (size_t i = 0; i < data.size(); i += step) {
      size_t n = std::min(step, data.size() - i);
      EXPECT_TRUE((*c)->Write({data.data() + i, n}).ok());
    }
    auto info = (*c)->Finish();
    EXPECT_TRUE(info.ok()) << info.status().message();
    return *info;
  }
  Result<std::vector<uint8_t>> ReadAll(const AttachmentId& id) {
    DALA_ASSIGN_OR_RETURN(auto reader, store->OpenAttachment(id));
    std::vector<uint8_t> out;
    uint8_t buf[10007];
    for (;;) {
      DALA_ASSIGN_OR_RETURN(size_t n, reader->Read(buf));
      if (n == 0) break;
      out.insert(out.end(), buf, buf + n);
    }
    return out;
  }
  std::vector<std::string> MediaFiles() {
    auto files = fs::ListFiles(fs::Join(dir, kAttachmentDirName));
    return files.ok() ? *files : std::vector<std::string>{};
  }
  std::string FileOf(const AttachmentId& id) {
    auto f = store->LocalAttachmentFile(id);
    EXPECT_TRUE(f.ok());
    return f.ok() ? f->path : "";
  }
};

TEST(Attachment, RoundTripsAtEverySizeBoundary) {
  Fixture f;
  Report r = f.Draft();
  const size_t P = attachment::kPiece;
  for (size_t n : {size_t{0}, size_t{1}, P - 1, P, P + 1, 2 * P, 3 * P + 5, size_t{attachment::kUploadChunk} + 3}) {
    for (size_t step : {size_t{1000}, P, 3 * P}) {
      if (n > 200000 && step == 1000) continue;  // keeps the test fast
      auto data = Pattern(n, static_cast<uint32_t>(n + step));
      AttachmentInfo info = f.Capture(r.id(), data, step);
      EXPECT_EQ(info.size, n);
      EXPECT_EQ(info.ciphertext_size, attachment::CiphertextSize(attachment::PaddedSize(n)));
      EXPECT_EQ(info.plaintext_hash, crypto::Blake2b256(data));
      EXPECT_EQ(std::filesystem::file_size(f.FileOf(info.id)), info.ciphertext_size);
      auto back = f.ReadAll(info.id);
      ASSERT_TRUE(back.ok()) << back.status().message() << " n=" << n << " step=" << step;
      EXPECT_EQ(*back, data) << "n=" << n << " step=" << step;
    }
  }
}

TEST(Attachment, ChunkTreeMatchesTheFileOnDisk) {
  Fixture f;
  Report r = f.Draft();
  auto data = Pattern(2 * attachment::kUploadChunk + 12345, 9);
  AttachmentInfo info = f.Capture(r.id(), data, 65536 * 3 + 11);
  auto bytes = fs::ReadFile(f.FileOf(info.id), 16u << 20);
  ASSERT_TRUE(bytes.ok());
  attachment::ChunkTree tree;
  tree.Update(*bytes);
  EXPECT_EQ(tree.Finish(), info.ciphertext_hash);
  EXPECT_EQ(tree.chunk_hashes().size(), 32u * 3);
  // The first chunk hash is the plain BLAKE2b-256 of the first MiB of ciphertext.
  crypto::Hash first = attachment::ChunkTree::HashChunk({bytes->data(), attachment::kUploadChunk});
  EXPECT_EQ(0, std::memcmp(first.data(), tree.chunk_hashes().data(), 32));
}

TEST(Attachment, NoPlaintextReachesTheDisk) {
  Fixture f;
  Report r = f.Draft();
  const std::string canary = "CANARY-media-9d2e-Konshbaev";
  std::vector<uint8_t> data;
  for (int i = 0; i < 3000; ++i) data.insert(data.end(), canary.begin(), canary.end());
  AttachmentInfo info = f.Capture(r.id(), data);
  // A capture in progress, too: its partial file holds no plaintext either.
  auto open = f.store->CaptureAttachment(r.id(), "audio/ogg");
  ASSERT_TRUE(open.ok());
  ASSERT_TRUE((*open)->Write(data).ok());
  std::string where;
  EXPECT_FALSE(test::TreeContains(f.dir, canary, &where)) << where;
  auto back = f.ReadAll(info.id);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, data);
}

// Each alteration of the file is refused with kVerify and a message saying what happened.
TEST(Attachment, TamperedTruncatedReorderedOrExtendedFilesAreRefused) {
  Fixture f;
  Report r = f.Draft();
  auto data = Pattern(5 * attachment::kPiece + 100, 3);
  AttachmentInfo info = f.Capture(r.id(), data);
  const std::string path = f.FileOf(info.id);
  auto original = *fs::ReadFile(path, 16u << 20);
  auto put = [&](const std::vector<uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  };
  const size_t piece = attachment::kPiece + crypto_secretstream_xchacha20poly1305_ABYTES;
  const size_t header = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
  struct Case {
    const char* name;
    std::function<std::vector<uint8_t>()> make;
    const char* says;
  } cases[] = {
      {"one flipped byte", [&] { auto b = original; b[header + piece + 10] ^= 1; return b; }, "altered"},
      {"cut at a piece boundary", [&] { return std::vector<uint8_t>(original.begin(), original.begin() + header + 2 * piece); }, "truncated"},
      {"cut inside a piece", [&] { return std::vector<uint8_t>(original.begin(), original.end() - 50); }, "truncated"},
      {"only the header", [&] { return std::vector<uint8_t>(original.begin(), original.begin() + header); }, "truncated"},
      {"empty file", [&] { return std::vector<uint8_t>(); }, "truncated"},
      {"two pieces swapped", [&] {
         auto b = original;
         std::swap_ranges(b.begin() + header, b.begin() + header + piece, b.begin() + header + piece);
         return b;
       }, "reordered"},
      {"bytes after the end", [&] { auto b = original; b.push_back(0); return b; }, "after its end"},
  };
  for (const auto& c : cases) {
    put(c.make());
    auto back = f.ReadAll(info.id);
    ASSERT_FALSE(back.ok()) << c.name;
    EXPECT_EQ(back.status().code(), Code::kVerify) << c.name << ": " << back.status().message();
    EXPECT_NE(back.status().message().find(c.says), std::string::npos) << c.name << ": " << back.status().message();
  }
  put(original);
  EXPECT_TRUE(f.ReadAll(info.id).ok());
  std::filesystem::remove(path);
  auto gone = f.ReadAll(info.id);
  EXPECT_EQ(gone.status().code(), Code::kNotFound);
}

TEST(Attachment, SealedReportCarriesKeysInsideAndManifestsOutside) {
  Fixture f;
  auto desk = crypto::GenerateBoxKeyPair();
  ASSERT_TRUE(f.store->SetRecipients("org", {desk.public_key}).ok());
  Report r = f.Draft();
  auto data = Pattern(attachment::kUploadChunk + 777, 5);
  AttachmentInfo a = f.Capture(r.id(), data);
  AttachmentInfo b = f.Capture(r.id(), Pattern(10, 6), 10, "image/jpeg");
  ASSERT_TRUE(f.store->Seal(r).ok());
  ASSERT_EQ(r.content.attachments_size(), 2);
  EXPECT_EQ(r.content.attachments(0).key().size(), 32u);
  EXPECT_EQ(r.content.attachments(1).mime_type(), "image/jpeg");
  // Attachments of a sealed version cannot change.
  EXPECT_EQ(f.store->CaptureAttachment(r.id(), "image/png").status().code(), Code::kState);
  EXPECT_EQ(f.store->RemoveAttachment(a.id).code(), Code::kNotFound);

  auto batch = f.store->NextBatch("org", 10, 64u << 20);
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->size(), 1u);
  envelope::Header h;
  ASSERT_TRUE(envelope::Verify((*batch)[0].envelope, &h).ok());
  ASSERT_EQ(h.attachments.size(), 2u);
  EXPECT_EQ(h.attachments[0].size(), a.ciphertext_size);
  EXPECT_EQ(h.attachments[0].chunk_hashes().size(), 64u);
  EXPECT_EQ(0, std::memcmp(h.attachments[0].root().data(), a.ciphertext_hash.data(), 32));
  // The server-visible envelope holds neither the key nor the plaintext hash.
  std::string env(reinterpret_cast<const char*>((*batch)[0].envelope.data()), (*batch)[0].envelope.size());
  EXPECT_EQ(env.find(r.content.attachments(0).key()), std::string::npos);
  EXPECT_EQ(env.find(std::string(reinterpret_cast<const char*>(a.plaintext_hash.data()), 32)), std::string::npos);
  // The organisation's key opens the content and finds both attachments with their keys.
  auto plain = envelope::Open((*batch)[0].envelope, desk, &h);
  ASSERT_TRUE(plain.ok());
  auto content = VerifySignedReport(plain->span());
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(content->attachments_size(), 2);
  EXPECT_EQ(content->attachments(0).ciphertext_hash(), h.attachments[0].root());

  // A new version carries them on and may add more; deleting its draft removes only the new one.
  auto v2 = f.store->Edit(r.id());
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->content.attachments_size(), 2);
  EXPECT_TRUE(v2->content.attachments(0).key().empty());  // drafts never show keys
  AttachmentInfo c = f.Capture(r.id(), Pattern(100, 7));
  EXPECT_EQ(c.version, 2u);
  EXPECT_EQ(f.MediaFiles().size(), 3u);
  ASSERT_TRUE(f.store->DeleteDraft(r.id()).ok());
  EXPECT_EQ(f.MediaFiles().size(), 2u);
  EXPECT_EQ(f.store->OpenAttachment(c.id).status().code(), Code::kNotFound);
  EXPECT_TRUE(f.ReadAll(a.id).ok());
}

TEST(Attachment, ManifestChecksRefuseInconsistentOnes) {
  Fixture f;
  Report r = f.Draft();
  AttachmentInfo a = f.Capture(r.id(), Pattern(3 * attachment::kUploadChunk, 8), 1 << 20);
  std::vector<v1::AttachmentManifest> ms;
  auto batch_dir = f.dir;
  v1::AttachmentManifest m;
  m.set_attachment_id(std::string(reinterpret_cast<const char*>(a.id.data()), 16));
  m.set_size(a.ciphertext_size);
  m.set_chunk_size(attachment::kUploadChunk);
  auto bytes = fs::ReadFile(f.FileOf(a.id), 16u << 20);
  attachment::ChunkTree tree;
  tree.Update(*bytes);
  auto root = tree.Finish();
  m.set_root(std::string(reinterpret_cast<const char*>(root.data()), 32));
  m.set_chunk_hashes(tree.chunk_hashes());
  EXPECT_TRUE(attachment::CheckManifest(m).ok());
  auto bad = m;
  bad.mutable_chunk_hashes()->at(5) ^= 1;
  EXPECT_EQ(attachment::CheckManifest(bad).code(), Code::kVerify);
  bad = m;
  bad.set_size(m.size() + attachment::kUploadChunk);
  EXPECT_EQ(attachment::CheckManifest(bad).code(), Code::kVerify);
  bad = m;
  bad.set_chunk_size(100);
  EXPECT_EQ(attachment::CheckManifest(bad).code(), Code::kVerify);
  bad = m;
  bad.set_attachment_id("short");
  EXPECT_EQ(attachment::CheckManifest(bad).code(), Code::kVerify);
}

TEST(Attachment, LifecycleRemovesFiles) {
  Fixture f;
  Report r = f.Draft();
  AttachmentInfo a = f.Capture(r.id(), Pattern(1000, 1));
  AttachmentInfo b = f.Capture(r.id(), Pattern(1000, 2));
  EXPECT_EQ(f.MediaFiles().size(), 2u);
  // Removing one from the draft.
  ASSERT_TRUE(f.store->RemoveAttachment(a.id).ok());
  EXPECT_EQ(f.MediaFiles().size(), 1u);
  // An abandoned capture leaves nothing.
  {
    auto c = f.store->CaptureAttachment(r.id(), "video/mp4");
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE((*c)->Write(Pattern(100000, 3)).ok());
    EXPECT_EQ(f.MediaFiles().size(), 2u);
  }
  EXPECT_EQ(f.MediaFiles().size(), 1u);
  // A crash during capture leaves an orphan file; the next open removes it and keeps the rest.
  f.store.reset();
  {
    std::ofstream orphan(fs::Join(fs::Join(f.dir, kAttachmentDirName), "0123456789abcdef0123456789abcdef.att"));
    orphan << "half a capture";
  }
  EXPECT_EQ(f.MediaFiles().size(), 2u);
  f.store = std::move(Store::Open(f.dir, RawKey(1), FastOptions())).value();
  EXPECT_EQ(f.MediaFiles().size(), 1u);
  EXPECT_TRUE(f.ReadAll(b.id).ok());
  // Deleting the draft removes its files; wiping removes the media directory.
  AttachmentInfo c = f.Capture(r.id(), Pattern(10, 4));
  ASSERT_TRUE(f.store->DeleteDraft(r.id()).ok());
  EXPECT_TRUE(f.MediaFiles().empty());
  Report r2 = f.Draft();
  f.Capture(r2.id(), Pattern(10, 5));
  f.store.reset();
  ASSERT_TRUE(Store::Wipe(f.dir).ok());
  EXPECT_FALSE(std::filesystem::exists(fs::Join(f.dir, kAttachmentDirName)));
  (void)c;
}

TEST(Attachment, DeleteAfterDeliveryRemovesFilesOnlyWhenNoVersionNeedsThem) {
  Fixture f;
  ASSERT_TRUE(f.store->SetRecipients("org", {crypto::GenerateBoxKeyPair().public_key}).ok());
  ASSERT_TRUE(f.store->SetDeleteAfterDelivery(true).ok());
  Report r = f.Draft();
  AttachmentInfo a = f.Capture(r.id(), Pattern(1000, 1));
  ASSERT_TRUE(f.store->Seal(r).ok());
  auto v2 = f.store->Edit(r.id());  // a draft of version 2 still needs the attachment
  ASSERT_TRUE(v2.ok());
  ASSERT_TRUE(f.store->NextBatch("org", 10, 1u << 20).ok());
  ASSERT_TRUE(f.store->MarkDelivered("org", r.id(), 1, std::vector<uint8_t>{1, 2, 3}).ok());
  EXPECT_EQ(f.MediaFiles().size(), 1u);
  EXPECT_TRUE(f.ReadAll(a.id).ok());
  ASSERT_TRUE(f.store->DeleteDraft(r.id()).ok());  // now nothing needs it
  EXPECT_TRUE(f.MediaFiles().empty());
  EXPECT_EQ(f.store->OpenAttachment(a.id).status().code(), Code::kNotFound);
}

TEST(Attachment, BadInputIsRefusedClearly) {
  Fixture f;
  Report r = f.Draft();
  EXPECT_EQ(f.store->CaptureAttachment(r.id(), "").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(f.store->CaptureAttachment(r.id(), "video").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(f.store->CaptureAttachment(r.id(), "video/mp4\r\nX: y").status().code(), Code::kInvalidArgument);
  ReportId unknown{};
  EXPECT_EQ(f.store->CaptureAttachment(unknown, "video/mp4").status().code(), Code::kNotFound);
  auto missing = f.store->ImportAttachment(r.id(), f.t.sub("no-such-file.mp4"), "video/mp4");
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_EQ(f.store->ImportAttachment(r.id(), f.t.path(), "video/mp4").status().code(), Code::kInvalidArgument);
  // A capture finishing after its draft was sealed is refused and leaves no file.
  auto c = f.store->CaptureAttachment(r.id(), "video/mp4");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->Write(Pattern(10, 1)).ok());
  ASSERT_TRUE(f.store->Seal(r).ok());
  auto late = (*c)->Finish();
  EXPECT_EQ(late.status().code(), Code::kState);
  EXPECT_TRUE(f.MediaFiles().empty());
  EXPECT_EQ((*c)->Write(Pattern(1, 1)).code(), Code::kState);
  // Import streams a real file.
  auto v2 = f.store->Edit(r.id());
  std::string src = f.t.sub("clip.bin");
  auto data = Pattern(300000, 11);
  {
    std::ofstream out(src, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  }
  auto imported = f.store->ImportAttachment(r.id(), src, "application/octet-stream");
  ASSERT_TRUE(imported.ok()) << imported.status().message();
  EXPECT_EQ(*f.ReadAll(imported->id), data);
}

}  // namespace
}  // namespace dala
