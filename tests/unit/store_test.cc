// The store's behaviour under normal use and under every bad input the secure-core issue names.
#include <poll.h>
#include <sodium.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "base/db.h"
#include "base/fsutil.h"
#include "test_util.h"
#include "base/failpoint.h"
#include "format/envelope.h"
#include "crypto/keyfile.h"
#include "crypto/store_key_file.h"
#include "page_scan.h"
#include "store/store_trash.h"

namespace dala {
namespace {

using test::FastOptions;
using test::Pass;
using test::RawKey;
using test::TempDir;

std::unique_ptr<Store> MustCreate(const std::string& dir, const Credential& c = Pass("pw")) {
  auto s = Store::Create(dir, c, FastOptions());
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? std::move(s).value() : nullptr;
}

std::unique_ptr<Store> MustOpen(const std::string& dir, const Credential& c = Pass("pw")) {
  auto s = Store::Open(dir, c, FastOptions());
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? std::move(s).value() : nullptr;
}

// The database key, read from the store's key file as an attacker with the credential would.
Result<SecretBuffer> DbKey(const std::string& dir, const Credential& c) {
  DALA_ASSIGN_OR_RETURN(OpenedStoreKey k, OpenStoreKeyFile(test::ReadAll(dir + "/" + kKeyFileName), c, FastOptions().kdf));
  if (k.slot != KeySlot::kStore) return Status(Code::kWrongKey, "the duress slot opened");
  return std::move(k.secret);
}

Report MustDraft(Store& s, const std::string& narrative) {
  auto r = s.CreateDraft("detention/1");
  EXPECT_TRUE(r.ok());
  v1::FieldValue v;
  v.set_text("Oral");
  EXPECT_TRUE(r->SetValue("place", v).ok());
  EXPECT_TRUE(r->SetNarrative(narrative).ok());
  EXPECT_TRUE(s.SaveDraft(*r).ok());
  return std::move(r).value();
}

TEST(Store, CreateOpenAndReadBack) {
  TempDir t;
  std::string dir = t.sub("s");
  crypto::PublicKey device;
  ReportId id;
  {
    auto s = MustCreate(dir);
    device = s->device_key();
    Report r = MustDraft(*s, "Roza Kariyeva and Marua Eskendirova detained during a run");
    id = r.id();
    ASSERT_TRUE(s->Seal(r).ok());
    EXPECT_EQ(r.state, ReportState::kSealed);
  }
  auto s = MustOpen(dir);
  EXPECT_EQ(s->device_key(), device);
  auto r = s->Get(id);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->state, ReportState::kSealed);
  EXPECT_EQ(r->content.narrative(), "Roza Kariyeva and Marua Eskendirova detained during a run");
  EXPECT_EQ(r->form(), "detention/1");
  ASSERT_NE(r->Find("place"), nullptr);
  EXPECT_EQ(r->Find("place")->text(), "Oral");
  // Files are private to the owner.
  for (const char* f : {kKeyFileName, kDbFileName}) {
    auto perms = std::filesystem::status(dir + "/" + f).permissions();
    EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
              std::filesystem::perms::none)
        << f;
  }
}

TEST(Store, SealedIsImmutableAndEditMakesLinkedVersion) {
  TempDir t;
  auto s = MustCreate(t.sub("s"));
  Report r = MustDraft(*s, "v1");
  ASSERT_TRUE(s->Seal(r).ok());
  EXPECT_EQ(r.SetNarrative("changed").code(), Code::kState);
  EXPECT_EQ(s->SaveDraft(r).code(), Code::kState);
  EXPECT_EQ(s->Seal(r).code(), Code::kState);

  auto v2 = s->Edit(r.id());
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->content.version(), 2u);
  EXPECT_EQ(v2->state, ReportState::kDraft);
  EXPECT_EQ(v2->content.previous_hash(), std::string(r.content_hash.begin(), r.content_hash.end()));
  EXPECT_GT(v2->content.capture().counter(), r.content.capture().counter());
  ASSERT_TRUE(v2->SetNarrative("v2").ok());
  ASSERT_TRUE(s->Seal(*v2).ok());
  auto old = s->Get(r.id(), 1);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->content.narrative(), "v1");
  auto latest = s->Get(r.id());
  ASSERT_TRUE(latest.ok());
  EXPECT_EQ(latest->content.version(), 2u);
  EXPECT_EQ(latest->content.narrative(), "v2");
  auto list = s->List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].version, 2u);
}

TEST(Store, WrongPassphraseChangesNoFile) {
  TempDir t;
  std::string dir = t.sub("s");
  { auto s = MustCreate(dir); MustDraft(*s, "x"); }
  auto before = test::HashTree(dir);
  auto r = Store::Open(dir, Pass("not the passphrase"), FastOptions());
  EXPECT_EQ(r.status().code(), Code::kWrongKey);
  EXPECT_EQ(r.status().message(), "wrong passphrase or platform key (or a damaged key file)");
  EXPECT_EQ(test::HashTree(dir), before);
  EXPECT_EQ(Store::ChangeCredential(dir, Pass("nope"), Pass("new"), FastOptions()).code(), Code::kWrongKey);
  EXPECT_EQ(test::HashTree(dir), before);
}

TEST(Store, TruncatedOrCorruptedKeyFile) {
  TempDir t;
  std::string dir = t.sub("s");
  ReportId id;
  { auto s = MustCreate(dir); id = MustDraft(*s, "kept").id(); }
  std::string key = dir + "/" + kKeyFileName;
  auto good = test::ReadAll(key);

  auto cut = good;
  cut.resize(100);
  test::WriteAll(key, cut);
  auto r = Store::Open(dir, Pass("pw"), FastOptions());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("restore it from a backup"), std::string::npos);

  // A changed byte: the file has no checksum (it would mark the file as a key file), so it reads as a
  // wrong passphrase, and the message says it may be damaged.
  for (size_t at : {size_t{3}, size_t{20}, size_t{80}}) {
    auto flipped = good;
    flipped[at] ^= 0x10;
    test::WriteAll(key, flipped);
    auto bad = Store::Open(dir, Pass("pw"), FastOptions());
    EXPECT_EQ(bad.status().code(), Code::kWrongKey) << at;
    EXPECT_NE(bad.status().message().find("damaged key file"), std::string::npos) << at;
  }

  // Nothing was lost: with the key file restored, the report is there.
  test::WriteAll(key, good);
  auto s = MustOpen(dir);
  EXPECT_TRUE(s->Get(id).ok());
}

