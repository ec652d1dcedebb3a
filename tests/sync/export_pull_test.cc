// dala desk pull in one process (docs/protocol.md, "Pulling exports"): the desk fetches pages and attachment
// ranges from a real ServerCore through the in-process transport, and imports them into a real desk store;
// and the server's checks of an export request, each attacked on its own.
#include <gtest/gtest.h>

#include <sodium.h>
#include <sys/stat.h>

#include <cstdio>

#include "sync_world.h"
#include "crypto/attachment_file.h"
#include "desk/desk_pull.h"
#include "desk/desk_store.h"
#include "format/envelope.h"
#include "format/export_request.h"
#include "format/manifest.h"
#include "format/organisation.h"
#include "format/receipt.h"
#include "../unit/test_util.h"

namespace dala {
namespace {

using namespace synctest;

struct PullWorld : World {
  std::unique_ptr<Store> phone = Phone("phone");
  std::unique_ptr<desk::DeskStore> store;

  explicit PullWorld(server::ServerLimits limits = {}) {
    server.reset();  // opened again with these limits
    server = std::move(server::ServerCore::Open(t.sub("server"), limits)).value();
    net->set_server(server.get());
    EXPECT_TRUE(phone->Join(Invite()).ok());
    store = std::move(desk::DeskStore::Open(desk, t.sub("desk"))).value();
  }
  desk::PullOptions Options(bool with_address = true) {
    desk::PullOptions o;
    if (with_address) o.target.urls = {"http://127.0.0.1:1"};
    return o;
  }
  Result<desk::PullResult> PullOnce(const desk::PullOptions& o) {
    DALA_ASSIGN_OR_RETURN(auto all, desk::Pull(desk, *store, o, *net));
    if (all.size() != 1) return Status(Code::kInternal, "expected one server");
    if (!all[0].error.ok()) return all[0].error;
    return std::move(all[0]);
  }
  // A request to POST /v2/export as `key` signs it, with `edit` applied before signing.
  server::HttpResult Ask(const crypto::SigningKey& key, const std::function<void(v1::ExportRequest&)>& edit) {
    v1::ExportRequest r;
    r.set_server_key(server->server_key().data(), 32);
    r.set_time_ms(SystemNowMs());
    uint8_t nonce[16];
    randombytes_buf(nonce, sizeof nonce);
    r.set_nonce(nonce, sizeof nonce);
    r.set_statement(desk.signed_statement);
    r.mutable_page();
    if (edit) edit(r);
    return server->Handle("POST", protocol::kPathExport, protocol::kContentType, protocol::SignExportRequest(key, r));
  }
};

std::vector<uint8_t> Bytes(size_t n, uint32_t seed) { return test::PseudoRandomBytes(n, seed); }

AttachmentInfo SealWithAttachment(Store& s, size_t n, const std::string& text) {
  auto r = s.CreateDraft("detention/1");
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r->SetNarrative(text).ok());
  EXPECT_TRUE(s.SaveDraft(*r).ok());
  auto c = s.CaptureAttachment(r->id(), "video/mp4");
  EXPECT_TRUE(c.ok());
  EXPECT_TRUE((*c)->Write(Bytes(n, 7)).ok());
  auto info = (*c)->Finish();
  EXPECT_TRUE(info.ok());
  EXPECT_TRUE(s.Seal(*r).ok());
  return *info;
}

uint64_t Held(desk::DeskStore& s) {
  auto st = s.db().Prepare("SELECT count(*) FROM versions");
  EXPECT_TRUE(st.ok() && *st->Step());
  return static_cast<uint64_t>(st->Int(0));
}

TEST(Pull, TheDeskFetchesEverythingPageByPageThenOnlyWhatIsNew) {
  server::ServerLimits small;
  small.export_page_bytes = 1;  // one report per page
  PullWorld w(small);
  for (int i = 0; i < 4; ++i) SealOne(*w.phone, "report " + std::to_string(i));
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 4u);
  ASSERT_FALSE(protocol::ListsDesk(w.desk.statement, desk::PullKey(w.desk).public_key));

