// Issue 14: the key file that says nothing about itself, a passphrase and a platform key together, the
// duress passphrase, and the panic wipe that destroys the platform key first.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <cctype>
#include <filesystem>
#include <functional>
#include <set>
#include <stdexcept>

#include "base/failpoint.h"
#include "store/store_trash.h"
#include "base/fsutil.h"
#include "crypto/attachment_file.h"
#include "crypto/store_key_file.h"
#include "page_scan.h"
#include "test_util.h"

namespace dala {
namespace {

using test::FastOptions;
using test::Pass;
using test::PassAndKey;
using test::RawKey;
using test::TempDir;

std::unique_ptr<Store> Create(const std::string& dir, const Credential& c, const StoreOptions& o = FastOptions()) {
  auto s = Store::Create(dir, c, o);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? std::move(s).value() : nullptr;
}

Result<std::unique_ptr<Store>> Open(const std::string& dir, const Credential& c, const StoreOptions& o = FastOptions()) {
  return Store::Open(dir, c, o);
}

ReportId SealOne(Store& s, const std::string& narrative) {
  auto r = s.CreateDraft("detention/1");
  EXPECT_TRUE(r.ok() && r->SetNarrative(narrative).ok() && s.Seal(*r).ok());
  return r->id();
}

std::string Lower(std::vector<uint8_t> v) {
  std::string s(v.begin(), v.end());
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Every byte of every file of a closed store, and every file name, in one string per file.
std::map<std::string, std::vector<uint8_t>> Files(const std::string& dir) {
  std::map<std::string, std::vector<uint8_t>> out;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[std::filesystem::relative(e.path(), dir).string()] = test::ReadAll(e.path().string());
  return out;
}

// Runs `fn` in a child process that dies (as if killed) at the failpoint `point`; true if it got there.
bool KilledAt(const char* point, const std::function<void()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    static std::string target;
    target = point;
    testing::SetFailpointHook([](const char* n) {
      if (target == n) _exit(0);
    });
    fn();
    _exit(1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Item 5: no file of a closed store holds a readable marker, and the app names the files.
TEST(StoreKeyFile, NoFileOfTheStoreIdentifiesItself) {
  TempDir t;
  StoreOptions o = FastOptions();
  o.names = {"cache-0", "cache-1", "blobs"};
  int kind = 0;
  for (const Credential& c : {Pass("pw"), RawKey(5), PassAndKey("pw", 6)}) {
    std::string dir = t.sub("s" + std::to_string(kind++));
    {
      auto s = Create(dir, c, o);
      ASSERT_TRUE(s);
      auto r = s->CreateDraft("detention/1");
      ASSERT_TRUE(r.ok());
      auto cap = s->CaptureAttachment(r->id(), "image/jpeg");
      ASSERT_TRUE(cap.ok());
      ASSERT_TRUE((*cap)->Write(test::PseudoRandomBytes(70000, 3)).ok());
      ASSERT_TRUE((*cap)->Finish().ok());
      cap->reset();
      ASSERT_TRUE(s->SaveDraft(*r).ok());
    }
    auto files = Files(dir);
    ASSERT_EQ(files.size(), 3u);  // the key file, the database, one attachment
    ASSERT_TRUE(files.count("cache-0") && files.count("cache-1"));
    EXPECT_EQ(files["cache-0"].size(), kStoreKeyFileSize);
    for (const auto& [name, bytes] : files) {
      std::string lower = Lower(bytes);
      // Markers long enough not to occur by chance in a megabyte of ciphertext (a 3- or 4-letter word would).
      for (const char* marker : {"dalakey1", "sqlite format", "detention/1", "image/jpeg", "dala/v1", "dala/v2"})
        EXPECT_EQ(lower.find(marker), std::string::npos) << name << " holds '" << marker << "'";
      EXPECT_EQ(Lower({name.begin(), name.end()}).find("dala"), std::string::npos) << name;
      EXPECT_EQ(name.find(".att"), std::string::npos) << name;
    }
    EXPECT_TRUE(Open(dir, c, o).ok());
  }
}

// The key file is indistinguishable from random bytes of its size: whatever the credential, no byte
// position keeps a value across files (a magic, a version, a kind byte, a recorded cost would).
TEST(StoreKeyFile, NoBytePositionIsConstantAcrossKeyFiles) {
  SecretBuffer db_key(32);
  std::vector<std::vector<uint8_t>> files;
  for (int i = 0; i < 240; ++i) {
    Credential c = i % 3 == 0 ? RawKey(static_cast<uint8_t>(i)) : i % 3 == 1 ? Pass("p" + std::to_string(i))
                                                                            : PassAndKey("p", static_cast<uint8_t>(i));
    auto f = NewStoreKeyFile(db_key, c, FastOptions().kdf);
    ASSERT_TRUE(f.ok());
    ASSERT_EQ(f->size(), kStoreKeyFileSize);
    files.push_back(std::move(f).value());
  }
  for (size_t pos = 0; pos < kStoreKeyFileSize; ++pos) {
    std::set<uint8_t> seen;
    for (const auto& f : files) seen.insert(f[pos]);
    EXPECT_GT(seen.size(), 100u) << "byte " << pos << " takes only " << seen.size() << " values in 240 files";
  }
}

// A 0.1 key file (DALAKEY1) opens and is rewritten in format 2 at once, its old bytes overwritten.
TEST(StoreKeyFile, A01KeyFileIsUpgradedAndItsBytesOverwritten) {
  TempDir t;
  std::string dir = t.sub("s"), key = dir + "/" + kKeyFileName;
  ReportId id;
  {
    auto s = Create(dir, Pass("pw"));
    id = SealOne(*s, "kept through the upgrade");
  }
  auto opened = OpenStoreKeyFile(test::ReadAll(key), Pass("pw"), FastOptions().kdf);
  ASSERT_TRUE(opened.ok());
  auto legacy = WrapSecret(KeyPurpose::kStoreDatabase, opened->secret, Pass("pw"), FastOptions().kdf);
  ASSERT_TRUE(legacy.ok());
  test::WriteAll(key, *legacy);
  std::string link = t.sub("old-key");
  ASSERT_EQ(::link(key.c_str(), link.c_str()), 0);
  ASSERT_TRUE(IsLegacyKeyFile(test::ReadAll(key)));
  {
    auto s = Open(dir, Pass("pw"));
    ASSERT_TRUE(s.ok()) << s.status().message();
    EXPECT_TRUE((*s)->Get(id).ok());
  }
  auto now = test::ReadAll(key);
  EXPECT_EQ(now.size(), kStoreKeyFileSize);
  EXPECT_FALSE(IsLegacyKeyFile(now));
  EXPECT_NE(test::ReadAll(link), *legacy);
  EXPECT_FALSE(UnwrapSecret(KeyPurpose::kStoreDatabase, test::ReadAll(link), Pass("pw")).ok());
  EXPECT_TRUE(Open(dir, Pass("pw")).ok());
}

// Item 3: a passphrase and a platform key together: neither alone opens, and a credential change to
// either alone and back works.
TEST(StoreKeyFile, PassphraseAndPlatformKeyAreBothNeeded) {
  TempDir t;
  std::string dir = t.sub("s");
  ReportId id;
  {
    auto s = Create(dir, PassAndKey("pw", 7));
    id = SealOne(*s, "both");
  }
  auto before = test::HashTree(dir);
  EXPECT_EQ(Open(dir, Pass("pw")).status().code(), Code::kWrongKey);
  EXPECT_EQ(Open(dir, RawKey(7)).status().code(), Code::kWrongKey);
  EXPECT_EQ(Open(dir, PassAndKey("pw", 8)).status().code(), Code::kWrongKey);
  EXPECT_EQ(Open(dir, PassAndKey("pX", 7)).status().code(), Code::kWrongKey);
  Credential no_key = PassAndKey("pw", 7);
  no_key.key = SecretBuffer();
  auto missing = Open(dir, no_key);
  EXPECT_EQ(missing.status().code(), Code::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("platform key"), std::string::npos);
  EXPECT_EQ(test::HashTree(dir), before);  // nothing was touched by any of these
  auto s = Open(dir, PassAndKey("pw", 7));
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE((*s)->Get(id).ok());
  s->reset();
  ASSERT_TRUE(Store::ChangeCredential(dir, PassAndKey("pw", 7), Pass("pw"), FastOptions()).ok());
  EXPECT_EQ(Open(dir, PassAndKey("pw", 7)).status().code(), Code::kWrongKey);
  ASSERT_TRUE(Store::ChangeCredential(dir, Pass("pw"), PassAndKey("pw2", 9), FastOptions()).ok());
  EXPECT_TRUE(Open(dir, PassAndKey("pw2", 9)).ok());
}

// Item 3: the panic wipe calls the app back to destroy its platform key before anything else; a failing
// callback does not stop the wipe, and is reported.
TEST(StoreKeyFile, WipeDestroysThePlatformKeyFirst) {
  TempDir t;
  std::string dir = t.sub("s"), key = dir + "/" + kKeyFileName;
  { Create(dir, PassAndKey("pw", 7)); }
  bool key_file_there_when_called = false;
  int calls = 0;
  ASSERT_TRUE(Store::Wipe(dir, {}, [&] {
                ++calls;
                key_file_there_when_called = std::filesystem::exists(key);
                return Status::Ok();
              }).ok());
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(key_file_there_when_called);
  EXPECT_FALSE(std::filesystem::exists(dir));

  { Create(dir, PassAndKey("pw", 7)); }
  Status st = Store::Wipe(dir, {}, [] { return Status(Code::kIo, "keystore locked"); });
  EXPECT_EQ(st.code(), Code::kIo);
  EXPECT_NE(st.message().find("platform key"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(key));
  EXPECT_FALSE(std::filesystem::exists(dir));
}

// Item 4: the duress passphrase.
struct DuressStore {
  TempDir t;
  std::string dir = t.sub("s");
  std::string key_path = dir + "/" + kKeyFileName;
  ReportId sealed{}, draft{};
  SecretBuffer old_db_key;

  // A store with a sealed report queued for delivery, a draft and an attachment, and a duress passphrase.
  explicit DuressStore(const Credential& real, const Credential& duress_cred) {
    {
      auto s = Create(dir, real);
      EXPECT_TRUE(s);
      auto org = crypto::GenerateBoxKeyPair();
      EXPECT_TRUE(s->SetRecipients("org", {org.public_key}).ok());
      sealed = SealOne(*s, "REAL-SEALED-41c7 pending upload");
      auto r = s->CreateDraft("detention/1");
      EXPECT_TRUE(r.ok() && r->SetNarrative("REAL-DRAFT-0d2e").ok());
      auto cap = s->CaptureAttachment(r->id(), "image/jpeg");
      EXPECT_TRUE(cap.ok() && (*cap)->Write(test::PseudoRandomBytes(9000, 4)).ok() && (*cap)->Finish().ok());
      cap->reset();
      EXPECT_TRUE(s->SaveDraft(*r).ok());
      draft = r->id();
    }
    auto k = OpenStoreKeyFile(test::ReadAll(key_path), real, FastOptions().kdf);
    EXPECT_TRUE(k.ok());
    old_db_key = std::move(k->secret);
    EXPECT_TRUE(Store::SetDuress(dir, real, duress_cred.bytes, FastOptions()).ok());
  }
};

TEST(Duress, OpeningWithItDestroysTheStoreAndOpensAnEmptyOne) {
  DuressStore d(Pass("real pw"), Pass("duress pw"));
  // The app was killed with the store open: its write-ahead log is left beside the database.
  pid_t pid = fork();
  if (pid == 0) {
    auto s = Open(d.dir, Pass("real pw"));
    if (!s.ok()) _exit(1);
    SealOne(**s, "REAL-IN-LOG-77aa");
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_TRUE(std::filesystem::exists(d.dir + "/" + kDbFileName + "-wal"));
  std::string link = d.t.sub("key-link");
  ASSERT_EQ(::link(d.key_path.c_str(), link.c_str()), 0);
  auto size_before = test::ReadAll(d.key_path).size();
  {
    auto s = Open(d.dir, Pass("duress pw"));
    ASSERT_TRUE(s.ok()) << s.status().message();  // succeeds, as any open
    auto list = (*s)->List();
    ASSERT_TRUE(list.ok());
    EXPECT_TRUE(list->empty());
    EXPECT_EQ((*s)->Get(d.sealed).status().code(), Code::kNotFound);
    SealOne(**s, "written after");
  }
  EXPECT_EQ(test::ReadAll(d.key_path).size(), size_before);
  // The real passphrase is simply wrong now; the duress one opens the new store as its own.
  EXPECT_EQ(Open(d.dir, Pass("real pw")).status().code(), Code::kWrongKey);
  auto s = Open(d.dir, Pass("duress pw"));
  ASSERT_TRUE(s.ok());
  auto list = (*s)->List();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 1u);
  s->reset();
  // Nothing of the real store is readable: its key is in no key file (also through another link to the
  // old one), its database is gone (no page decrypts with its key), its attachments are gone.
  EXPECT_FALSE(OpenStoreKeyFile(test::ReadAll(link), Pass("real pw"), FastOptions().kdf).ok());
  EXPECT_FALSE(test::DecryptAllPages(d.dir + "/" + kDbFileName, d.old_db_key).has_value());
  EXPECT_TRUE(test::DecryptAllPages(d.dir + "/" + kDbFileName,
                                    OpenStoreKeyFile(test::ReadAll(d.key_path), Pass("duress pw"), FastOptions().kdf)->secret)
                  .has_value());
  auto media = fs::ListFiles(d.dir + "/" + kAttachmentDirName);
  ASSERT_TRUE(media.ok());
  EXPECT_TRUE(media->empty());
}

TEST(Duress, WorksWithAPlatformKeyToo) {
  DuressStore d(PassAndKey("real pw", 3), Pass("duress pw"));
  EXPECT_EQ(Open(d.dir, Pass("duress pw")).status().code(), Code::kWrongKey);  // the platform key is needed
  auto s = Open(d.dir, PassAndKey("duress pw", 3));
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_TRUE((*s)->List()->empty());
  s->reset();
  EXPECT_EQ(Open(d.dir, PassAndKey("real pw", 3)).status().code(), Code::kWrongKey);
}

TEST(Duress, BadSetupsAreRefusedAndChangeNothing) {
  TempDir t;
  std::string dir = t.sub("s");
  { Create(dir, Pass("pw")); }
  auto before = test::HashTree(dir);
  EXPECT_EQ(Store::SetDuress(dir, Pass("pw"), Pass("pw").bytes, FastOptions()).code(), Code::kInvalidArgument);
  EXPECT_EQ(Store::SetDuress(dir, Pass("wrong"), Pass("d").bytes, FastOptions()).code(), Code::kWrongKey);
  EXPECT_EQ(test::HashTree(dir), before);
  std::string raw = t.sub("raw");
  { Create(raw, RawKey(1)); }
  EXPECT_EQ(Store::SetDuress(raw, RawKey(1), Pass("d").bytes, FastOptions()).code(), Code::kInvalidArgument);
  // With a duress passphrase set, the store's passphrase cannot be changed to it.
  ASSERT_TRUE(Store::SetDuress(dir, Pass("pw"), Pass("d").bytes, FastOptions()).ok());
  EXPECT_EQ(Store::ChangeCredential(dir, Pass("pw"), Pass("d"), FastOptions()).code(), Code::kInvalidArgument);
  // A plain passphrase change keeps it; clearing removes it.
  ASSERT_TRUE(Store::ChangeCredential(dir, Pass("pw"), Pass("pw2"), FastOptions()).ok());
  auto key = dir + "/" + kKeyFileName;
  EXPECT_EQ(OpenStoreKeyFile(test::ReadAll(key), Pass("d"), FastOptions().kdf)->slot, KeySlot::kDuress);
  ASSERT_TRUE(Store::ClearDuress(dir, Pass("pw2"), FastOptions()).ok());
  EXPECT_EQ(OpenStoreKeyFile(test::ReadAll(key), Pass("d"), FastOptions().kdf).status().code(), Code::kWrongKey);
  EXPECT_TRUE(Open(dir, Pass("pw2")).ok());
}

// Killed at each step of a duress open: the store opens afterwards with the real passphrase and loses
// nothing (before the key file is replaced), or is the new empty store under the duress passphrase.
TEST(Duress, KilledAtAnyStepOneStoreOrTheOther) {
  for (const char* point : {"create_database.empty_file", "duress.before_key", "atomic_write.before_rename",
                            "duress.key_replaced", "duress.moved_away", "replace.before_rename"}) {
    DuressStore d(Pass("real pw"), Pass("duress pw"));
    ASSERT_TRUE(KilledAt(point, [&] { (void)Open(d.dir, Pass("duress pw")); })) << point << ": not reached";
    bool committed = std::string(point) == "duress.key_replaced" || std::string(point) == "duress.moved_away" ||
                     std::string(point) == "replace.before_rename";
    auto real = Open(d.dir, Pass("real pw"));
    if (!committed) {
      ASSERT_TRUE(real.ok()) << point << ": " << real.status().message();
      EXPECT_TRUE((*real)->Get(d.sealed).ok()) << point;
      EXPECT_TRUE((*real)->Get(d.draft).ok()) << point;
      real->reset();
    } else {
      EXPECT_EQ(real.status().code(), Code::kWrongKey) << point;
      auto s = Open(d.dir, Pass("duress pw"));
      ASSERT_TRUE(s.ok()) << point << ": " << s.status().message();
      EXPECT_TRUE((*s)->List()->empty()) << point;
    }
    EXPECT_FALSE(std::filesystem::exists(d.dir + "/" + kDbFileName + ".next")) << point;
  }
}

namespace duress_test {
std::atomic<bool> removing{false}, release{false};
std::vector<std::string> Trash(const std::string& dir) { return test::TrashDirs(dir); }
}  // namespace duress_test

// A duress open takes the time of any open whatever the size of what it destroys: the old database and
// attachment files are moved away (a rename each), not freed while the open waits (freeing takes time in
// proportion to their size). Their removal is held here until the open has returned: no timing in the test.
TEST(Duress, TheOldFilesAreMovedAwayAndFreedWithoutTheOpenWaiting) {
  DuressStore d(Pass("real pw"), Pass("duress pw"));
  duress_test::removing = false;
  duress_test::release = false;
  testing::SetFailpointHook([](const char* n) {
    if (std::string(n) != "wipe.removing") return;
    duress_test::removing = true;
    for (int i = 0; i < 3000 && !duress_test::release; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  {
    auto s = Open(d.dir, Pass("duress pw"));
    ASSERT_TRUE(s.ok()) << s.status().message();
    EXPECT_TRUE((*s)->List()->empty());
  }
  EXPECT_FALSE(duress_test::release.load());  // the open returned while the removal was held
  auto trash = duress_test::Trash(d.dir);
  ASSERT_FALSE(trash.empty());
  bool old_db_held = false, old_media_held = false;
  for (const auto& t : trash) {
    if (std::filesystem::exists(t + "/" + kDbFileName)) {
      old_db_held = true;
      EXPECT_TRUE(test::DecryptAllPages(t + "/" + kDbFileName, d.old_db_key).has_value());  // the real store's
    }
    old_media_held = old_media_held || std::filesystem::exists(t + "/" + kAttachmentDirName);
  }
  EXPECT_TRUE(old_db_held);
  EXPECT_TRUE(old_media_held);
  // The store in its place is the new one; the real passphrase opens nothing.
  EXPECT_FALSE(test::DecryptAllPages(d.dir + "/" + kDbFileName, d.old_db_key).has_value());
  EXPECT_EQ(Open(d.dir, Pass("real pw")).status().code(), Code::kWrongKey);
  duress_test::release = true;
  for (int i = 0; i < 1000 && !duress_test::Trash(d.dir).empty(); ++i)  // bounded: 10 s
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  testing::SetFailpointHook(nullptr);
  EXPECT_TRUE(duress_test::Trash(d.dir).empty());
  EXPECT_TRUE(Open(d.dir, Pass("duress pw")).ok());
}

// Item 2: re-keying.
struct RekeyStore {
  TempDir t;
  std::string dir = t.sub("s");
  std::string key_path = dir + "/" + kKeyFileName;
  std::vector<ReportId> sealed;
  AttachmentId draft_attachment{}, sealed_attachment{};
  size_t extra_reports = 0;  // added by a test after these
  std::vector<uint8_t> draft_bytes = test::PseudoRandomBytes(200000, 21), sealed_bytes = test::PseudoRandomBytes(90000, 22);

  RekeyStore() {
    auto s = Create(dir, Pass("old"));
    for (int i = 0; i < 20; ++i) sealed.push_back(SealOne(*s, "REKEY-SEALED-" + std::to_string(i)));
    auto add = [&](Report& r, const std::vector<uint8_t>& bytes) {
      auto cap = s->CaptureAttachment(r.id(), "image/jpeg");
      EXPECT_TRUE(cap.ok() && (*cap)->Write(bytes).ok());
      auto info = (*cap)->Finish();
      EXPECT_TRUE(info.ok());
      return info->id;
    };
    auto bound = s->CreateDraft("detention/1");
    EXPECT_TRUE(bound.ok());
    sealed_attachment = add(*bound, sealed_bytes);
    EXPECT_TRUE(s->Seal(*bound).ok());
    auto draft = s->CreateDraft("detention/1");
    EXPECT_TRUE(draft.ok() && draft->SetNarrative("REKEY-DRAFT").ok());
    draft_attachment = add(*draft, draft_bytes);
    EXPECT_TRUE(s->SaveDraft(*draft).ok());
  }

  // Everything is there under `cred`.
  void ExpectIntact(const Credential& cred, const std::string& when) {
    auto s = Open(dir, cred);
    ASSERT_TRUE(s.ok()) << when << ": " << s.status().message();
    auto list = (*s)->List();
    ASSERT_TRUE(list.ok());
    EXPECT_EQ(list->size(), sealed.size() + 2 + extra_reports) << when;
    for (auto& id : sealed) EXPECT_TRUE((*s)->Get(id).ok()) << when;
    for (auto [id, bytes] : {std::pair{draft_attachment, &draft_bytes}, std::pair{sealed_attachment, &sealed_bytes}}) {
      auto r = (*s)->OpenAttachment(id);
      ASSERT_TRUE(r.ok()) << when << ": " << r.status().message();
      std::vector<uint8_t> got(bytes->size() + 10);
      size_t have = 0;
      for (;;) {
        auto n = (*r)->Read(std::span<uint8_t>(got.data() + have, got.size() - have));
        ASSERT_TRUE(n.ok()) << when << ": " << n.status().message();
        if (*n == 0) break;
        have += *n;
      }
      got.resize(have);
      EXPECT_TRUE(got == *bytes) << when;
    }
  }
};

// The attachment rows as an attacker holding the database key would read them: file name and file key.
std::map<std::string, std::string> AttachmentKeys(const std::string& dir, const SecretBuffer& db_key) {
  std::map<std::string, std::string> out;
  auto db = db::Db::Open(dir + "/" + kDbFileName, db_key, false);
  EXPECT_TRUE(db.ok());
  if (!db.ok()) return out;
  auto st = db->Prepare("SELECT file, key FROM attachments");
  while (st.ok() && *st->Step()) {
    auto k = st->BlobView(1);
    out[st->Text(0)] = std::string(k.begin(), k.end());
  }
  return out;
}

TEST(Rekey, TheOldKeyFileAndPassphraseOpenNothingAfterwards) {
  RekeyStore r;
  auto old_file = test::ReadAll(r.key_path);
  auto old_key = OpenStoreKeyFile(old_file, Pass("old"), FastOptions().kdf);
  ASSERT_TRUE(old_key.ok());
  auto old_attachments = AttachmentKeys(r.dir, old_key->secret);
  ASSERT_EQ(old_attachments.size(), 2u);
  // Another link to the old database file (a backup by hard link, a file system that keeps it).
  const std::string old_db = r.t.sub("old-db");
  ASSERT_EQ(::link((r.dir + "/" + kDbFileName).c_str(), old_db.c_str()), 0);
  ASSERT_TRUE(test::DecryptAllPages(old_db, old_key->secret).has_value());
  std::vector<std::pair<RekeyPhase, uint64_t>> seen;
  ASSERT_TRUE(Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions(),
                           [&](RekeyPhase p, uint64_t done, uint64_t total) { seen.emplace_back(p, done); (void)total; })
                  .ok());
  // Listed before anything opens the store (an open sweeps files no row names): the re-key itself took
  // the draft's old file away.
  auto media = fs::ListFiles(r.dir + "/" + kAttachmentDirName);
  // The draft's old file is freed on a thread of the library's own (bounded wait: 10 s), not by an open.
  for (int i = 0; i < 1000 && !test::TrashDirs(r.dir).empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(test::TrashDirs(r.dir).empty());
  r.ExpectIntact(Pass("new"), "after the re-key");
  EXPECT_EQ(Open(r.dir, Pass("old")).status().code(), Code::kWrongKey);
  // Progress: the database from 0 to 1 and, at the same time, the draft's attachment from 0 to its bytes.
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.front(), std::make_pair(RekeyPhase::kDatabase, uint64_t{0}));
  EXPECT_NE(std::find(seen.begin(), seen.end(), std::make_pair(RekeyPhase::kDatabase, uint64_t{1})), seen.end());
  EXPECT_EQ(seen.back(), std::make_pair(RekeyPhase::kAttachments, uint64_t{r.draft_bytes.size()}));
  // The old key file (kept by a searcher) with the old passphrase: its key decrypts no page of the
  // database or its log, and the old attachment keys open no attachment file there now.
  EXPECT_FALSE(test::DecryptAllPages(r.dir + "/" + kDbFileName, old_key->secret).has_value());
  EXPECT_FALSE(test::DecryptAllPages(old_db, old_key->secret).has_value()) << "the old database's bytes are still there";
  ASSERT_TRUE(media.ok());
  ASSERT_EQ(media->size(), 2u);
  std::set<std::string> opened_with_old_keys;
  for (const auto& f : *media)
    for (const auto& [file, key] : old_attachments)
      for (size_t size : {r.draft_bytes.size(), r.sealed_bytes.size()}) {
        attachment::Reader::Expect expect;  // the first piece decrypts only under the file's own key
        expect.size = size;
        auto reader = attachment::Reader::Open(
            r.dir + "/" + kAttachmentDirName + "/" + f,
            std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(key.data()), key.size()), expect);
        uint8_t b[16];
        if (reader.ok() && (*reader)->Read(b).ok()) opened_with_old_keys.insert(f);
      }
  // The sealed report's attachment is bound by its signature: its file is the same, and its key is in the
  // re-keyed database only (the old database, which held it, is gone). The draft's file is new.
  EXPECT_EQ(opened_with_old_keys.size(), 1u);
  auto new_key = OpenStoreKeyFile(test::ReadAll(r.key_path), Pass("new"), FastOptions().kdf);
  ASSERT_TRUE(new_key.ok());
  EXPECT_FALSE(sodium_memcmp(new_key->secret.data(), old_key->secret.data(), 32) == 0);
  auto new_attachments = AttachmentKeys(r.dir, new_key->secret);
  int same = 0;
  for (const auto& [file, key] : new_attachments) same += old_attachments.count(file) && old_attachments[file] == key;
  EXPECT_EQ(same, 1);
}

TEST(Rekey, RefusesTheDuressPassphraseAndAWrongOne) {
  RekeyStore r;
  ASSERT_TRUE(Store::SetDuress(r.dir, Pass("old"), Pass("d").bytes, FastOptions()).ok());
  auto before = test::HashTree(r.dir);
  EXPECT_EQ(Store::Rekey(r.dir, Pass("old"), Pass("d"), FastOptions()).code(), Code::kInvalidArgument);
  EXPECT_EQ(Store::Rekey(r.dir, Pass("wrong"), Pass("new"), FastOptions()).code(), Code::kWrongKey);
  EXPECT_EQ(test::HashTree(r.dir), before);
  ASSERT_TRUE(Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions()).ok());
  auto key = test::ReadAll(r.key_path);
  EXPECT_EQ(OpenStoreKeyFile(key, Pass("d"), FastOptions().kdf)->slot, KeySlot::kDuress);  // still set
}

// Killed at each step, the store opens with the old passphrase (before the key file changes) or the new
// one (after), loses nothing, and a re-key run again finishes.
TEST(Rekey, KilledAtAnyStepOneCredentialOrTheOtherAndARunAgainFinishes) {
  for (const char* point : {"rekey.copy_started", "rekey.attachment_reencrypted", "rekey.copied",
                            "atomic_write.before_rename", "rekey.key_replaced", "replace.before_rename"}) {
    RekeyStore r;
    ASSERT_TRUE(KilledAt(point, [&] { (void)Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions()); }))
        << point << ": not reached";
    bool committed = std::string(point) == "rekey.key_replaced" || std::string(point) == "replace.before_rename";
    r.ExpectIntact(committed ? Pass("new") : Pass("old"), point);
    EXPECT_EQ(Open(r.dir, committed ? Pass("old") : Pass("new")).status().code(), Code::kWrongKey) << point;
    if (!committed) {
      ASSERT_TRUE(Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions()).ok()) << point;
      r.ExpectIntact(Pass("new"), std::string(point) + ", then run again");
    }
    EXPECT_FALSE(std::filesystem::exists(r.dir + "/" + kDbFileName + ".next")) << point;
  }
}

// With the disk full (here: a file-size limit, small enough that the copy of the database fails, or the
// copy fits and an attachment does not), the re-key fails with an error and nothing is lost.
TEST(Rekey, DiskFullFailsCleanly) {
  for (rlim_t limit : {rlim_t{16 * 1024}, rlim_t{150 * 1024}}) {
    RekeyStore r;
    auto before = test::HashTree(r.dir);
    pid_t pid = fork();
    if (pid == 0) {
      signal(SIGXFSZ, SIG_IGN);
      struct rlimit lim = {limit, limit};
      setrlimit(RLIMIT_FSIZE, &lim);
      Status st = Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions());
      _exit(st.ok() ? 1 : 0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << limit << ": the re-key did not report the full disk";
    r.ExpectIntact(Pass("old"), "after a full disk");
    ASSERT_TRUE(Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions()).ok());
    r.ExpectIntact(Pass("new"), "re-keyed with room again");
  }
}

// Several drafts' attachments are encrypted again at once, beside the copy of the database. One whose file
// was altered fails the re-key with kVerify; the others stop, and what they wrote goes: the store is as it
// was, under the old passphrase, and a re-key after the file is put back finishes.
TEST(Rekey, AnAlteredAttachmentFailsItAndLeavesTheStoreAsItWas) {
  RekeyStore r;
  std::vector<std::pair<AttachmentId, std::vector<uint8_t>>> more;
  {
    auto s = Open(r.dir, Pass("old"));
    ASSERT_TRUE(s.ok());
    auto draft = (*s)->CreateDraft("detention/1");
    ASSERT_TRUE(draft.ok());
    for (int i = 0; i < 8; ++i) {
      auto bytes = test::PseudoRandomBytes(300000, 40 + i);
      auto cap = (*s)->CaptureAttachment(draft->id(), "image/jpeg");
      ASSERT_TRUE(cap.ok() && (*cap)->Write(bytes).ok());
      auto info = (*cap)->Finish();
      ASSERT_TRUE(info.ok());
      more.emplace_back(info->id, std::move(bytes));
    }
    ASSERT_TRUE((*s)->SaveDraft(*draft).ok());
    r.extra_reports = 1;
  }
  const std::string media = r.dir + "/" + kAttachmentDirName;
  auto files_before = fs::ListFiles(media);
  ASSERT_TRUE(files_before.ok());
  // The newest file (the last to be encrypted again: the others finish first) loses a bit in its middle.
  std::string newest;
  std::filesystem::file_time_type newest_time{};
  for (const auto& f : *files_before) {
    auto t = std::filesystem::last_write_time(media + "/" + f);
    if (newest.empty() || t > newest_time) newest = f, newest_time = t;
  }
  auto bytes = test::ReadAll(media + "/" + newest);
  bytes[bytes.size() / 2] ^= 1;
  test::WriteAll(media + "/" + newest, bytes);
  EXPECT_EQ(Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions()).code(), Code::kVerify);
  auto files_after = fs::ListFiles(media);
  ASSERT_TRUE(files_after.ok());
  EXPECT_EQ(std::set<std::string>(files_after->begin(), files_after->end()),
            std::set<std::string>(files_before->begin(), files_before->end()))
      << "the files encrypted again before the failure were left behind";
  EXPECT_FALSE(std::filesystem::exists(r.dir + "/" + kDbFileName + ".next"));
  EXPECT_EQ(Open(r.dir, Pass("new")).status().code(), Code::kWrongKey);
  bytes[bytes.size() / 2] ^= 1;
  test::WriteAll(media + "/" + newest, bytes);
  r.ExpectIntact(Pass("old"), "after the failed re-key");
  // Progress comes on the calling thread only (an app's callback, a JNI one, may rely on it). The callback
  // is slow, so that the other threads take most of the attachments.
  std::atomic<int> calls{0}, elsewhere{0};
  const auto caller = std::this_thread::get_id();
  ASSERT_TRUE(Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions(), [&](RekeyPhase, uint64_t, uint64_t) {
                ++calls;
                if (std::this_thread::get_id() != caller) ++elsewhere;
                else std::this_thread::sleep_for(std::chrono::milliseconds(5));
              }).ok());
  EXPECT_GE(calls.load(), 4);  // at least: both phases at 0, the database done, the attachments done
  EXPECT_EQ(elsewhere.load(), 0);
  r.ExpectIntact(Pass("new"), "re-keyed with the file put back");
  auto s = Open(r.dir, Pass("new"));
  ASSERT_TRUE(s.ok());
  for (const auto& [id, want] : more) {
    auto reader = (*s)->OpenAttachment(id);
    ASSERT_TRUE(reader.ok()) << reader.status().message();
    std::vector<uint8_t> got(want.size() + 1);
    size_t have = 0;
    for (;;) {
      auto n = (*reader)->Read(std::span<uint8_t>(got.data() + have, got.size() - have));
      ASSERT_TRUE(n.ok()) << n.status().message();
      if (*n == 0) break;
      have += *n;
    }
    got.resize(have);
    EXPECT_TRUE(got == want);
  }
}

// The app may make the media directory a link (to another volume, say): the re-key still takes the
// drafts' old files away before it returns (they cannot be moved out through the link: removed there).
TEST(Rekey, TheOldFilesGoAlsoWhenTheMediaDirectoryIsALink) {
  RekeyStore r;
  const std::string media = r.dir + "/" + kAttachmentDirName, elsewhere = r.t.sub("media-elsewhere");
  std::filesystem::rename(media, elsewhere);
  std::filesystem::create_directory_symlink(elsewhere, media);
  ASSERT_EQ(fs::ListFiles(elsewhere)->size(), 2u);
  ASSERT_TRUE(Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions()).ok());
  auto files = fs::ListFiles(elsewhere);  // before anything opens the store (an open sweeps)
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(files->size(), 2u) << "the draft's old file is still there";
  r.ExpectIntact(Pass("new"), "re-keyed through a link");
}

// A C++ caller's progress callback that throws: the exception reaches the caller once every thread of the
// re-key has stopped, and the store is as it was, with no new file left.
TEST(Rekey, AProgressCallbackThatThrowsLeavesTheStoreAsItWas) {
  RekeyStore r;
  const std::string media = r.dir + "/" + kAttachmentDirName;
  auto before = fs::ListFiles(media);
  ASSERT_TRUE(before.ok());
  EXPECT_THROW((void)Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions(),
                                  [](RekeyPhase phase, uint64_t done, uint64_t) {
                                    if (phase == RekeyPhase::kAttachments && done > 0) throw std::runtime_error("no");
                                  }),
               std::runtime_error);
  auto after = fs::ListFiles(media);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(std::set<std::string>(after->begin(), after->end()), std::set<std::string>(before->begin(), before->end()));
  EXPECT_FALSE(std::filesystem::exists(r.dir + "/" + kDbFileName + ".next"));
  r.ExpectIntact(Pass("old"), "after the callback threw");
}