TEST(Store, DamagedDatabasePageGivesClearError) {
  TempDir t;
  std::string dir = t.sub("s");
  std::vector<ReportId> ids;
  {
    auto s = MustCreate(dir);
    for (int i = 0; i < 100; ++i) {
      Report r = MustDraft(*s, std::string(3000, static_cast<char>('a' + i % 26)));
      ASSERT_TRUE(s->Seal(r).ok());
      ids.push_back(r.id());
    }
  }
  std::string db = dir + "/" + kDbFileName;
  auto bytes = test::ReadAll(db);
  ASSERT_GT(bytes.size(), 40u * 4096);
  size_t page = bytes.size() / 4096 / 2;
  for (size_t i = 0; i < 64; ++i) bytes[page * 4096 + 100 + i] ^= 0x5a;
  test::WriteAll(db, bytes);

  auto s = MustOpen(dir);  // page 1 is intact, so the store opens
  ASSERT_NE(s, nullptr);
  Status check = s->Check();
  EXPECT_EQ(check.code(), Code::kCorrupt) << check.message();
  // Each report either reads and verifies, or fails with a clear "damaged" error; the rest is not lost.
  size_t readable = 0, damaged = 0;
  for (const auto& id : ids) {
    auto r = s->Get(id);
    if (r.ok()) {
      ++readable;
    } else {
      ++damaged;
      EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().message();
      EXPECT_NE(r.status().message().find("damaged"), std::string::npos) << r.status().message();
    }
  }
  EXPECT_GE(damaged, 1u);
  EXPECT_GE(readable, ids.size() - 3);
}

TEST(Store, DirectoryProblems) {
  TempDir t;
  // Missing directory: open says there is no store; create in a missing parent says so.
  EXPECT_EQ(Store::Open(t.sub("missing"), Pass("pw"), FastOptions()).status().code(), Code::kNotFound);
  EXPECT_EQ(Store::Create(t.sub("no/such/parent"), Pass("pw"), FastOptions()).status().code(), Code::kNotFound);
  // Already holds a store: refused, and the existing store is untouched.
  std::string dir = t.sub("s");
  ReportId id;
  { auto s = MustCreate(dir); id = MustDraft(*s, "first").id(); }
  auto before = test::HashTree(dir);
  EXPECT_EQ(Store::Create(dir, Pass("other"), FastOptions()).status().code(), Code::kExists);
  EXPECT_EQ(test::HashTree(dir), before);
  EXPECT_TRUE(MustOpen(dir)->Get(id).ok());
}

// Runs fn in a child process as user "nobody" (root ignores directory permissions) and returns the
// Status code it reported through its exit code.
int AsNobody(const std::function<Code()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(100);
    _exit(static_cast<int>(fn()));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(Store, ReadOnlyDirectory) {
  TempDir t;
  std::string ro = t.sub("ro");
  ASSERT_EQ(::mkdir(ro.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(t.path().c_str(), 0755), 0);
  int code = AsNobody([&] { return Store::Create(ro + "/s", Pass("pw"), FastOptions()).status().code(); });
  EXPECT_EQ(code, static_cast<int>(Code::kPermission));
  int code2 = AsNobody([&] { return Store::Create(ro, Pass("pw"), FastOptions()).status().code(); });
  EXPECT_EQ(code2, static_cast<int>(Code::kPermission));
  EXPECT_TRUE(std::filesystem::is_empty(ro));
}

TEST(Store, InvalidInputIsRefusedAndLosesNothing) {
  TempDir t;
  auto s = MustCreate(t.sub("s"));
  Report r = MustDraft(*s, "original narrative");
  v1::FieldValue bad;
  bad.set_text(std::string("bad \xC3\x28 utf8"));
  EXPECT_EQ(r.SetValue("k", bad).code(), Code::kInvalidArgument);
  EXPECT_EQ(r.SetNarrative("\xED\xA0\x80 surrogate").code(), Code::kInvalidArgument);
  EXPECT_EQ(r.SetNarrative("overlong \xC0\xAF").code(), Code::kInvalidArgument);
  EXPECT_EQ(r.SetNarrative(std::string(ReportLimits::kNarrative + 1, 'a')).code(), Code::kTooLarge);
  v1::FieldValue big;
  big.set_text(std::string(ReportLimits::kText + 1, 'a'));
  EXPECT_EQ(r.SetValue("k", big).code(), Code::kTooLarge);
  v1::FieldValue ok;
  ok.set_text("fine");
  EXPECT_EQ(r.SetValue("bad key!", ok).code(), Code::kInvalidArgument);
  EXPECT_EQ(r.SetValue(std::string(65, 'k'), ok).code(), Code::kInvalidArgument);
  v1::FieldValue dec;
  dec.set_decimal("1.2.3");
  EXPECT_EQ(r.SetValue("d", dec).code(), Code::kInvalidArgument);
  v1::FieldValue geo;
  geo.mutable_geo()->set_latitude(91);
  EXPECT_EQ(r.SetValue("g", geo).code(), Code::kInvalidArgument);
  for (int i = 0; i < 255; ++i) {
    std::string key = "f";
    key += std::to_string(i);
    ASSERT_TRUE(r.SetValue(key, ok).ok());
  }  // 256 with "place"
  EXPECT_EQ(r.SetValue("one-too-many", ok).code(), Code::kTooLarge);
  // Kazakh, Russian and emoji are valid.
  EXPECT_TRUE(r.SetNarrative("Орал қаласында ұсталды. Задержаны во время пробежки 🏃").ok());
  ASSERT_TRUE(s->SaveDraft(r).ok());
  auto back = s->Get(r.id());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->content.narrative(), "Орал қаласында ұсталды. Задержаны во время пробежки 🏃");
  EXPECT_EQ(back->content.fields_size(), 256);
  // Forms.
  for (const char* f : {"", "detention", "/1", "detention/", "detention/0", "Detention/1", "a b/1", "x/1a"})
    EXPECT_EQ(s->CreateDraft(f).status().code(), Code::kInvalidArgument) << f;
}

TEST(Store, TamperedSealedReportIsRefused) {
  TempDir t;
  std::string dir = t.sub("s");
  ReportId id;
  { auto s = MustCreate(dir); Report r = MustDraft(*s, "evidence"); ASSERT_TRUE(s->Seal(r).ok()); id = r.id(); }
  // Reach into the database as an attacker holding the key would.
  auto key = DbKey(dir, Pass("pw"));
  ASSERT_TRUE(key.ok());
  auto tamper = [&](bool fix_hash, const std::string& find, char replacement) {
    auto db = db::Db::Open(dir + "/" + kDbFileName, *key, false);
    ASSERT_TRUE(db.ok());
    auto st = db->Prepare("SELECT body FROM reports WHERE id = ?");
    ASSERT_TRUE(st.ok());
    st->Bind(1, std::span<const uint8_t>(id.data(), id.size()));
    auto row = st->Step();
    ASSERT_TRUE(row.ok() && *row);
    auto body = st->Blob(0);
    *st = db::Stmt();
    std::string b(body.begin(), body.end());
    auto pos = b.find(find);
    ASSERT_NE(pos, std::string::npos);
    b[pos] = replacement;
    auto up = db->Prepare(fix_hash ? "UPDATE reports SET body = ?, content_hash = ? WHERE id = ?"
                                   : "UPDATE reports SET body = ? WHERE id = ?");
    ASSERT_TRUE(up.ok());
    up->Bind(1, crypto::Bytes(b));
    if (fix_hash) up->Bind(2, crypto::Blake2b256(crypto::Bytes(b))).Bind(3, std::span<const uint8_t>(id.data(), 16));
    else up->Bind(2, std::span<const uint8_t>(id.data(), 16));
    ASSERT_TRUE(up->Run().ok());
  };
  tamper(false, "evidence", 'E');
  {
    auto s = MustOpen(dir);
    auto r = s->Get(id);
    EXPECT_EQ(r.status().code(), Code::kVerify);
    EXPECT_EQ(r.status().message().find("evidence"), std::string::npos);
  }
  tamper(true, "vidence", 'V');  // the hash is recomputed, so only the signature can catch it
  auto s = MustOpen(dir);
  auto r = s->Get(id);
  EXPECT_EQ(r.status().code(), Code::kVerify);
  EXPECT_NE(r.status().message().find("signature"), std::string::npos);
}

TEST(Store, ChangePassphraseRewrapsWithoutRewritingDatabase) {
  TempDir t;
  std::string dir = t.sub("s");
  ReportId id;
  { auto s = MustCreate(dir); id = MustDraft(*s, "x").id(); }
  auto db_before = test::ReadAll(dir + "/" + kDbFileName);
  ASSERT_TRUE(Store::ChangeCredential(dir, Pass("pw"), Pass("new pw"), FastOptions()).ok());
  EXPECT_EQ(test::ReadAll(dir + "/" + kDbFileName), db_before);
  EXPECT_EQ(Store::Open(dir, Pass("pw"), FastOptions()).status().code(), Code::kWrongKey);
  EXPECT_TRUE(MustOpen(dir, Pass("new pw"))->Get(id).ok());
  // Passphrase -> platform key -> passphrase.
  ASSERT_TRUE(Store::ChangeCredential(dir, Pass("new pw"), RawKey(3), FastOptions()).ok());
  EXPECT_EQ(Store::Open(dir, Pass("new pw"), FastOptions()).status().code(), Code::kWrongKey);
  EXPECT_TRUE(MustOpen(dir, RawKey(3))->Get(id).ok());
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + kKeyFileName + ".tmp"));
}