  auto first = w.PullOnce(w.Options());
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_TRUE(first->import.imported) << (first->import.problems.empty() ? "" : first->import.problems[0]);
  EXPECT_EQ(first->import.added, 4u);
  EXPECT_EQ(first->import.summary.verified, 4u);
  EXPECT_TRUE(first->listed_desk);
  EXPECT_TRUE(protocol::ListsDesk(w.desk.statement, desk::PullKey(w.desk).public_key));
  EXPECT_EQ(first->log_from, 0u);
  EXPECT_GE(first->pages, 4u);  // the reports came a page each
  EXPECT_EQ(Held(*w.store), 4u);
  // Receipts are stored unsigned and signed as they are exported: every export carries the same bytes (the
  // desk joins exports by their entries' exact bytes), a file twice and the pages alike.
  ASSERT_TRUE(w.server->Export(w.t.sub("one.dala")).ok());
  ASSERT_TRUE(w.server->Export(w.t.sub("two.dala")).ok());
  EXPECT_EQ(test::ReadAll(w.t.sub("one.dala")), test::ReadAll(w.t.sub("two.dala")));
  {
    v1::Export file;
    auto bytes = test::ReadAll(w.t.sub("one.dala"));
    ASSERT_TRUE(file.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
    std::vector<std::string> paged;
    for (uint64_t from = 0; from < first->log_size;) {
      auto answer = w.Ask(desk::PullKey(w.desk), [&](v1::ExportRequest& r) {
        r.clear_statement();
        r.mutable_page()->set_log_from(from);
        r.mutable_page()->set_log_size(first->log_size);
      });
      ASSERT_EQ(answer.status, 200) << answer.body;
      v1::Export page;
      ASSERT_TRUE(page.ParseFromString(answer.body));
      ASSERT_GT(page.log_size(), 0);
      for (const auto& e : page.reports()) paged.push_back(e.receipt());
      from += static_cast<uint64_t>(page.log_size());
    }
    ASSERT_EQ(paged.size(), 4u);
    for (size_t i = 0; i < paged.size(); ++i) {
      EXPECT_EQ(paged[i], file.reports(static_cast<int>(i)).receipt()) << i;
      v1::SignedReceipt sr;
      ASSERT_TRUE(sr.ParseFromString(paged[i]));
      EXPECT_TRUE(protocol::VerifyReceipt(crypto::Bytes(paged[i]), w.server->server_key()).ok()) << i;
    }
  }

  // Nothing new: nothing added, and the pull starts where the last one ended (the store remembers where).
  auto again = w.PullOnce(w.Options(false));
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_TRUE(again->import.imported);
  EXPECT_EQ(again->import.added, 0u);
  EXPECT_EQ(again->log_from, first->log_size);
  EXPECT_FALSE(again->listed_desk);

  SealOne(*w.phone, "report 4");
  SealOne(*w.phone, "report 5");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 2u);
  auto more = w.PullOnce(w.Options(false));
  ASSERT_TRUE(more.ok()) << more.status().message();
  EXPECT_TRUE(more->import.imported);
  EXPECT_EQ(more->import.added, 2u);
  EXPECT_EQ(more->log_from, again->log_size);
  EXPECT_GE(more->pages, 2u);
  EXPECT_EQ(Held(*w.store), 6u);
  // What was fetched is in the store: nothing is left waiting in DIR/pull.
  auto left = fs::ListFiles(w.t.sub("desk") + "/pull");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, std::vector<std::string>{"pull.lock"});
}