// Running out of memory on one of the re-key's own threads (a worker encrypting a draft's attachment
// again): the re-key returns kNoMemory once every thread has stopped, instead of ending the process (an
// exception leaving a thread), and the store is as it was, with no new file left; the next re-key finishes.
std::atomic<std::thread::id> g_rekey_caller;
std::atomic<int> g_worker_ooms{0};
TEST(Rekey, RunningOutOfMemoryOnAWorkerThreadLeavesTheStoreAsItWas) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "one core: a re-key starts no other thread";
  RekeyStore r;
  {
    auto s = Open(r.dir, Pass("old"));
    ASSERT_TRUE(s.ok());
    auto draft = (*s)->CreateDraft("detention/1");
    ASSERT_TRUE(draft.ok());
    for (int i = 0; i < 8; ++i) {
      auto cap = (*s)->CaptureAttachment(draft->id(), "image/jpeg");
      ASSERT_TRUE(cap.ok() && (*cap)->Write(test::PseudoRandomBytes(300000, 60 + i)).ok());
      ASSERT_TRUE((*cap)->Finish().ok());
    }
    ASSERT_TRUE((*s)->SaveDraft(*draft).ok());
    r.extra_reports = 1;
  }
  const std::string media = r.dir + "/" + kAttachmentDirName;
  auto before = fs::ListFiles(media);
  ASSERT_TRUE(before.ok());
  g_rekey_caller = std::this_thread::get_id();
  g_worker_ooms = 0;
  testing::SetFailpointHook([](const char* n) {
    if (std::string_view(n) == "rekey.piece" && std::this_thread::get_id() != g_rekey_caller.load()) {
      ++g_worker_ooms;
      throw std::bad_alloc();
    }
  });
  // Once it has encrypted a piece itself, the calling thread waits in its progress callback (once, at most
  // 30 s) until a worker has run out of memory: a worker then takes attachments however slowly the database
  // copy before them goes (under TSan). (The first calls come before any worker starts: no wait there.)
  static std::atomic<bool> waited{false};
  waited = false;
  const Status st = Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions(), [](RekeyPhase phase, uint64_t done, uint64_t) {
    if (phase != RekeyPhase::kAttachments || done == 0 || waited.exchange(true)) return;
    for (int i = 0; i < 3000 && g_worker_ooms.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  testing::SetFailpointHook(nullptr);
  EXPECT_GE(g_worker_ooms.load(), 1) << "no worker thread encrypted an attachment again";
  EXPECT_EQ(st.code(), Code::kNoMemory) << st.message();
  auto after = fs::ListFiles(media);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(std::set<std::string>(after->begin(), after->end()), std::set<std::string>(before->begin(), before->end()));
  EXPECT_FALSE(std::filesystem::exists(r.dir + "/" + kDbFileName + ".next"));
  EXPECT_EQ(Open(r.dir, Pass("new")).status().code(), Code::kWrongKey);
  r.ExpectIntact(Pass("old"), "after a worker ran out of memory");
  ASSERT_TRUE(Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions()).ok());
  r.ExpectIntact(Pass("new"), "re-keyed afterwards");
}