TEST(Store, WipeDestroysKeyAndFiles) {
  TempDir t;
  std::string dir = t.sub("s");
  { auto s = MustCreate(dir); MustDraft(*s, "x"); }
  ASSERT_TRUE(Store::Wipe(dir).ok());
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_EQ(Store::Open(dir, Pass("pw"), FastOptions()).status().code(), Code::kNotFound);
  EXPECT_EQ(Store::Wipe(dir).code(), Code::kNotFound);
  // The app's own files in the directory are left alone.
  { auto s = MustCreate(dir); }
  test::WriteAll(dir + "/app-settings", {1, 2, 3});
  ASSERT_TRUE(Store::Wipe(dir).ok());
  EXPECT_TRUE(std::filesystem::exists(dir + "/app-settings"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + kDbFileName));
}

namespace wipe_test {
std::atomic<bool> removing{false}, release{false};
std::vector<std::string> Trash(const std::string& dir) { return test::TrashDirs(dir); }
// Bounded: at most 10 s.
bool EventuallyNoTrash(const std::string& dir) {
  for (int i = 0; i < 1000 && !Trash(dir).empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return Trash(dir).empty();
}
}  // namespace wipe_test

// The wipe returns once the key is gone and the files are out of the store's way, without waiting for
// their removal past its budget (freeing a large file's blocks takes time in proportion to its size).
// The removal is held here until the wipe has returned: no timing in the test.
TEST(Store, WipeReturnsWithoutWaitingForItsFilesToBeFreed) {
  TempDir t;
  std::string dir = t.sub("s");
  { auto s = MustCreate(dir); MustDraft(*s, "x"); }
  wipe_test::removing = false;
  wipe_test::release = false;
  testing::SetFailpointHook([](const char* n) {
    if (std::string(n) != "wipe.removing") return;
    wipe_test::removing = true;
    for (int i = 0; i < 3000 && !wipe_test::release; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  ASSERT_TRUE(Store::Wipe(dir).ok());
  EXPECT_TRUE(wipe_test::removing.load());
  EXPECT_FALSE(wipe_test::release.load());  // returned while the removal was held
  EXPECT_EQ(Store::Open(dir, Pass("pw"), FastOptions()).status().code(), Code::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + kKeyFileName));
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + kDbFileName));
  auto trash = wipe_test::Trash(dir);
  ASSERT_EQ(trash.size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(trash[0] + "/" + kDbFileName));  // moved, not yet removed
  EXPECT_FALSE(std::filesystem::exists(trash[0] + "/" + kKeyFileName));  // shredded in place, never moved
  // A new store in the same directory meanwhile: the removal takes neither the directory nor the new
  // store from under it.
  ReportId fresh_id{};
  {
    auto s = MustCreate(dir, Pass("fresh"));
    fresh_id = MustDraft(*s, "after the wipe").id();
  }
  wipe_test::release = true;
  EXPECT_TRUE(wipe_test::EventuallyNoTrash(dir));
  testing::SetFailpointHook(nullptr);
  EXPECT_TRUE(MustOpen(dir, Pass("fresh"))->Get(fresh_id).ok());
}

// A key file that cannot be overwritten (here a symbolic link, which the shredder does not follow) is
// still removed where it is, and never moved beside the database it opens.
TEST(Store, AKeyFileThatCannotBeShreddedIsRemovedNotMoved) {
  TempDir t;
  std::string dir = t.sub("s");
  { auto s = MustCreate(dir); MustDraft(*s, "x"); }
  std::string elsewhere = t.sub("key-elsewhere");
  std::filesystem::rename(dir + "/" + kKeyFileName, elsewhere);
  std::filesystem::create_symlink(elsewhere, dir + "/" + kKeyFileName);
  wipe_test::removing = false;
  wipe_test::release = false;
  testing::SetFailpointHook([](const char* n) {
    if (std::string(n) != "wipe.removing") return;
    for (int i = 0; i < 3000 && !wipe_test::release; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  EXPECT_FALSE(Store::Wipe(dir).ok());  // the shredding failed, and says so
  EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(dir + "/" + kKeyFileName)));
  for (const auto& bin : wipe_test::Trash(dir)) {
    EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(bin + "/" + kKeyFileName))) << bin;
    EXPECT_TRUE(std::filesystem::exists(bin + "/" + kDbFileName)) << bin;  // moved, not yet removed
  }
  wipe_test::release = true;
  EXPECT_TRUE(wipe_test::EventuallyNoTrash(dir));
  testing::SetFailpointHook(nullptr);
}

// Names the app could choose that the wipe's own directories would take for theirs are refused.
TEST(Store, NoFileOfTheStoreMayBeNamedAsTheWipesDirectories) {
  TempDir t;
  StoreOptions o = FastOptions();
  o.names.media = std::string(kDbFileName) + ".0123456789abcdef";
  EXPECT_EQ(Store::Create(t.sub("s"), Pass("pw"), o).status().code(), Code::kInvalidArgument);
  o.names.media = std::string(kDbFileName) + ".0123456789abcdeg";  // not hex: allowed
  EXPECT_TRUE(Store::Create(t.sub("s2"), Pass("pw"), o).ok());
}