// The server reads a page's leaves and reports a window of 1,024 leaves at a time (server_export.cc): pages
// of 3 MiB (some 1,700 leaves of 1 KB reports) run across a window's end, and end inside a window; the
// desk gets every leaf and report exactly once (its import checks the log against the signed head).
TEST(Pull, PagesAcrossTheServersReadWindowsHoldEveryLeafOnce) {
  server::ServerLimits small;
  small.export_page_bytes = 3 << 20;
  PullWorld w(small);
  constexpr uint64_t kReports = 2200;
  std::vector<ReportId> ids;
  for (uint64_t i = 0; i < kReports; ++i) {
    auto r = w.phone->CreateDraft("detention/1");
    ASSERT_TRUE(r.ok() && r->SetNarrative("report " + std::to_string(i)).ok() && w.phone->SaveDraft(*r).ok());
    ids.push_back(r->id());
  }
  ASSERT_TRUE(w.phone->SealMany(ids).ok());  // one transaction: quick under the sanitizers too
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, kReports);
  // A page's budget counts the signature each receipt gains as it is read (kReceiptSignatureBytes): pages
  // go over it by one leaf's report and the page's own fields at most.
  std::vector<size_t> page_sizes;
  w.net->tamper = [&](const sync::HttpRequest& req, std::string& response) {
    if (req.path == protocol::kPathExport) page_sizes.push_back(response.size());
  };
  auto pulled = w.PullOnce(w.Options());
  w.net->tamper = nullptr;
  ASSERT_GE(page_sizes.size(), 2u);
  for (size_t n : page_sizes) EXPECT_LE(n, small.export_page_bytes + (16u << 10)) << "a page of " << n << " bytes";
  std::printf("pages: %zu, the first %zu bytes (budget %zu)\n", page_sizes.size(), page_sizes[0],
              small.export_page_bytes);
  ASSERT_TRUE(pulled.ok()) << pulled.status().message();
  EXPECT_TRUE(pulled->import.imported) << (pulled->import.problems.empty() ? "" : pulled->import.problems[0]);
  EXPECT_EQ(pulled->import.added, kReports);
  EXPECT_EQ(pulled->import.summary.verified, kReports);
  EXPECT_TRUE(pulled->import.summary.clean());
  EXPECT_GE(pulled->pages, 2u);
  EXPECT_GT(pulled->log_size, 2 * 1024u);
}