// What a crash leaves as the new database (nothing, an empty file, a stray copy under another key) is
// never taken for the store: the store's own database, which still opens with the key file's key, stays.
TEST(Rekey, ALeftOverCopyIsNeverTakenForTheStore) {
  RekeyStore r;
  const std::string next = r.dir + "/" + kDbFileName + ".next";
  test::WriteAll(next, std::vector<uint8_t>{});  // an empty file opens under any key
  r.ExpectIntact(Pass("old"), "an empty copy");
  EXPECT_FALSE(std::filesystem::exists(next));
  {
    SecretBuffer other(32);
    randombytes_buf(other.data(), other.size());
    ASSERT_TRUE(fs::CreatePrivateFile(next).ok());
    auto db = db::Db::Open(next, other, true);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Exec("CREATE TABLE t(x);").ok());
  }
  r.ExpectIntact(Pass("old"), "a copy under another key");
  EXPECT_FALSE(std::filesystem::exists(next));
}

// A re-key waits for no one: with a handle open on the store it refuses (what that handle wrote after
// the copy would be lost), and while it runs, no handle opens.
TEST(Rekey, RefusesWhileTheStoreIsOpen) {
  RekeyStore r;
  {
    auto open = Open(r.dir, Pass("old"));
    ASSERT_TRUE(open.ok());
    EXPECT_EQ(Store::Rekey(r.dir, Pass("old"), Pass("new"), FastOptions()).code(), Code::kBusy);
  }
  auto lock = StoreLock::Exclusive(r.dir);  // as a re-key holds it
  ASSERT_TRUE(lock.ok());
  EXPECT_EQ(Open(r.dir, Pass("old")).status().code(), Code::kBusy);
}

}  // namespace
}  // namespace dala