// A process that ends while the files are being removed leaves them, under keys that are gone, in the
// wipe's own directory; the next create in that directory removes them.
TEST(Store, WhatAWipeCutShortLeftIsRemovedByTheNextCreate) {
  TempDir t;
  std::string dir = t.sub("s");
  { auto s = MustCreate(dir); MustDraft(*s, "x"); }
  pid_t pid = fork();
  if (pid == 0) {
    testing::SetFailpointHook([](const char* n) { if (std::string(n) == "wipe.removing") _exit(0); });
    (void)Store::Wipe(dir);
    _exit(1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  auto trash = wipe_test::Trash(dir);
  ASSERT_EQ(trash.size(), 1u);
  EXPECT_TRUE(std::filesystem::exists(trash[0] + "/" + kDbFileName));
  EXPECT_EQ(Store::Open(dir, Pass("pw"), FastOptions()).status().code(), Code::kNotFound);
  EXPECT_TRUE(MustCreate(dir, Pass("fresh")) != nullptr);
  EXPECT_TRUE(wipe_test::EventuallyNoTrash(dir));
  EXPECT_TRUE(std::filesystem::exists(dir + "/" + kDbFileName));  // the new store's
}

// A crash right after the key is destroyed: the store is gone for good (no key), and a new store can be
// created in its place.
TEST(Store, WipeInterruptedAfterKeyDestroyed) {
  TempDir t;
  std::string dir = t.sub("s");
  { auto s = MustCreate(dir); MustDraft(*s, "x"); }
  pid_t pid = fork();
  if (pid == 0) {
    testing::SetFailpointHook([](const char* n) { if (std::string(n) == "wipe.key_destroyed") _exit(0); });
    (void)Store::Wipe(dir);
    _exit(1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(std::filesystem::exists(dir + "/" + kDbFileName));
  EXPECT_EQ(Store::Open(dir, Pass("pw"), FastOptions()).status().code(), Code::kNotFound);
  EXPECT_TRUE(MustCreate(dir, Pass("fresh")) != nullptr);
}

TEST(Store, RawKeyStoreAndWrongKind) {
  TempDir t;
  std::string dir = t.sub("s");
  { MustCreate(dir, RawKey(1)); }
  EXPECT_TRUE(MustOpen(dir, RawKey(1)) != nullptr);
  EXPECT_EQ(Store::Open(dir, RawKey(2), FastOptions()).status().code(), Code::kWrongKey);
  EXPECT_EQ(Store::Open(dir, Pass("pw"), FastOptions()).status().code(), Code::kWrongKey);
}

TEST(Store, NewerSchemaIsRefused) {
  TempDir t;
  std::string dir = t.sub("s");
  { MustCreate(dir); }
  auto key = DbKey(dir, Pass("pw"));
  ASSERT_TRUE(key.ok());
  {
    auto db = db::Db::Open(dir + "/" + kDbFileName, *key, false);
    ASSERT_TRUE(db.ok());
    ASSERT_TRUE(db->Exec("PRAGMA user_version = 99;").ok());
  }
  auto r = Store::Open(dir, Pass("pw"), FastOptions());
  EXPECT_EQ(r.status().code(), Code::kState);
  EXPECT_NE(r.status().message().find("newer version"), std::string::npos);
}

// Seals to recipients when it has some; the desk side opens it.
TEST(Store, RecipientsSealAndQueue) {
  TempDir t;
  auto s = MustCreate(t.sub("s"));
  Report before = MustDraft(*s, "sealed before the store knew its organisation");
  ASSERT_TRUE(s->Seal(before).ok());
  EXPECT_EQ(before.state, ReportState::kSealed);
  auto org = crypto::GenerateBoxKeyPair();
  ASSERT_TRUE(s->SetRecipients("org", {org.public_key}).ok());
  EXPECT_EQ(s->Get(before.id())->state, ReportState::kQueued);
  Report after = MustDraft(*s, "sealed after");
  ASSERT_TRUE(s->Seal(after).ok());
  EXPECT_EQ(after.state, ReportState::kQueued);
  auto batch = s->NextBatch("org", 10, 1 << 20);
  ASSERT_TRUE(batch.ok());
  ASSERT_EQ(batch->size(), 2u);
  for (const auto& item : *batch) {
    envelope::Header h;
    auto plain = envelope::Open(item.envelope, org, &h);
    ASSERT_TRUE(plain.ok()) << plain.status().message();
    auto content = VerifySignedReport(plain->span());
    ASSERT_TRUE(content.ok());
    const crypto::PublicKey dev = s->device_key();
    EXPECT_EQ(content->device_key(), std::string(dev.begin(), dev.end()));
  }
  // Unusable keys are refused; duplicates are sealed to once.
  EXPECT_EQ(s->SetRecipients("org", {crypto::PublicKey{}}).code(), Code::kInvalidArgument);
  // Setting the same recipients again queues nothing twice.
  ASSERT_TRUE(s->SetRecipients("org", {org.public_key}).ok());
  EXPECT_EQ(s->Stats("org")->in_flight + s->Stats("org")->pending, 2u);
}

// A batch of 300 sealed at once (in windows, its signatures and envelopes on several threads): every
// report sealed as itself, its envelope (one per destination) holding that report and no other.
TEST(Store, ABatchSealsEachReportAsItselfToEveryDestination) {
  TempDir t;
  auto s = MustCreate(t.sub("s"));
  auto org = crypto::GenerateBoxKeyPair(), other = crypto::GenerateBoxKeyPair();
  ASSERT_TRUE(s->SetRecipients("org", {org.public_key}).ok());
  ASSERT_TRUE(s->SetRecipients("other", {other.public_key}).ok());
  std::vector<ReportId> ids;
  std::map<std::string, std::string> narrative;  // by report id bytes
  for (int i = 0; i < 300; ++i) {
    Report r = MustDraft(*s, "batch report " + std::to_string(i));
    const ReportId id = r.id();
    ids.push_back(id);
    narrative[std::string(id.begin(), id.end())] = "batch report " + std::to_string(i);
  }
  ASSERT_TRUE(s->SealMany(ids).ok());
  for (const auto& [dest, key] : {std::pair{"org", &org}, std::pair{"other", &other}}) {
    auto batch = s->NextBatch(dest, 1000, 64 << 20);
    ASSERT_TRUE(batch.ok());
    ASSERT_EQ(batch->size(), ids.size()) << dest;
    std::set<std::string> seen;
    for (const auto& item : *batch) {
      auto opened = envelope::OpenReport(item.envelope, *key);
      ASSERT_TRUE(opened.ok()) << opened.status().message();
      const std::string id(opened->header.report_id.begin(), opened->header.report_id.end());
      EXPECT_EQ(std::string(item.id.begin(), item.id.end()), id) << "queued under another report's id";
      ASSERT_TRUE(narrative.count(id));
      EXPECT_EQ(opened->content.narrative(), narrative[id]) << "another report's content";
      auto stored = s->Get(item.id);
      ASSERT_TRUE(stored.ok());
      EXPECT_EQ(stored->content_hash, opened->content_hash) << "the stored version is not the one sealed";
      seen.insert(id);
    }
    EXPECT_EQ(seen.size(), ids.size()) << dest;
  }
}

// Running out of memory while a batch is signed and sealed on the phone's other cores: the batch returns
// kNoMemory once every thread has stopped (an exception leaving a thread would end the process), nothing of
// it is sealed or queued, and the same batch seals afterwards.
std::atomic<std::thread::id> g_batch_caller;
std::atomic<int> g_worker_seals{0};
TEST(Store, RunningOutOfMemoryWhileABatchIsSealedSealsNothing) {
  if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "one core: a batch is sealed on the calling thread";
  TempDir t;
  auto s = MustCreate(t.sub("s"));
  ASSERT_TRUE(s->SetRecipients("org", {crypto::GenerateBoxKeyPair().public_key}).ok());
  std::vector<ReportId> ids;
  for (int i = 0; i < 300; ++i) ids.push_back(MustDraft(*s, "batch report " + std::to_string(i)).id());
  g_batch_caller = std::this_thread::get_id();
  g_worker_seals = 0;
  testing::SetFailpointHook([](const char* n) {  // the fifth report a worker thread takes: out of memory
    if (std::string_view(n) == "seal.sign" && std::this_thread::get_id() != g_batch_caller.load() &&
        ++g_worker_seals == 5)
      throw std::bad_alloc();
  });
  const Status st = s->SealMany(ids);
  testing::SetFailpointHook(nullptr);
  EXPECT_GE(g_worker_seals.load(), 5) << "no worker thread sealed";
  EXPECT_EQ(st.code(), Code::kNoMemory) << st.message();
  for (const ReportId& id : ids) {
    auto r = s->Get(id);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->sealed()) << "sealed by a batch that failed";
  }
  auto queued = s->NextBatch("org", 1000, 64 << 20);
  ASSERT_TRUE(queued.ok());
  EXPECT_TRUE(queued->empty()) << "queued by a batch that failed";
  ASSERT_TRUE(s->SealMany(ids).ok());
  queued = s->NextBatch("org", 1000, 64 << 20);
  ASSERT_TRUE(queued.ok());
  EXPECT_EQ(queued->size(), ids.size());
}

// Crash between any two steps of sealing: the report is a draft, or fully sealed and queued.
class SealCrash : public ::testing::TestWithParam<const char*> {};

TEST_P(SealCrash, DraftOrFullySealed) {
  TempDir t;
  std::string dir = t.sub("s");
  ReportId id;
  {
    auto s = MustCreate(dir);
    auto org = crypto::GenerateBoxKeyPair();
    ASSERT_TRUE(s->SetRecipients("org-a", {org.public_key}).ok());
    ASSERT_TRUE(s->SetRecipients("org-b", {org.public_key}).ok());
    id = MustDraft(*s, "crash me").id();
  }
  static std::string point;
  point = GetParam();
  pid_t pid = fork();
  if (pid == 0) {
    testing::SetFailpointHook([](const char* n) { if (point == n) _exit(0); });
    auto s = Store::Open(dir, Pass("pw"), FastOptions());
    if (!s.ok()) _exit(2);
    auto r = (*s)->Get(id);
    if (!r.ok() || !r->SetNarrative("crash me, edited").ok()) _exit(3);
    (void)(*s)->Seal(*r);
    _exit(1);  // the failpoint was not reached
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "failpoint " << point << " not reached";

  auto s = MustOpen(dir);
  auto r = s->Get(id);
  ASSERT_TRUE(r.ok()) << r.status().message();
  auto a = s->Stats("org-a"), b = s->Stats("org-b");
  uint64_t queued = a->pending + a->in_flight + b->pending + b->in_flight;
  if (point == "seal.committed") {
    EXPECT_EQ(r->state, ReportState::kQueued);
    EXPECT_EQ(r->content.narrative(), "crash me, edited");
    EXPECT_EQ(queued, 2u);
  } else {
    EXPECT_EQ(r->state, ReportState::kDraft);
    EXPECT_EQ(r->content.narrative(), "crash me");
    EXPECT_EQ(queued, 0u);
  }
  EXPECT_TRUE(s->Check().ok());
}

INSTANTIATE_TEST_SUITE_P(Steps, SealCrash,
                         ::testing::Values("seal.begin", "seal.signed", "seal.stored", "seal.queued",
                                           "seal.before_commit", "seal.committed"));

TEST(Store, PassphraseChangeCrashKeepsOneWorkingPassphrase) {
  TempDir t;
  std::string dir = t.sub("s");
  { MustCreate(dir); }
  pid_t pid = fork();
  if (pid == 0) {
    testing::SetFailpointHook([](const char* n) { if (std::string(n) == "atomic_write.before_rename") _exit(0); });
    (void)Store::ChangeCredential(dir, Pass("pw"), Pass("new"), FastOptions());
    _exit(1);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(MustOpen(dir, Pass("pw")) != nullptr);  // the old one still works; the leftover .tmp is removed
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + kKeyFileName + ".tmp"));
}

TEST(Store, PlaintextCanaryAppearsInNoFile) {
  TempDir t;
  std::string dir = t.sub("s");
  const std::string canary = "CANARY-7f3a9c-Kariyeva";
  auto org = crypto::GenerateBoxKeyPair();
  {
    auto s = MustCreate(dir);
    ASSERT_TRUE(s->SetRecipients("org", {org.public_key}).ok());
    for (int i = 0; i < 50; ++i) {
      auto r = s->CreateDraft("detention/1");
      ASSERT_TRUE(r.ok());
      v1::FieldValue v;
      v.mutable_people()->add_people()->set_name(canary);
      ASSERT_TRUE(r->SetValue("people", v).ok());
      ASSERT_TRUE(r->SetNarrative(canary + " narrative " + std::to_string(i)).ok());
      if (i % 2) ASSERT_TRUE(s->SaveDraft(*r).ok());
      else ASSERT_TRUE(s->Seal(*r).ok());
    }
    // While open (WAL and shared-memory files present) ...
    std::string where;
    EXPECT_FALSE(test::TreeContains(dir, canary, &where)) << where;
    EXPECT_FALSE(test::TreeContains(dir, "SQLite format 3", &where)) << where;
  }
  // ... and after closing.
  std::string where;
  EXPECT_FALSE(test::TreeContains(dir, canary, &where)) << where;
  EXPECT_FALSE(test::TreeContains(dir, "SQLite format 3", &where)) << where;
}

// Issue 14, item 1: what delete-after-delivery, a deleted draft or a removed attachment erased is in no
// page image of the database or of its write-ahead log, decrypted with the store's own key (a copy of the
// files and a coerced passphrase), store open or closed; what was kept is found there (the scan works).
TEST(StoreErasure, ErasedContentIsInNoPageImageOfTheDatabaseOrItsLog) {
  TempDir t;
  std::string dir = t.sub("s"), db_path = dir + "/" + kDbFileName;
  StoreOptions o = FastOptions();
  o.delete_after_delivery = true;
  auto created = Store::Create(dir, Pass("pw"), o);
  ASSERT_TRUE(created.ok()) << created.status().message();
  std::unique_ptr<Store> s = std::move(created).value();
  auto org = crypto::GenerateBoxKeyPair();
  ASSERT_TRUE(s->SetRecipients("org", {org.public_key}).ok());
  auto seal = [&](const std::string& narrative) {
    auto r = s->CreateDraft("detention/1");
    EXPECT_TRUE(r.ok() && r->SetNarrative(narrative).ok() && s->Seal(*r).ok());
    return r->id();
  };
  ReportId kept = seal("KEPT-3e1d narrative"), gone = seal("PURGED-9b2c narrative");
  Report draft = MustDraft(*s, "DRAFT-5a7f narrative");
  Report holder = MustDraft(*s, "holder of a removed attachment");
  auto cap = s->CaptureAttachment(holder.id(), "image/x-removed-c4d8");
  ASSERT_TRUE(cap.ok());
  ASSERT_TRUE((*cap)->Write(test::PseudoRandomBytes(5000, 9)).ok());
  auto att = (*cap)->Finish();
  ASSERT_TRUE(att.ok());
  cap->reset();  // a capture must not outlive its store

  auto key = DbKey(dir, Pass("pw"));
  ASSERT_TRUE(key.ok());
  std::string att_key;  // the key that opens the attachment's file
  {
    auto side = db::Db::Open(db_path, *key, false);
    ASSERT_TRUE(side.ok()) << side.status().message();
    auto st = side->Prepare("SELECT key FROM attachments");
    ASSERT_TRUE(st.ok() && *st->Step());
    auto v = st->BlobView(0);
    att_key.assign(reinterpret_cast<const char*>(v.data()), v.size());
    ASSERT_EQ(att_key.size(), 32u);
  }
  // Each erasure is checked on its own, right after it, so that each must clear the log by itself.
  auto absent = [&](const char* when, std::initializer_list<std::pair<std::string, const char*>> gone) {
    auto pages = test::DecryptAllPages(db_path, *key);
    ASSERT_TRUE(pages.has_value()) << when << ": the database does not decrypt with the store's key";
    const std::string& p = pages->plaintext;
    EXPECT_NE(p.find("KEPT-3e1d"), std::string::npos) << when;
    for (const auto& [canary, what] : gone) EXPECT_EQ(p.find(canary), std::string::npos) << when << ": " << what;
  };
  // Before erasing, everything is there (in the log or the database).
  {
    auto pages = test::DecryptAllPages(db_path, *key);
    ASSERT_TRUE(pages.has_value());
    EXPECT_NE(pages->plaintext.find("PURGED-9b2c"), std::string::npos);
    EXPECT_NE(pages->plaintext.find("DRAFT-5a7f"), std::string::npos);
    EXPECT_NE(pages->plaintext.find(att_key), std::string::npos);
  }
  const std::pair<std::string, const char*> delivered{"PURGED-9b2c", "a delivered report's content"},
      deleted{"DRAFT-5a7f", "a deleted draft"}, removed{"image/x-removed-c4d8", "a removed attachment"},
      removed_key{att_key, "a removed attachment's key"};
  auto batch = s->NextBatch("org", 10, 1 << 20);
  ASSERT_TRUE(batch.ok() && batch->size() == 2u);
  ASSERT_TRUE(s->MarkDelivered("org", gone, 1, std::vector<uint8_t>{7}).ok());
  ASSERT_TRUE(s->Get(gone)->purged);
  absent("after delivery", {delivered});
  ASSERT_TRUE(s->DeleteDraft(draft.id()).ok());
  absent("after deleting the draft", {delivered, deleted});
  ASSERT_TRUE(s->RemoveAttachment(att->id).ok());
  absent("after removing the attachment", {delivered, deleted, removed, removed_key});
  ASSERT_TRUE(s->Get(kept).ok());
  s.reset();
  absent("store closed", {delivered, deleted, removed, removed_key});
}

// A panic wipe overwrites the key file's bytes before unlinking it: another link to the same file (a copy
// the file system keeps, a backup taken by hard link) no longer holds the wrapped key.
TEST(StoreErasure, WipeOverwritesTheKeyFileItself) {
  TempDir t;
  std::string dir = t.sub("s");
  { MustCreate(dir); }
  std::string link = t.sub("key-link");
  ASSERT_EQ(::link((dir + "/" + kKeyFileName).c_str(), link.c_str()), 0);
  auto before = test::ReadAll(link);
  ASSERT_TRUE(OpenStoreKeyFile(before, Pass("pw"), FastOptions().kdf).ok());
  ASSERT_TRUE(Store::Wipe(dir).ok());
  auto after = test::ReadAll(link);
  EXPECT_EQ(after.size(), before.size());
  EXPECT_NE(after, before);
  EXPECT_FALSE(OpenStoreKeyFile(after, Pass("pw"), FastOptions().kdf).ok());
}

// Opening waits while another connection holds the file's lock, as the last connection to close holds it
// while it checkpoints and removes the WAL: before, the first read of Open failed at once with kBusy
// ("the store is busy in another process"; desk_store's two imports at once, one opening as the other closed).
TEST(Db, OpenWaitsForAnotherConnectionsLock) {
  TempDir t;
  SecretBuffer key(32);
  randombytes_buf(key.data(), key.size());
  const std::string path = t.sub("db");
  ASSERT_TRUE(fs::CreatePrivateFile(path).ok());
  auto holder = db::Db::Open(path, key, true);
  ASSERT_TRUE(holder.ok());
  // In WAL mode with locking_mode EXCLUSIVE, a write takes the file's exclusive lock and keeps it until close.
  ASSERT_TRUE(holder->Exec("CREATE TABLE t(x); PRAGMA locking_mode = EXCLUSIVE; INSERT INTO t VALUES(1);").ok());
  std::atomic<bool> released{false};
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    released = true;
    holder->Close();
  });
  auto opened = db::Db::Open(path, key, false);
  const bool opened_after_release = released.load();
  closer.join();
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  EXPECT_TRUE(opened_after_release);  // it waited for the lock: nothing was read while another held it
  auto st = opened->Prepare("SELECT count(*) FROM t");
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(*st->Step());
  EXPECT_EQ(st->Int(0), 1);
}

// No SQL rewrites the schema table (defensive mode); the schema is not trusted; SQLCipher prints nothing,
// not even for a wrong key (its log would reach stderr, or logcat on a phone).
TEST(Db, DefensiveUntrustedSchemaAndSilent) {
  TempDir t;
  SecretBuffer key(32), wrong(32);
  randombytes_buf(key.data(), key.size());
  randombytes_buf(wrong.data(), wrong.size());
  const std::string path = t.sub("db");
  ASSERT_TRUE(fs::CreatePrivateFile(path).ok());
  {
    auto db = db::Db::Open(path, key, true);
    ASSERT_TRUE(db.ok()) << db.status().message();
    ASSERT_TRUE(db->Exec("CREATE TABLE t(x);").ok());
    EXPECT_FALSE(db->Exec("PRAGMA writable_schema = ON; "
                          "UPDATE sqlite_master SET sql = 'CREATE TABLE t(y)' WHERE name = 't';").ok());
    auto st = db->Prepare("PRAGMA trusted_schema;");
    ASSERT_TRUE(st.ok());
    ASSERT_TRUE(*st->Step());
    EXPECT_EQ(st->Int(0), 0);
  }
  ::testing::internal::CaptureStderr();
  auto bad = db::Db::Open(path, wrong, false);
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(printed, "");
}


// --- A phone store written by Dala 0.1 with SQLCipher 3 (tests/fixtures/store-0.1), opened by SQLCipher 4 ---

const char* const kFixturePassphrase = "fixture 0.1 passphrase";  // tests/fixtures/store-0.1/expected.json

std::string CopyFixture(TempDir& t, const std::string& name) {
  std::string dir = t.sub(name);
  std::filesystem::copy(std::string(DALA_TEST_SOURCE_DIR) + "/fixtures/store-0.1", dir,
                        std::filesystem::copy_options::recursive);
  std::filesystem::remove(dir + "/expected.json");
  return dir;
}

// The database key from a 0.1 key file (format 1), as its holder with the passphrase would read it.
Result<SecretBuffer> LegacyDbKey(const std::string& dir) {
  return UnwrapSecret(KeyPurpose::kStoreDatabase, test::ReadAll(dir + "/" + kKeyFileName), Pass(kFixturePassphrase));
}

// Everything the store holds, as one string: every version of every report (state, form, content), receipts.
std::string Holdings(Store& s) {
  std::string out;
  auto list = s.List();
  EXPECT_TRUE(list.ok()) << list.status().message();
  if (!list.ok()) return out;
  std::sort(list->begin(), list->end(), [](const ReportInfo& a, const ReportInfo& b) { return a.id < b.id; });
  for (const ReportInfo& info : *list) {
    out += IdBytes(info.id) + std::to_string(info.version) + std::to_string(static_cast<int>(info.state)) + info.form;
    for (uint32_t v = 1; v <= info.version; ++v) {
      auto r = s.Get(info.id, v);
      EXPECT_TRUE(r.ok()) << r.status().message();
      if (r.ok()) out += r->content.SerializeAsString();
    }
  }
  auto receipts = s.ListReceipts();
  EXPECT_TRUE(receipts.ok());
  if (receipts.ok()) out += "receipts " + std::to_string(receipts->size());
  return out;
}

TEST(Sqlcipher3Store, ConvertedOnceOnOpenNothingLost) {
  TempDir t;
  std::string dir = CopyFixture(t, "s");
  const std::string db_path = dir + "/" + kDbFileName;
  auto key = LegacyDbKey(dir);
  ASSERT_TRUE(key.ok()) << key.status().message();
  // Before: SQLCipher 4's settings do not read it; refused (and left alone) when conversion is not wanted.
  auto refused = db::Db::Open(db_path, *key, false, db::Db::Sqlcipher3::kRefuse);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kState);
  EXPECT_EQ(test::ReadAll(db_path), test::ReadAll(std::string(DALA_TEST_SOURCE_DIR) + "/fixtures/store-0.1/dala.db"));
  std::string first;
  {
    auto s = MustOpen(dir, Pass(kFixturePassphrase));
    first = Holdings(*s);
    EXPECT_TRUE(s->Check().ok());
  }
  EXPECT_NE(first.find("receipts "), std::string::npos);
  // After: a SQLCipher 4 file, which opens as it is; the copy's name is gone; opening again converts nothing.
  EXPECT_TRUE(db::Db::Open(db_path, *key, false, db::Db::Sqlcipher3::kRefuse).ok());
  EXPECT_FALSE(fs::Exists(db_path + "-convert"));
  auto s = MustOpen(dir, Pass(kFixturePassphrase));
  EXPECT_EQ(Holdings(*s), first);
}