TEST(Pull, AttachmentsComeInRangesAndAnInterruptedDownloadResumes) {
  PullWorld w;
  AttachmentInfo small = SealWithAttachment(*w.phone, 150'000, "with photo");
  AttachmentInfo a = SealWithAttachment(*w.phone, 3 * attachment::kUploadChunk + 777, "with video");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 2u);
  desk::PullOptions o = w.Options();
  o.range_bytes = 100'000;
  // The link goes down after the photo's ranges and two of the video's.
  const int photo_ranges = static_cast<int>((small.ciphertext_size + 99'999) / 100'000);
  int ranges = 0;
  w.net->intercept = [&](const sync::HttpRequest& req) -> std::optional<std::string> {
    v1::SignedExportRequest sr;
    v1::ExportRequest er;
    // That one goes through; the next finds the link down.
    if (sr.ParseFromString(req.body) && er.ParseFromString(sr.request()) && er.has_attachment() &&
        ++ranges == photo_ranges + 2)
      w.net->down = true;
    return std::nullopt;
  };
  auto cut = w.PullOnce(o);
  ASSERT_FALSE(cut.ok());
  EXPECT_EQ(Held(*w.store), 0u);
  w.net->down = false;
  w.net->intercept = nullptr;
  const std::string media = w.t.sub("desk") + "/pull/" + encoding::ToHex(w.server->server_key()) + ".export.media/";
  const std::string name = attachment::FileName(w.phone->device_key(), std::span<const uint8_t>(a.id.data(), 16));
  struct stat sb{};
  ASSERT_EQ(::stat((media + name + ".part").c_str(), &sb), 0);
  EXPECT_EQ(static_cast<uint64_t>(sb.st_size), 200'000u);

  auto resumed = w.PullOnce(o);
  ASSERT_TRUE(resumed.ok()) << resumed.status().message();
  EXPECT_TRUE(resumed->import.imported) << (resumed->import.problems.empty() ? "" : resumed->import.problems[0]);
  EXPECT_EQ(resumed->import.summary.verified, 2u);
  // Only what the first pull had not fetched: the photo it finished is kept, the video goes on where it was.
  EXPECT_EQ(resumed->media_files, 1u);
  EXPECT_EQ(resumed->media_bytes, a.ciphertext_size - 200'000u);
  for (const AttachmentInfo* x : {&small, &a}) {
    auto local = w.phone->LocalAttachmentFile(x->id);
    ASSERT_TRUE(local.ok());
    const std::string file = attachment::FileName(w.phone->device_key(), std::span<const uint8_t>(x->id.data(), 16));
    auto mine = fs::ReadFile(local->path, 1 << 24), desks = fs::ReadFile(w.store->MediaPath(file), 1 << 24);
    ASSERT_TRUE(mine.ok() && desks.ok());
    EXPECT_TRUE(*mine == *desks);
  }
  auto left = fs::ListFiles(w.t.sub("desk") + "/pull");
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(*left, std::vector<std::string>{"pull.lock"});  // nothing fetched is left waiting
}

// Whatever is changed on the way is refused whole, and the next honest pull imports. Attachment files a
// refused pull fetched are kept for the next one only if they are the files their devices signed.
TEST(Pull, AnAnswerChangedOnTheWayIsRefusedWholeAndTheNextPullImports) {
  PullWorld w;
  AttachmentInfo photo = SealWithAttachment(*w.phone, 70'000, "with photo");
  SealOne(*w.phone, "text");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 2u);
  auto is_range = [](const sync::HttpRequest& req) {
    v1::SignedExportRequest sr;
    v1::ExportRequest er;
    return sr.ParseFromString(req.body) && er.ParseFromString(sr.request()) && er.has_attachment();
  };
  // Attachment bytes changed on the way.
  w.net->tamper = [&](const sync::HttpRequest& req, std::string& body) {
    if (is_range(req) && !body.empty()) body[0] ^= 1;
  };
  auto bad = w.PullOnce(w.Options());
  ASSERT_TRUE(bad.ok()) << bad.status().message();
  EXPECT_FALSE(bad->import.imported);
  EXPECT_EQ(Held(*w.store), 0u);
  // One byte of the text report's envelope, as an on-path attacker (or the server) would change it. The
  // photo fetched before is not the one its device signed: fetched again.
  w.net->tamper = [&](const sync::HttpRequest& req, std::string& body) {
    v1::Export ex;
    if (is_range(req) || !ex.ParseFromString(body)) return;
    for (auto& r : *ex.mutable_reports()) {
      envelope::Header h;
      if (!envelope::Verify(crypto::Bytes(r.envelope()), &h).ok() || !h.attachments.empty()) continue;
      std::string* e = r.mutable_envelope();
      (*e)[e->size() / 2] ^= 1;
    }
    body = ex.SerializeAsString();
  };
  bad = w.PullOnce(w.Options());
  ASSERT_TRUE(bad.ok()) << bad.status().message();
  EXPECT_FALSE(bad->import.imported);
  EXPECT_EQ(bad->media_files, 1u);
  EXPECT_EQ(bad->media_bytes, photo.ciphertext_size);
  EXPECT_EQ(Held(*w.store), 0u);
  // Honest again: the photo fetched by the refused pull is the signed one, so it is not fetched again.
  w.net->tamper = nullptr;
  auto good = w.PullOnce(w.Options());
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_TRUE(good->import.imported) << (good->import.problems.empty() ? "" : good->import.problems[0]);
  EXPECT_EQ(good->import.added, 2u);
  EXPECT_EQ(good->media_bytes, 0u);
}

TEST(Pull, TheServerAnswersOnlyAListedDesksFreshRequestForItself) {
  PullWorld w;
  AttachmentInfo a = SealWithAttachment(*w.phone, 70'000, "with photo");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 1u);
  const crypto::SigningKey pull = desk::PullKey(w.desk);

  // The desk's own key, before the statement lists it: refused.
  EXPECT_EQ(w.Ask(pull, nullptr).status, 403);
  ASSERT_TRUE(*desk::ListDesk(w.desk, pull.public_key, SystemNowMs()));
  auto ok = w.Ask(pull, nullptr);
  ASSERT_EQ(ok.status, 200) << ok.body;
  v1::Export ex;
  ASSERT_TRUE(ex.ParseFromString(ok.body));
  EXPECT_EQ(ex.reports_size(), 1);

  // Any other key: refused, whatever it asks.
  EXPECT_EQ(w.Ask(crypto::GenerateSigningKey(), nullptr).status, 403);
  // A request copied off the wire and sent again: refused.
  v1::ExportRequest r;
  r.set_server_key(w.server->server_key().data(), 32);
  r.set_time_ms(SystemNowMs());
  r.set_nonce(std::string(16, 'n'));
  r.mutable_page();
  const std::string once = protocol::SignExportRequest(pull, r);
  EXPECT_EQ(w.server->Handle("POST", protocol::kPathExport, protocol::kContentType, once).status, 200);
  EXPECT_EQ(w.server->Handle("POST", protocol::kPathExport, protocol::kContentType, once).status, 403);
  {  // ... and sent to another node on the same data: the nodes share the requests seen. A fresh one it answers.
    auto replica = server::ServerCore::Open(w.t.sub("server"));
    ASSERT_TRUE(replica.ok());
    EXPECT_EQ((*replica)->Handle("POST", protocol::kPathExport, protocol::kContentType, once).status, 403);
    v1::ExportRequest fresh = r;
    fresh.set_nonce(std::string(16, 'r'));
    EXPECT_EQ((*replica)->Handle("POST", protocol::kPathExport, protocol::kContentType,
                                 protocol::SignExportRequest(pull, fresh)).status, 200);
  }
  // Signed for another server, or long ago, or in the future: refused.
  const auto other = crypto::GenerateSigningKey();
  EXPECT_EQ(w.Ask(pull, [&](v1::ExportRequest& q) { q.set_server_key(other.public_key.data(), 32); }).status, 403);
  EXPECT_EQ(w.Ask(pull, [](v1::ExportRequest& q) { q.set_time_ms(SystemNowMs() - 6 * 60 * 1000); }).status, 403);
  EXPECT_EQ(w.Ask(pull, [](v1::ExportRequest& q) { q.set_time_ms(SystemNowMs() + 6 * 60 * 1000); }).status, 403);
  // A signature that does not cover what is asked: refused.
  {
    v1::SignedExportRequest sr;
    ASSERT_TRUE(sr.ParseFromString(once));
    v1::ExportRequest q;
    ASSERT_TRUE(q.ParseFromString(sr.request()));
    q.set_nonce(std::string(16, 'm'));
    q.mutable_page()->set_log_from(1);
    sr.set_request(q.SerializeAsString());
    EXPECT_EQ(w.server->Handle("POST", protocol::kPathExport, protocol::kContentType, sr.SerializeAsString()).status, 403);
  }
  // Another organisation's statement carried along (listing its own desk, authorising this server): refused.
  {
    desk::Organisation rival = NewDesk(w.t, "rival.key");
    ASSERT_TRUE(desk::AuthoriseServer(rival, w.server->server_key(), SystemNowMs()).ok());
    const auto rival_pull = desk::PullKey(rival);
    ASSERT_TRUE(desk::ListDesk(rival, rival_pull.public_key, SystemNowMs()).ok());
    auto r = w.Ask(rival_pull, [&](v1::ExportRequest& q) { q.set_statement(rival.signed_statement); });
    EXPECT_EQ(r.status, 403);
    EXPECT_NE(r.body.find("not this organisation's"), std::string::npos) << r.body;
  }

  // Attachment ranges: held whole, within the file.
  auto range = [&](uint64_t offset, uint32_t length, std::string id) {
    return w.Ask(pull, [&](v1::ExportRequest& q) {
      auto* at = q.mutable_attachment();
      at->set_device_key(w.phone->device_key().data(), 32);
      at->set_attachment_id(id);
      at->set_offset(offset);
      at->set_length(length);
    });
  };
  const std::string id(reinterpret_cast<const char*>(a.id.data()), 16);
  auto part = range(1000, 5000, id);
  ASSERT_EQ(part.status, 200) << part.body;
  auto file = fs::ReadFile(w.t.sub("server") + "/attachments/" +
                               attachment::FileName(w.phone->device_key(), std::span<const uint8_t>(a.id.data(), 16)),
                           1 << 20);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(part.body, std::string(reinterpret_cast<const char*>(file->data()) + 1000, 5000));
  EXPECT_EQ(range(a.ciphertext_size - 10, 5000, id).body.size(), 10u);  // fewer at the end of the file
  EXPECT_EQ(range(a.ciphertext_size, 10, id).status, 416);
  EXPECT_EQ(range(0, 10, std::string(16, 'z')).status, 404);
  EXPECT_EQ(range(0, protocol::kMaxExportRange + 1, id).status, 400);
  // A page of a head the server never signed: refused.
  EXPECT_EQ(w.Ask(pull, [](v1::ExportRequest& q) { q.mutable_page()->set_log_size(1000); }).status, 400);

  // A statement that no longer lists the pull key: a request does not install a statement that does not
  // list its own key (it could only be a copy taken elsewhere); once the server holds it (dala-server
  // statement), the key gets nothing more.
  v1::OrgStatement next = w.desk.statement;
  next.clear_desks();
  next.set_version(next.version() + 1);
  const std::string dropped = protocol::SignStatement(w.desk.root, next);
  // Other nodes on the same data, which have not seen that statement yet: each reads the newest one from the
  // database before it answers (a page, a range).
  auto node2 = server::ServerCore::Open(w.t.sub("server")), node3 = server::ServerCore::Open(w.t.sub("server"));
  ASSERT_TRUE(node2.ok() && node3.ok());
  auto ask2 = [&] {
    v1::ExportRequest q;
    q.set_server_key(w.server->server_key().data(), 32);
    q.set_time_ms(SystemNowMs());
    q.set_nonce(std::string(16, 'b'));
    q.mutable_page();
    return (*node3)->Handle("POST", protocol::kPathExport, protocol::kContentType, protocol::SignExportRequest(pull, q));
  };
  EXPECT_EQ(w.Ask(pull, [&](v1::ExportRequest& q) { q.set_statement(dropped); }).status, 200);
  ASSERT_TRUE(w.server->SetStatement(dropped).ok());
  EXPECT_EQ(w.Ask(pull, nullptr).status, 403);
  {
    v1::ExportRequest q;
    q.set_server_key(w.server->server_key().data(), 32);
    q.set_time_ms(SystemNowMs());
    q.set_nonce(std::string(16, 'c'));
    auto* at = q.mutable_attachment();
    at->set_device_key(w.phone->device_key().data(), 32);
    at->set_attachment_id(id);
    at->set_length(10);
    EXPECT_EQ((*node2)->Handle("POST", protocol::kPathExport, protocol::kContentType,
                               protocol::SignExportRequest(pull, q)).status, 403);
  }
  EXPECT_EQ(ask2().status, 403);
  EXPECT_EQ(w.Ask(pull, nullptr).status, 403);  // the desk's older statement changes nothing
  EXPECT_EQ(range(0, 10, id).status, 403);
}

// Requests of keys the organisation does not list are refused before anything is kept for them: however many
// come, a listed desk's requests are still answered; a newer statement of the organisation that does not list
// the key carrying it is not installed from that request.
TEST(Pull, KeysTheOrganisationDoesNotListLeaveNothingBehind) {
  server::ServerLimits few;
  few.max_export_nonces = 4;
  PullWorld w(few);
  SealOne(*w.phone, "one");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 1u);
  const crypto::SigningKey pull = desk::PullKey(w.desk);
  ASSERT_TRUE(*desk::ListDesk(w.desk, pull.public_key, SystemNowMs()));
  const uint64_t version = w.desk.statement.version();
  const auto stranger = crypto::GenerateSigningKey();
  v1::OrgStatement newer = w.desk.statement;
  newer.clear_desks();
  newer.add_desks(pull.public_key.data(), 32);
  newer.set_version(version + 1);
  const std::string newer_signed = protocol::SignStatement(w.desk.root, newer);
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(w.Ask(stranger, [&](v1::ExportRequest& q) { q.set_statement(newer_signed); }).status, 403);
  for (int i = 0; i < 3; ++i) {
    auto r = w.Ask(pull, nullptr);
    ASSERT_EQ(r.status, 200) << r.body;
    v1::Export ex;
    ASSERT_TRUE(ex.ParseFromString(r.body));
    auto held = protocol::VerifyStatement(crypto::Bytes(ex.statement()), w.desk.root.public_key);
    ASSERT_TRUE(held.ok());
    EXPECT_EQ(held->version(), version);  // the stranger's request installed nothing
  }
}

// Time-stamps: each comes once (a pull asks only for those over heads larger than the desk's stamped ones), and
// one added on the way (over a head the server never signed) refuses the import, even with no authority to
// check tokens against, so that it cannot sit in the store and spoil evidence packages.
TEST(Pull, TimeStampsComeOnceAndOneAddedOnTheWayIsRefused) {
  server::ServerLimits small;
  small.export_page_bytes = 1;  // one leaf a page: the stamps come with the leaves that complete their heads
  PullWorld w(small);
  Tsa tsa(w.t, "Trusted Time");
  SealOne(*w.phone, "first");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->StampNewestHead(tsa.Post()).ok());
  int stamps_sent = 0;  // in every page of one pull
  w.net->tamper = [&](const sync::HttpRequest& req, std::string& body) {
    v1::SignedExportRequest sr;
    v1::ExportRequest er;
    v1::Export ex;
    if (sr.ParseFromString(req.body) && er.ParseFromString(sr.request()) && er.has_page() && ex.ParseFromString(body))
      stamps_sent += ex.timestamps_size();
  };
  auto first = w.PullOnce(w.Options());
  ASSERT_TRUE(first.ok() && first->import.imported) << first.status().message();
  EXPECT_GT(first->pages, 2u);
  EXPECT_EQ(stamps_sent, 1);
  SealOne(*w.phone, "second");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->StampNewestHead(tsa.Post()).ok());
  desk::PullOptions o = w.Options();
  o.open.trusted_tsa_pem = tsa.Pem();
  stamps_sent = 0;
  auto second = w.PullOnce(o);
  ASSERT_TRUE(second.ok() && second->import.imported) << (second.ok() ? second->import.problems.front() : "");
  EXPECT_EQ(stamps_sent, 1);                         // only the new one came
  EXPECT_EQ(second->import.summary.timestamps, 2u);  // and the desk holds both, each checked

  // A stamp over a head another key signed, added to the first page on the way.
  SealOne(*w.phone, "third");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 1u);
  const auto forger = crypto::GenerateSigningKey();
  w.net->tamper = [&](const sync::HttpRequest& req, std::string& body) {
    v1::SignedExportRequest sr;
    v1::ExportRequest er;
    v1::Export ex;
    if (!sr.ParseFromString(req.body) || !er.ParseFromString(sr.request()) || !er.has_page() || !ex.ParseFromString(body))
      return;
    protocol::LogHead h;
    h.size = 1;
    h.time_ms = SystemNowMs() - 86400000;
    h.server_key = forger.public_key;
    auto* t = ex.add_timestamps();
    t->set_head(protocol::SignLogHead(forger, h));
    t->set_token("not a token");
    body = ex.SerializeAsString();
  };
  auto poisoned = w.PullOnce(w.Options());
  ASSERT_TRUE(poisoned.ok()) << poisoned.status().message();
  EXPECT_FALSE(poisoned->import.imported);
  w.net->tamper = nullptr;
  auto honest = w.PullOnce(w.Options());
  ASSERT_TRUE(honest.ok() && honest->import.imported);
  EXPECT_EQ(honest->import.added, 1u);

  // Two nodes stamping at once: while the second node's authority answers, the first stamps a larger head
  // and a desk pulls it. The second node's stamp, over the smaller head, is not kept: stamps are stored in
  // the order of their heads' sizes, so that a desk asking for those over heads larger than its largest
  // misses none (before, it was kept, below what the desk had already passed, and never pulled).
  SealOne(*w.phone, "fourth");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 1u);
  auto node2 = server::ServerCore::Open(w.t.sub("server"));
  ASSERT_TRUE(node2.ok());
  uint64_t larger = 0;
  auto smaller = (*node2)->StampNewestHead([&](const std::string& q) -> Result<std::string> {
    SealOne(*w.phone, "fifth");
    EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 1u);
    auto stamped = w.server->StampNewestHead(tsa.Post());
    EXPECT_TRUE(stamped.ok());
    larger = stamped.ok() ? *stamped : 0;
    auto pulled = w.PullOnce(o);
    EXPECT_TRUE(pulled.ok() && pulled->import.imported);
    return tsa.Post()(q);
  });
  ASSERT_TRUE(smaller.ok()) << smaller.status().message();
  EXPECT_GT(larger, 0u);
  EXPECT_EQ(*smaller, 0u);
}

// A server that sends envelopes of devices it shows no enrolment for (through an invite of the organisation)
// gets no attachment downloaded for them: it cannot fill the desk's disk with files of strangers' devices.
TEST(Pull, AttachmentsOfDevicesNotEnrolledAreNotFetched) {
  PullWorld w;
  SealWithAttachment(*w.phone, 150'000, "with photo");
  EXPECT_EQ(Sync(*w.phone, *w.net).delivered, 1u);
  w.net->tamper = [](const sync::HttpRequest&, std::string& body) {
    v1::Export ex;
    if (!ex.ParseFromString(body) || ex.enrolments_size() == 0) return;
    ex.clear_enrolments();
    body = ex.SerializeAsString();
  };
  auto r = w.PullOnce(w.Options());
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->media_files, 0u);
  EXPECT_EQ(r->media_bytes, 0u);
  EXPECT_FALSE(r->import.imported);
}

}  // namespace
}  // namespace dala