TEST(Sqlcipher3Store, AWrongKeyIsNotMistakenForSqlcipher3) {
  TempDir t;
  std::string dir = CopyFixture(t, "s");
  SecretBuffer wrong(32);
  randombytes_buf(wrong.data(), wrong.size());
  auto db = db::Db::Open(dir + "/" + kDbFileName, wrong, false);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), Code::kCorrupt);
  EXPECT_FALSE(fs::Exists(dir + "/" + kDbFileName + "-convert"));
}

// Once converted, the old file's own bytes are overwritten (still reachable here through a second hard link,
// as they would be in the blocks a file system has not reused yet): they no longer open under the key.
TEST(Sqlcipher3Store, TheOldFileIsOverwrittenOnceReplaced) {
  TempDir t;
  std::string dir = CopyFixture(t, "s");
  const std::string db_path = dir + "/" + kDbFileName, old_link = t.sub("old.db");
  ASSERT_EQ(::link(db_path.c_str(), old_link.c_str()), 0);
  auto key = LegacyDbKey(dir);
  ASSERT_TRUE(key.ok());
  const auto original = test::ReadAll(old_link);
  ASSERT_TRUE(MustOpen(dir, Pass(kFixturePassphrase)));
  const auto after = test::ReadAll(old_link);
  EXPECT_EQ(after.size(), original.size());
  EXPECT_NE(after, original);
  auto old = db::Db::Open(old_link, *key, false, db::Db::Sqlcipher3::kRefuse);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().code(), Code::kCorrupt) << old.status().message();  // not kState: no longer SQLCipher 3's
}

// A conversion that fails (here: the copy damaged before it is checked) leaves the old file as it was and no
// copy behind; the next open converts it. A copy left by a process killed mid-way goes with a wipe.
TEST(Sqlcipher3Store, AFailedConversionLeavesNoCopyAndTheOldFileWhole) {
  TempDir t;
  const std::string reference = Holdings(*MustOpen(CopyFixture(t, "clean"), Pass(kFixturePassphrase)));
  static std::string dir;
  dir = CopyFixture(t, "s");
  const std::string db_path = dir + "/" + kDbFileName;
  auto key = LegacyDbKey(dir);  // before the open rewrites the 0.1 key file
  ASSERT_TRUE(key.ok());
  testing::SetFailpointHook([](const char* n) {
    if (std::string_view(n) == "sqlcipher3.exported")
      (void)::truncate((dir + "/" + kDbFileName + db::Db::kConvertSuffix).c_str(), 5000);
  });
  auto failed = Store::Open(dir, Pass(kFixturePassphrase), FastOptions());
  testing::SetFailpointHook(nullptr);
  EXPECT_FALSE(failed.ok());
  EXPECT_FALSE(fs::Exists(db_path + db::Db::kConvertSuffix));
  auto still = db::Db::Open(db_path, *key, false, db::Db::Sqlcipher3::kRefuse);
  EXPECT_EQ(still.status().code(), Code::kState);  // SQLCipher 3's file still (its journal mode aside)
  EXPECT_EQ(Holdings(*MustOpen(dir, Pass(kFixturePassphrase))), reference);

  std::string other = CopyFixture(t, "o");
  ASSERT_TRUE(fs::WriteFileAtomic(other + "/" + kDbFileName + db::Db::kConvertSuffix,
                                  std::vector<uint8_t>(4096, 7)).ok());
  ASSERT_TRUE(Store::Wipe(other).ok());
  EXPECT_FALSE(fs::Exists(other + "/" + kDbFileName + db::Db::kConvertSuffix));
}

// Another process has the 0.1 file open, reading it (as a process does for a moment while it finds out
// what the file is), when the conversion starts: the conversion waits for it instead of failing the open.
TEST(Sqlcipher3Store, ConvertsOnceAnotherProcessStopsReading) {
  TempDir t;
  std::string dir = CopyFixture(t, "s");
  const std::string db_path = dir + "/" + kDbFileName;
  auto key = LegacyDbKey(dir);
  ASSERT_TRUE(key.ok());
  std::string hex(64, '\0');
  sodium_bin2hex(hex.data(), hex.size() + 1, key->data(), key->size());
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  pid_t pid = fork();
  if (pid == 0) {
    sqlite3* raw = nullptr;
    if (sqlite3_open_v2(db_path.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) _exit(2);
    const std::string setup = "PRAGMA key = \"x'" + hex + "'\"; PRAGMA cipher_compatibility = 3;"
                              "PRAGMA cipher_page_size = 4096; BEGIN; SELECT count(*) FROM sqlite_master;";
    if (sqlite3_exec(raw, setup.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) _exit(3);
    (void)!::write(ready[1], "r", 1);
    // Still reading when the conversion has its lock (the parent says so), and for 0.3 s more.
    struct pollfd p = {go[0], POLLIN, 0};
    if (::poll(&p, 1, 20000) != 1) _exit(4);
    ::usleep(300 * 1000);
    sqlite3_exec(raw, "COMMIT;", nullptr, nullptr, nullptr);
    sqlite3_close(raw);
    _exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  static int go_fd;
  go_fd = go[1];
  testing::SetFailpointHook([](const char* n) {
    if (std::string_view(n) == "sqlcipher3.locked") (void)!::write(go_fd, "g", 1);
  });
  auto s = Store::Open(dir, Pass(kFixturePassphrase), FastOptions());
  testing::SetFailpointHook(nullptr);
  EXPECT_TRUE(s.ok()) << s.status().message();
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << WEXITSTATUS(status);
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
  EXPECT_TRUE(db::Db::Open(db_path, *key, false, db::Db::Sqlcipher3::kRefuse).ok());
}

// A process finds the file is SQLCipher 3's; before it takes the conversion's lock, another process converts
// the store and writes a report to it. The first must not convert the file it saw (a stale copy renamed over
// the converted file would lose that report): it decides again under the lock, and opens the new file.
TEST(Sqlcipher3Store, AStoreConvertedAndWrittenMeanwhileIsNotConvertedAgain) {
  TempDir t;
  static std::string dir;
  dir = CopyFixture(t, "s");
  testing::SetFailpointHook([](const char* n) {
    if (std::string_view(n) != "sqlcipher3.found") return;
    testing::SetFailpointHook(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
      auto other = Store::Open(dir, Pass(kFixturePassphrase), FastOptions());
      if (!other.ok()) _exit(2);
      auto r = (*other)->CreateDraft("detention/1");
      if (!r.ok() || !r->SetNarrative("written after the conversion").ok()) _exit(3);
      _exit((*other)->SaveDraft(*r).ok() ? 0 : 4);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << WEXITSTATUS(status);
  });
  auto s = Store::Open(dir, Pass(kFixturePassphrase), FastOptions());
  testing::SetFailpointHook(nullptr);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_NE(Holdings(**s).find("written after the conversion"), std::string::npos);
}

// Four processes open the 0.1 store at once: each opens it whole, and it is converted once.
TEST(Sqlcipher3Store, OpenedByFourProcessesAtOnce) {
  TempDir t;
  std::string reference;
  {
    std::string clean = CopyFixture(t, "clean");
    reference = Holdings(*MustOpen(clean, Pass(kFixturePassphrase)));
  }
  std::string dir = CopyFixture(t, "s");
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      auto s = Store::Open(dir, Pass(kFixturePassphrase), FastOptions());
      if (!s.ok()) {
        fprintf(stderr, "process %d: %s\n", i, s.status().message().c_str());
        _exit(2);
      }
      _exit(Holdings(**s) == reference ? 0 : 3);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "exit " << WEXITSTATUS(status);
  }
  EXPECT_EQ(Holdings(*MustOpen(dir, Pass(kFixturePassphrase))), reference);
  EXPECT_FALSE(fs::Exists(dir + "/" + kDbFileName + "-convert"));
}

// Killed at any step of the conversion: the store opens afterwards, converted, holding exactly what an
// uninterrupted conversion finds.
class Sqlcipher3Crash : public ::testing::TestWithParam<const char*> {};

TEST_P(Sqlcipher3Crash, OpensWholeAfterwards) {
  TempDir t;
  std::string reference;
  {
    std::string clean = CopyFixture(t, "clean");
    reference = Holdings(*MustOpen(clean, Pass(kFixturePassphrase)));
  }
  std::string dir = CopyFixture(t, "s");
  auto key = LegacyDbKey(dir);
  ASSERT_TRUE(key.ok()) << key.status().message();
  static std::string point;
  point = GetParam();
  pid_t pid = fork();
  if (pid == 0) {
    testing::SetFailpointHook([](const char* n) { if (point == n) _exit(0); });
    (void)Store::Open(dir, Pass(kFixturePassphrase), FastOptions());
    _exit(1);  // the failpoint was not reached
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "failpoint " << point << " not reached";
  auto s = MustOpen(dir, Pass(kFixturePassphrase));
  EXPECT_EQ(Holdings(*s), reference);
  EXPECT_TRUE(s->Check().ok());
  EXPECT_TRUE(db::Db::Open(dir + "/" + kDbFileName, *key, false, db::Db::Sqlcipher3::kRefuse).ok());
  EXPECT_FALSE(fs::Exists(dir + "/" + kDbFileName + "-convert"));
}

INSTANTIATE_TEST_SUITE_P(Steps, Sqlcipher3Crash,
                         ::testing::Values("sqlcipher3.found", "sqlcipher3.locked", "sqlcipher3.exported", "sqlcipher3.before_rename",
                                           "sqlcipher3.renamed"));
}  // namespace
}  // namespace dala
