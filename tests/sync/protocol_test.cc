// The sync protocol end to end in one process: phones (Store + SyncEngine) and a ServerCore, joined by a
// transport that calls ServerCore::Handle. Faults are injected in the transport.
#include <bit>
#include <nlohmann/json.hpp>

#include "desk/desk_store.h"
#include "desk/evidence.h"
#include "desk/zip_file.h"
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "../unit/test_util.h"
#include "sync_world.h"
#include "crypto/attachment_file.h"
#include "crypto/chunk_tree.h"
#include "crypto/keyfile.h"
#include "desk/desk_key.h"
#include "desk/export_file.h"
#include "desk/export_opener.h"
#include "format/organisation.h"
#include "base/db.h"
#include "base/fsutil.h"
#include "base/secret.h"
#include "format/invite.h"
#include "format/log.h"
#include "format/merkle.h"
#include "format/receipt.h"
#include "format/report.h"
#include "format/request.h"
#include "format/response.h"
#include "protocol/http_api.h"
#include "server/server_backup.h"
#include "server/server_core.h"
#include "desk/log_verifier.h"
#include "server/server_log.h"
#include "server/sql/sqlite_connection.h"
#include "client/log_witness.h"
#include "client/sync_engine.h"
#include "base/clock.h"
#include "base/encoding.h"
#include "base/failpoint.h"
#include "format/envelope.h"
#include "format/manifest.h"
#include "timestamp/rfc3161.h"

namespace dala {
namespace {

using test::FastOptions;
using test::Pass;
using test::TempDir;
using namespace synctest;

// An address a phone could never reach (no port, a port that is not a number, another scheme) is refused
// when the invite is made and, should a desk sign one anyway, when a phone joins.
TEST(Invite, AnUnusableServerAddressIsRefused) {
  World w;
  desk::InviteParams p;
  p.server = w.server->server_key();
  p.expires_ms = SystemNowMs() + 60000;
  for (const char* url : {"http://host:notaport", "http://host:0", "http://host:70000", "ftp://host", "http://",
                          "http://us er@host", "host:8443", "http://[::1", "http://host:"}) {
    p.urls = {url};
    EXPECT_EQ(desk::MakeInvite(w.desk, p, SystemNowMs()).status().code(), Code::kInvalidArgument) << url;
  }
  for (const char* url : {"http://127.0.0.1:8443", "https://dala.example.org/base", "http://[::1]:9", "http://h"}) {
    p.urls = {url};
    EXPECT_TRUE(desk::MakeInvite(w.desk, p, SystemNowMs()).ok()) << url;
  }
  v1::Invite inv;
  inv.add_urls("http://host:notaport");
  inv.set_server_key(w.server->server_key().data(), 32);
  inv.set_uses(1);
  inv.set_expires_ms(SystemNowMs() + 60000);
  inv.set_issued_ms(SystemNowMs());
  inv.set_statement(w.desk.signed_statement);
  std::string text = protocol::EncodeInvite(inv, w.desk.root);
  EXPECT_EQ(protocol::DecodeInvite(text).status().code(), Code::kInvalidArgument);
  auto phone = w.Phone("p");
  EXPECT_EQ(phone->Join(text).status().code(), Code::kInvalidArgument);
}

TEST(Invite, RoundTripAndTamper) {
  World w;
  std::string inv = w.Invite();
  auto decoded = protocol::DecodeInvite(inv);
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->checked.statement.name(), "KIBHR");
  EXPECT_EQ(decoded->checked.root, w.desk.root.public_key);
  const crypto::PublicKey recipient = w.recipient();
  EXPECT_EQ(decoded->checked.statement.recipients(0), std::string(recipient.begin(), recipient.end()));
  // Any changed character is caught.
  for (size_t i = protocol::kInvitePrefix.size(); i < inv.size(); i += 7) {
    std::string bad = inv;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(protocol::DecodeInvite(bad).ok()) << i;
  }
  EXPECT_EQ(protocol::DecodeInvite("hello").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(protocol::DecodeInvite(inv.substr(0, inv.size() - 10)).status().code(), Code::kVerify);
  // 0.1's invites, which no organisation vouched for, are refused with what to do.
  auto old = protocol::DecodeInvite("DALA1-CgVodHRwOg");
  EXPECT_EQ(old.status().code(), Code::kInvalidArgument);
  EXPECT_NE(old.status().message().find("0.1"), std::string::npos);
}

// An invite is the organisation's only if its root signed it, its statement (by the same root) authorises
// the server it names, and the enrolment secret matches: a raided server's key alone mints nothing.
TEST(Invite, OnlyTheOrganisationsRootMakesAnInvite) {
  World w;
  auto phone = w.Phone("p");
  const crypto::SigningKey server_key = w.StolenServerKey();
  auto make = [&](const crypto::SigningKey& signer, const std::string& statement, const crypto::PublicKey& server) {
    v1::Invite inv;
    inv.add_urls("http://127.0.0.1:1");
    inv.set_server_key(server.data(), 32);
    inv.set_uses(1);
    inv.set_issued_ms(SystemNowMs());
    inv.set_expires_ms(SystemNowMs() + 60000);
    inv.set_statement(statement);
    return protocol::EncodeInvite(inv, signer);
  };
  // Signed by the raided server's key, with the organisation's genuine statement: not the root's signature.
  w.Invite();  // the desk authorised this server
  EXPECT_EQ(phone->Join(make(server_key, w.desk.signed_statement, w.server->server_key())).status().code(),
            Code::kVerify);
  // Signed by the root, for a server the statement does not authorise.
  crypto::SigningKey other = crypto::GenerateSigningKey();
  EXPECT_EQ(phone->Join(make(w.desk.root, w.desk.signed_statement, other.public_key)).status().code(), Code::kVerify);
  // A statement of another root inside the root's invite.
  desk::Organisation stranger = NewDesk(w.t, "stranger.key");
  desk::InviteParams p;
  p.server = w.server->server_key();
  p.urls = {"http://127.0.0.1:1"};
  p.expires_ms = SystemNowMs() + 60000;
  ASSERT_TRUE(desk::MakeInvite(stranger, p, SystemNowMs()).ok());
  EXPECT_EQ(phone->Join(make(w.desk.root, stranger.signed_statement, w.server->server_key())).status().code(),
            Code::kVerify);
  // The enrolment secret swapped for another: refused.
  std::string raw;
  std::string good = w.Invite();
  ASSERT_TRUE(encoding::FromBase64Url(std::string_view(good).substr(protocol::kInvitePrefix.size()), &raw));
  v1::InviteCode code;
  ASSERT_TRUE(code.ParseFromString(raw));
  code.set_enrol_secret(std::string(32, 'x'));
  std::string swapped = std::string(protocol::kInvitePrefix) + encoding::Base64Url(crypto::Bytes(code.SerializeAsString()));
  EXPECT_EQ(phone->Join(swapped).status().code(), Code::kVerify);
  EXPECT_TRUE(phone->Servers()->empty());
  EXPECT_TRUE(phone->Join(good).ok());
}

// The name a phone shows beside the fingerprint cannot move text on the screen: an organisation (or whoever
// holds a root) that names itself with escapes, line breaks or text-direction marks is refused at join.
TEST(Invite, ANameThatCouldPaintAnotherFingerprintIsRefused) {
  EXPECT_TRUE(protocol::IsDisplayName("Қазақстан халықаралық бюросы \xf0\x9f\x93\xb7 \"KIBHR\""));
  EXPECT_TRUE(protocol::IsDisplayName("Bureau 2025"));
  for (const char* bad : {"KIBHR\x1b[8m", "a\nb", "a\tb", "a\x7f", "a\xc2\x9b", "a\xe2\x80\xae", "a\xe2\x81\xa6",
                          "fingerprint 65121 60126", "a\xe2\x80\x8b", "a\xef\xbb\xbf", "a\xc2\xad", "a\xe3\x80\x80",
                          "a\xe2\x80\x8f", "a\xe2\x80\xa8", "\xff", "\xc0\xaf", "\xed\xa0\x80"})
    EXPECT_FALSE(protocol::IsDisplayName(bad)) << bad;
  EXPECT_FALSE(protocol::IsDisplayName(std::string(257, 'a')));
  World w;
  v1::OrgStatement st = w.desk.statement;
  st.set_name("KIBHR', fingerprint 00000 00000\x1b[8m");
  st.set_version(st.version() + 1);
  auto* a = st.add_servers();
  a->set_server_key(w.server->server_key().data(), 32);
  v1::Invite inv;
  inv.add_urls("http://127.0.0.1:1");
  inv.set_server_key(w.server->server_key().data(), 32);
  inv.set_uses(1);
  inv.set_issued_ms(SystemNowMs());
  inv.set_expires_ms(SystemNowMs() + 60000);
  inv.set_statement(protocol::SignStatement(w.desk.root, st));
  auto phone = w.Phone("p");
  EXPECT_EQ(phone->Join(protocol::EncodeInvite(inv, w.desk.root)).status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(phone->Servers()->empty());
}

TEST(Sync, JoinOfflineSealsAtOnceThenDeliversWhenOnline) {
  World w;
  auto phone = w.Phone("phone");
  ReportId before = SealOne(*phone, "sealed before joining");
  w.net->down = true;  // no network: join still works and seals to the organisation at once
  auto info = phone->Join(w.Invite(), /*include_existing=*/true);
  ASSERT_TRUE(info.ok()) << info.status().message();
  ReportId after = SealOne(*phone, "sealed after joining");
  EXPECT_EQ(phone->Get(before)->state, ReportState::kQueued);
  EXPECT_EQ(phone->Get(after)->state, ReportState::kQueued);
  auto offline = Sync(*phone, *w.net);
  EXPECT_TRUE(offline.unreachable);
  EXPECT_EQ(offline.remaining, 2u);
  EXPECT_EQ(*w.server->ReportCount(), 0u);

  w.net->down = false;  // connectivity returns
  auto online = Sync(*phone, *w.net);
  EXPECT_EQ(online.delivered, 2u);
  EXPECT_EQ(online.remaining, 0u);
  EXPECT_EQ(*w.server->ReportCount(), 2u);
  EXPECT_EQ(phone->Get(before)->state, ReportState::kDelivered);
  EXPECT_TRUE(phone->Check().ok());  // whole, and every commit synced again (a claim's is not)
  // The receipt kept on the phone holds under the pinned server key: proven by its place in a head that key
  // signed, with no signature of its own.
  auto receipt = phone->Receipt(info->destination, before, 1);
  ASSERT_TRUE(receipt.ok());
  auto kept = protocol::VerifyKeptReceipt(*receipt, w.server->server_key());
  ASSERT_TRUE(kept.ok()) << kept.status().message();
  EXPECT_TRUE(kept->head.has_value());
  EXPECT_EQ(kept->receipt.version(), 1u);
  EXPECT_FALSE(protocol::VerifyKeptReceipt(*receipt, crypto::GenerateSigningKey().public_key).ok());
}

TEST(Sync, AnswerLostAfterServerStoredIsDeliveredExactlyOnce) {
  World w;
  // The server stores a push whose answer never reaches the phone.
  auto phone2 = w.Phone("phone2");
  auto info = phone2->Join(w.Invite());
  ASSERT_TRUE(info.ok());
  std::vector<ReportId> ids;
  for (int i = 0; i < 5; ++i) ids.push_back(SealOne(*phone2, "p2 report " + std::to_string(i)));
  // First run: enrol succeeds, then the push's answer is lost.
  auto enrol_only = sync::SyncEngine(*phone2, (*phone2->Servers())[0]);
  auto req = enrol_only.Next();
  ASSERT_TRUE(req.ok() && *req);
  ASSERT_TRUE(enrol_only.Apply(**req, w.net->Post("", **req, 1000, "")).ok());
  w.net->drop_answers = 1;
  auto run = Sync(*phone2, *w.net);
  EXPECT_TRUE(run.unreachable);
  uint64_t stored_before = *w.server->ReportCount();
  // The phone does not know; after the backoff it sends again and gets the original receipts.
  phone2->set_clock([] { return SystemNowMs() + 10 * 3600 * 1000LL; });
  auto again = sync::RunOnce(*phone2, *w.net, SystemNowMs() + 10000, nullptr);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->delivered, 5u);
  EXPECT_EQ(*w.server->ReportCount(), stored_before);  // exactly once
  for (const auto& id : ids) EXPECT_EQ(phone2->Get(id)->state, ReportState::kDelivered);
}

TEST(Sync, SamePushTwiceGivesOneCopyAndTheSameReceipt) {
  World w;
  auto phone = w.Phone("phone");
  auto info = phone->Join(w.Invite());
  ASSERT_TRUE(info.ok());
  SealOne(*phone, "once");
  sync::SyncEngine e(*phone, (*phone->Servers())[0]);
  auto enrol = e.Next();
  ASSERT_TRUE(e.Apply(**enrol, w.net->Post("", **enrol, 1000, "")).ok());
  auto push = e.Next();
  ASSERT_TRUE(push.ok() && *push);
  auto first = w.server->Handle("POST", protocol::kPathPush, protocol::kContentType, (*push)->body);
  auto second = w.server->Handle("POST", protocol::kPathPush, protocol::kContentType, (*push)->body);
  ASSERT_EQ(first.status, 200);
  ASSERT_EQ(second.status, 200);
  v1::Response r1 = Answer(first.body), r2 = Answer(second.body);
  EXPECT_EQ(r1.results(0).code(), v1::STORED);
  EXPECT_EQ(r2.results(0).code(), v1::DUPLICATE);
  EXPECT_EQ(r1.results(0).leaf_index(), r2.results(0).leaf_index());
  EXPECT_EQ(r1.results(0).sequence(), r2.results(0).sequence());
  EXPECT_EQ(r1.results(0).server_time_ms(), 0);  // stored now: the answer's time
  EXPECT_EQ(r1.server_time_ms(), r2.results(0).server_time_ms());  // a duplicate: the time it was stored
  EXPECT_EQ(*w.server->ReportCount(), 1u);
}

// A receipt has no signature of its own: it counts only at its place in a log head the pinned server key
// signed (docs/protocol.md, "Receipts are proven by the log"). An answer that is genuine in every other
// way (the stolen key signs it) with the head re-signed by another key, or naming another key, or with a
// result's sequence or time changed (the receipt the phone would keep is then not the server's leaf),
// delivers nothing; the true answer then does.
TEST(Sync, AReceiptCountsOnlyInALogHeadThePinnedServerKeySigned) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  const crypto::SigningKey impostor = crypto::GenerateSigningKey();
  const crypto::SigningKey server_key = w.StolenServerKey();
  for (int lie : {0, 1, 2, 3}) {
    ReportId id = SealOne(*phone, "needs a real receipt " + std::to_string(lie));
    int forged = 0;
    w.net->tamper = [&](const sync::HttpRequest& http, std::string& body) {
      v1::Response r = Answer(body);
      if (r.results_size() == 0 || r.log_head().empty()) return;
      v1::SignedLogHead head;
      ASSERT_TRUE(head.ParseFromString(r.log_head()));
      if (lie == 0) {  // the same head, signed by another key
        auto sig = crypto::Sign(impostor, protocol::kDomainLogHead, crypto::Bytes(head.head()));
        head.set_signature(sig.data(), sig.size());
        r.set_log_head(head.SerializeAsString());
      } else if (lie == 1) {  // the same tree under a head of another key
        auto h = protocol::VerifyLogHead(crypto::Bytes(r.log_head()));
        ASSERT_TRUE(h.ok());
        h->server_key = impostor.public_key;
        r.set_log_head(protocol::SignLogHead(impostor, *h));
      } else if (lie == 2) {  // a receipt for another sequence number than the one the server logged
        r.mutable_results(0)->set_sequence(r.results(0).sequence() + 1);
      } else {  // a receipt dated otherwise than the one the server logged
        r.mutable_results(0)->set_server_time_ms(r.server_time_ms() - 1000);
      }
      ++forged;
      body = SignAnswer(server_key, r, http);  // the answer itself is genuine
    };
    auto run = Sync(*phone, *w.net);
    EXPECT_EQ(run.delivered, 0u) << lie;
    EXPECT_EQ(phone->Get(id)->state, ReportState::kQueued) << lie;
    EXPECT_EQ(phone->Stats((*phone->Servers())[0].destination)->pending, 1u) << lie;
    EXPECT_EQ(forged, 1) << lie;
    w.net->tamper = nullptr;
    ASSERT_TRUE(phone->RetryNow().ok());
    EXPECT_EQ(Sync(*phone, *w.net).delivered, 1u) << lie;  // stored already: the true answer delivers it
  }
}

TEST(Sync, RevokedDeviceIsRefusedAndKeepsItsReports) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "first");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->Revoke(phone->device_key()).ok());
  ReportId id = SealOne(*phone, "after revocation");
  auto run = Sync(*phone, *w.net);
  EXPECT_EQ(run.delivered, 0u);
  EXPECT_NE(run.last_error.find("revoked"), std::string::npos) << run.last_error;
  EXPECT_EQ(phone->Get(id)->state, ReportState::kQueued);
  EXPECT_NE((*phone->Servers())[0].last_error.find("revoked"), std::string::npos);
}

// A device's last contact is kept to the minute (the writer does not rewrite the device's row on every
// push), and never falls more than a minute behind.
int64_t server_now_ms = 0;
TEST(Server, ADevicesLastContactIsKeptToTheMinute) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  server_now_ms = SystemNowMs() + 1000;  // after the organisation authorised the server
  const int64_t start = server_now_ms;
  w.server->set_clock([] { return server_now_ms; });
  auto last_seen = [&] { return (*w.server->Devices())[0].last_seen_ms; };
  SealOne(*phone, "first");
  auto first = Sync(*phone, *w.net);
  ASSERT_EQ(first.delivered, 1u) << first.last_error;
  EXPECT_EQ(last_seen(), start);
  server_now_ms = start + 59'000;
  SealOne(*phone, "within the minute");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  EXPECT_EQ(last_seen(), start);
  server_now_ms = start + 60'000;
  SealOne(*phone, "a minute later");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  EXPECT_EQ(last_seen(), start + 60'000);
}

TEST(Sync, ExpiredUsedUpAndUnknownInvites) {
  World w;
  // Expired before join: refused at join.
  auto p1 = w.Phone("p1");
  auto expired = p1->Join(w.Invite(5, -1000));
  EXPECT_EQ(expired.status().code(), Code::kState);
  EXPECT_NE(expired.status().message().find("expired"), std::string::npos);
  // Used up: the second device is refused at enrolment with a clear reason.
  std::string one_use = w.Invite(1);
  auto p2 = w.Phone("p2"), p3 = w.Phone("p3");
  ASSERT_TRUE(p2->Join(one_use).ok());
  ASSERT_TRUE(p3->Join(one_use).ok());
  SealOne(*p2, "a");
  SealOne(*p3, "b");
  EXPECT_EQ(Sync(*p2, *w.net).delivered, 1u);
  auto r3 = Sync(*p3, *w.net);
  EXPECT_EQ(r3.delivered, 0u);
  EXPECT_NE(r3.last_error.find("used up"), std::string::npos) << r3.last_error;
  // Re-enrolling an enrolled device does not use the invite again.
  EXPECT_EQ(Sync(*p2, *w.net).remaining, 0u);
}

// A phone that holds reports joins a second organisation (a fake QR code, a raided server's invite, or a
// genuine one): that organisation gets only what is sealed from now on, never the phone's history, and the
// first organisation's keys are untouched. With include_existing, the user hands the history over.
TEST(Join, AnotherOrganisationGetsNothingThePhoneAlreadyHolds) {
  World a, b;  // two organisations, each with its own desk and server
  auto phone = a.Phone("phone");
  auto joined_a = phone->Join(a.Invite());
  ASSERT_TRUE(joined_a.ok());
  ReportId old = SealOne(*phone, "history the phone holds");
  ReportId draft_then_edit = SealOne(*phone, "version 1, before the second join");
  ASSERT_EQ(Sync(*phone, *a.net).delivered, 2u);

  auto joined_b = phone->Join(b.Invite());
  ASSERT_TRUE(joined_b.ok()) << joined_b.status().message();
  EXPECT_NE(joined_b->destination, joined_a->destination);
  EXPECT_EQ(joined_b->fingerprint, protocol::Fingerprint(b.desk.root.public_key));
  EXPECT_EQ(phone->Stats(joined_b->destination)->pending, 0u);  // nothing of the history
  ReportId fresh = SealOne(*phone, "after joining b");
  auto v2 = phone->Edit(draft_then_edit);
  ASSERT_TRUE(v2.ok());
  ASSERT_TRUE(v2->SetNarrative("version 2, after the second join").ok());
  ASSERT_TRUE(phone->Seal(*v2).ok());
  // b gets the new report only: neither `old` nor any version of the report begun before the join (its
  // version 1 may hold what version 2 removed).
  EXPECT_EQ(Sync(*phone, *b.net).delivered, 1u);
  ASSERT_TRUE(b.server->Export(b.t.sub("export.bin")).ok());
  auto sum = desk::OpenExport(b.desk, b.t.sub("export.bin"), b.t.sub("desk"));
  ASSERT_TRUE(sum.ok()) << sum.status().message();
  EXPECT_EQ(sum->reports, 1u);
  EXPECT_EQ(sum->verified, 1u);
  EXPECT_FALSE(test::TreeContains(b.t.sub("desk"), "history the phone holds", nullptr));
  EXPECT_FALSE(test::TreeContains(b.t.sub("desk"), "before the second join", nullptr));
  EXPECT_FALSE(test::TreeContains(b.t.sub("desk"), encoding::ToHex(old), nullptr));
  EXPECT_FALSE(test::TreeContains(b.t.sub("desk"), encoding::ToHex(draft_then_edit), nullptr));
  // a's recipients did not change: a still opens all it gets. (One loopback transport reaches one server,
  // so the sync through b's left a's items waiting: due now.)
  ASSERT_TRUE(phone->RetryNow().ok());
  EXPECT_EQ(Sync(*phone, *a.net).delivered, 2u);
  ASSERT_TRUE(a.server->Export(a.t.sub("export.bin")).ok());
  auto sum_a = desk::OpenExport(a.desk, a.t.sub("export.bin"), a.t.sub("desk"));
  ASSERT_TRUE(sum_a.ok());
  EXPECT_EQ(sum_a->verified, 4u);
  (void)fresh;

  // Asked for, the history goes too.
  World c;
  auto joined_c = phone->Join(c.Invite(), /*include_existing=*/true);
  ASSERT_TRUE(joined_c.ok());
  EXPECT_EQ(phone->Stats(joined_c->destination)->pending, 4u);  // old, both versions of the edited one, fresh
  EXPECT_EQ(Sync(*phone, *c.net).delivered, 4u);
}

// Another invite of the same organisation (a new server, a second address) keeps one destination; an
// invite of the same server signed by another root is another organisation and replaces nothing.
TEST(Join, ASecondInviteOfTheSameOrganisationKeepsOneDestination) {
  World w;
  auto phone = w.Phone("phone");
  auto first = phone->Join(w.Invite());
  ASSERT_TRUE(first.ok());
  SealOne(*phone, "one");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  auto again = phone->Join(w.Invite());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->destination, first->destination);
  auto servers = phone->Servers();
  ASSERT_EQ(servers->size(), 1u);
  EXPECT_TRUE((*servers)[0].enrolled);  // the same server: the enrolment holds
  desk::Organisation stranger = NewDesk(w.t, "stranger.key");
  desk::InviteParams p;
  p.server = w.server->server_key();
  p.urls = {"http://127.0.0.1:1"};
  p.expires_ms = SystemNowMs() + 60000;
  auto foreign = phone->Join(*desk::MakeInvite(stranger, p, SystemNowMs()));
  ASSERT_TRUE(foreign.ok());
  EXPECT_NE(foreign->destination, first->destination);
  EXPECT_EQ(phone->Servers()->size(), 2u);
  // The server refuses the stranger's invite at enrolment: it is not this server's organisation.
  SealOne(*phone, "two");
  sync::SyncEngine e(*phone, (*phone->Servers())[1]);
  auto enrol = e.Next();
  ASSERT_TRUE(enrol.ok() && *enrol);
  auto answer = w.server->Handle("POST", protocol::kPathEnrol, protocol::kContentType, (*enrol)->body);
  EXPECT_EQ(answer.status, 403);
  EXPECT_EQ(Answer(answer.body).status(), v1::INVITE_INVALID);
}

// An older invite of the same organisation, still unexpired (a QR code kept, photographed or captured),
// cannot take the phone back to the addresses or the TLS pin of then: the newest invite joined stands.
TEST(Join, AnOlderInviteOfTheOrganisationCannotDowngradeTheServer) {
  World w;
  auto phone = w.Phone("phone");
  desk::InviteParams p;
  p.server = w.server->server_key();
  p.urls = {"http://old.example:1"};
  p.expires_ms = SystemNowMs() + 3600000;
  auto older = desk::MakeInvite(w.desk, p, SystemNowMs() - 60000);
  ASSERT_TRUE(older.ok());
  p.urls = {"https://new.example:1"};
  p.tls_pin = std::string(32, 'p');
  auto newer = desk::MakeInvite(w.desk, p, SystemNowMs());
  ASSERT_TRUE(newer.ok());
  ASSERT_TRUE(phone->Join(*newer).ok());
  auto refused = phone->Join(*older);
  EXPECT_EQ(refused.status().code(), Code::kState) << refused.status().message();
  auto servers = phone->Servers();
  ASSERT_EQ(servers->size(), 1u);
  EXPECT_EQ((*servers)[0].urls, std::vector<std::string>{"https://new.example:1"});
  EXPECT_EQ((*servers)[0].tls_pin, std::string(32, 'p'));
  EXPECT_TRUE(phone->Join(*newer).ok());  // the same invite again is fine
}

// The organisation moves the phone to a new server: receipts the earlier one signed still verify on the
// phone (its statement authorised that key when it signed).
TEST(Join, ReceiptsOfAnEarlierServerOfTheOrganisationStillVerify) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "delivered to the first server");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  crypto::SigningKey next = crypto::GenerateSigningKey();
  desk::InviteParams p;
  p.server = next.public_key;
  p.urls = {"http://127.0.0.1:2"};
  p.expires_ms = SystemNowMs() + 60000;
  auto moved = desk::MakeInvite(w.desk, p, SystemNowMs());
  ASSERT_TRUE(moved.ok());
  ASSERT_TRUE(phone->Join(*moved).ok());
  ASSERT_EQ((*phone->Servers())[0].server_key, next.public_key);
  auto receipts = phone->ListReceipts();
  ASSERT_TRUE(receipts.ok());
  ASSERT_EQ(receipts->size(), 1u);
  EXPECT_TRUE((*receipts)[0].verified);
}

// An observer of the plain-HTTP enrolment (invite and proof) cannot enrol its own device with them, and
// the server stores no secret of the invite: its enrolment key is public.
TEST(Server, ACapturedEnrolmentEnrolsNoOtherDevice) {
  World w;
  auto phone = w.Phone("phone");
  const std::string invite = w.Invite(5);
  ASSERT_TRUE(phone->Join(invite).ok());
  std::optional<std::string> captured;
  w.net->intercept = [&](const sync::HttpRequest& req) -> std::optional<std::string> {
    if (req.path == protocol::kPathEnrol) captured = req.body;
    return std::nullopt;
  };
  SealOne(*phone, "x");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(captured.has_value());
  v1::SignedRequest sr;
  v1::Request req;
  ASSERT_TRUE(sr.ParseFromString(*captured) && req.ParseFromString(sr.request()));
  crypto::SigningKey thief = crypto::GenerateSigningKey();
  v1::Request stolen = req;
  stolen.set_device_key(thief.public_key.data(), 32);
  auto r = w.server->Handle("POST", protocol::kPathEnrol, protocol::kContentType, protocol::SignRequest(thief, stolen));
  EXPECT_EQ(r.status, 403);
  EXPECT_EQ(Answer(r.body).status(), v1::INVITE_INVALID);
  EXPECT_EQ(w.server->Devices()->size(), 1u);
  // The request replayed as it was changes nothing either.
  EXPECT_EQ(w.server->Handle("POST", protocol::kPathEnrol, protocol::kContentType, *captured).status, 200);
  EXPECT_EQ(w.server->Devices()->size(), 1u);
  // The invite's secret never crosses the network: the server could not keep it if it wanted to.
  auto decoded = protocol::DecodeInvite(invite);
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(captured->find(std::string(reinterpret_cast<const char*>(decoded->enrol_secret.data()), 32)),
            std::string::npos);
}

TEST(Sync, ServerTextIsMadePrintable) {
  EXPECT_EQ(sync::Printable("revoked"), "revoked");
  EXPECT_EQ(sync::Printable("\x1b]0;pwned\x07 \x1b[2J"), "?]0;pwned? ?[2J");
  EXPECT_EQ(sync::Printable("line\nbreak\r\x7f"), "line?break??");
  EXPECT_EQ(sync::Printable("Орал \xc2\x9b C1"), "Орал ? C1");   // U+009B (CSI) is an escape too
  EXPECT_EQ(sync::Printable("bad \xff utf8 \xe2\x82"), "bad ? utf8 ?");  // a cut-off sequence: one mark
  EXPECT_EQ(sync::Printable(std::string(2000, 'a')).size(), 512u);
  // End to end: a hostile server's message is stored without the escape.
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "x");
  const crypto::SigningKey hostile = w.StolenServerKey();
  w.net->tamper = [&](const sync::HttpRequest& req, std::string& body) {
    v1::Response r;
    r.set_status(v1::DEVICE_REVOKED);
    r.set_message("revoked \x1b[31mred");
    body = SignAnswer(hostile, r, req);
  };
  Sync(*phone, *w.net);
  EXPECT_EQ((*phone->Servers())[0].last_error, "revoked ?[31mred");
}

TEST(Server, BadRequestsAreRefusedCleanly) {
  World w;
  EXPECT_EQ(w.server->Handle("POST", "/v2/push", "text/plain", "x").status, 415);
  EXPECT_EQ(w.server->Handle("POST", "/v2/push", protocol::kContentType, "\xff\xff garbage").status, 400);
  EXPECT_EQ(w.server->Handle("GET", "/v2/push", protocol::kContentType, "").status, 405);
  EXPECT_EQ(w.server->Handle("POST", "/nope", protocol::kContentType, "").status, 404);
  EXPECT_EQ(w.server->Handle("GET", "/v2/health", "", "").status, 200);
  // A Dala 0.1 phone (protocol 1, under /v1/) is told to update, not left guessing.
  for (const char* old : {"/v1/push", "/v1/enrol", "/v1/upload"}) {
    auto gone = w.server->Handle("POST", old, protocol::kContentType, "x");
    EXPECT_EQ(gone.status, 410) << old;
    auto said = protocol::VerifyResponse(crypto::Bytes(gone.body), w.server->server_key(),
                                         protocol::RequestHash(crypto::Bytes(std::string_view("x"))));
    ASSERT_TRUE(said.ok()) << old;
    EXPECT_NE(said->message().find("protocol 2"), std::string::npos) << old;
  }
  // Unknown device: 401.
  auto phone = w.Phone("phone");
  v1::Request req;
  req.set_server_key(w.server->server_key().data(), 32);
  req.mutable_push();
  std::string body = phone->SignRequest(req);
  EXPECT_EQ(w.server->Handle("POST", "/v2/push", protocol::kContentType, body).status, 401);
  // Signed for another server: refused.
  auto other = crypto::GenerateSigningKey();
  req.set_server_key(other.public_key.data(), 32);
  EXPECT_EQ(w.server->Handle("POST", "/v2/push", protocol::kContentType, phone->SignRequest(req)).status, 403);
  // A forged signature: 400.
  v1::SignedRequest sr;
  sr.ParseFromString(body);
  std::string sig = sr.signature();
  sig[0] ^= 1;
  sr.set_signature(sig);
  EXPECT_EQ(w.server->Handle("POST", "/v2/push", protocol::kContentType, sr.SerializeAsString()).status, 400);
}

TEST(Server, AnotherDevicesEnvelopeIsRejected) {
  World w;
  auto a = w.Phone("a"), b = w.Phone("b");
  ASSERT_TRUE(a->Join(w.Invite()).ok());
  ASSERT_TRUE(b->Join(w.Invite()).ok());
  SealOne(*a, "from a");
  ASSERT_EQ(Sync(*b, *w.net).remaining, 0u);  // b enrols
  auto batch = a->NextBatch((*a->Servers())[0].destination, 10, 1 << 20);
  ASSERT_EQ(batch->size(), 1u);
  v1::Request req;
  req.set_server_key(w.server->server_key().data(), 32);
  req.mutable_push()->add_envelopes(batch->at(0).envelope.data(), batch->at(0).envelope.size());
  auto r = w.server->Handle("POST", "/v2/push", protocol::kContentType, b->SignRequest(req));
  v1::Response resp = Answer(r.body);
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).code(), v1::REJECTED);
  EXPECT_EQ(*w.server->ReportCount(), 0u);
}

// Report ids are the device's own: a rogue enrolled device that learns a victim's report id and pushes
// its next version first neither occupies the id nor makes the victim's real version conflict.
TEST(Server, ARogueDeviceCannotTakeOverAnotherDevicesReportIds) {
  World w;
  auto victim = w.Phone("victim");
  std::string invite = w.Invite();
  ASSERT_TRUE(victim->Join(invite).ok());
  ReportId id = SealOne(*victim, "version 1");
  ASSERT_EQ(Sync(*victim, *w.net).delivered, 1u);

  crypto::SigningKey rogue = crypto::GenerateSigningKey();
  auto sign = [&](v1::Request& req) {
    req.set_device_key(rogue.public_key.data(), 32);
    req.set_server_key(w.server->server_key().data(), 32);
    return protocol::SignRequest(rogue, req);
  };
  v1::Request enrol;
  auto decoded = protocol::DecodeInvite(invite);
  ASSERT_TRUE(decoded.ok());
  enrol.mutable_enrol()->set_invite(decoded->checked.signed_invite);
  enrol.mutable_enrol()->set_proof(protocol::EnrolProof(decoded->enrol_secret, rogue.public_key, w.server->server_key()));
  ASSERT_EQ(w.server->Handle("POST", protocol::kPathEnrol, protocol::kContentType, sign(enrol)).status, 200);
  v1::Request push;
  for (uint32_t version : {1u, 2u}) {
    envelope::Header h;
    h.report_id = id;
    h.version = version;
    h.device_key = rogue.public_key;
    std::string junk = "not the victim's report";
    auto env = envelope::Seal(rogue, h, crypto::Bytes(junk), std::vector<crypto::PublicKey>{w.recipient()});
    ASSERT_TRUE(env.ok());
    push.mutable_push()->add_envelopes(*env);
  }
  ASSERT_EQ(w.server->Handle("POST", protocol::kPathPush, protocol::kContentType, sign(push)).status, 200);
  ASSERT_EQ(*w.server->ReportCount(), 3u);  // the rogue's two are its own, beside the victim's

  auto v2 = victim->Edit(id);
  ASSERT_TRUE(v2.ok());
  ASSERT_TRUE(v2->SetNarrative("version 2").ok());
  ASSERT_TRUE(victim->Seal(*v2).ok());
  auto run = Sync(*victim, *w.net);
  EXPECT_EQ(run.delivered, 1u) << run.last_error;
  EXPECT_EQ(run.rejected, 0u);
  EXPECT_EQ(victim->Get(id)->state, ReportState::kDelivered);
  EXPECT_EQ(*w.server->ReportCount(), 4u);
}

TEST(Sync, ManyPhonesConcurrentlyExactlyOnce) {
  World w;
  constexpr int kPhones = 50, kReports = 200;
  std::string invite = w.Invite(kPhones);
  std::vector<std::unique_ptr<Store>> phones;
  for (int p = 0; p < kPhones; ++p) {
    phones.push_back(w.Phone("p" + std::to_string(p)));
    ASSERT_TRUE(phones.back()->Join(invite).ok());
    std::vector<ReportId> ids;
    for (int i = 0; i < kReports; ++i) {
      auto r = phones.back()->CreateDraft("detention/1");
      ASSERT_TRUE(r.ok());
      ids.push_back(r->id());
    }
    ASSERT_TRUE(phones.back()->SealMany(ids).ok());
  }
  std::atomic<uint64_t> delivered{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < kPhones; ++p)
    threads.emplace_back([&, p] {
      auto r = sync::RunOnce(*phones[p], *w.net, SystemNowMs() + 60000, nullptr);
      if (r.ok()) delivered += r->delivered;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(delivered.load(), static_cast<uint64_t>(kPhones) * kReports);
  EXPECT_EQ(*w.server->ReportCount(), static_cast<uint64_t>(kPhones) * kReports);
  auto devices = w.server->Devices();
  ASSERT_EQ(devices->size(), static_cast<size_t>(kPhones));
  for (const auto& d : *devices) EXPECT_EQ(d.reports, static_cast<uint64_t>(kReports));
}

TEST(Server, CanaryAppearsNowhereUnderTheDataDirectory) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  const std::string canary = "CANARY-server-Konshbaev-41c7";
  for (int i = 0; i < 20; ++i) SealOne(*phone, canary + " " + std::to_string(i));
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 20u);
  std::string where;
  EXPECT_FALSE(test::TreeContains(w.t.sub("server"), canary, &where)) << where;
  ASSERT_TRUE(w.server->Export(w.t.sub("export.bin")).ok());
  EXPECT_FALSE(test::TreeContains(w.t.path(), canary, &where)) << where;
}

// The server's log (docs/protocol.md, "The log"): every enrolment, adopted statement, stored report
// version and device revocation is a leaf, in order; the export carries the leaves and a head over exactly
// them, signed by the server's key; the log survives a restart and its tables refuse changes.
TEST(Server, TheLogHoldsEverythingTheServerAcceptedInOrder) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "one");
  SealOne(*phone, "two");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 2u);
  ASSERT_TRUE(w.server->Revoke(phone->device_key()).ok());
  auto check = [&](const std::string& name, size_t leaves) {
    ASSERT_TRUE(w.server->Export(w.t.sub(name)).ok());
    auto bytes = test::ReadAll(w.t.sub(name));
    v1::Export ex;
    ASSERT_TRUE(ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
    ASSERT_EQ(static_cast<size_t>(ex.log_size()), leaves);
    std::vector<protocol::LeafType> types;
    merkle::MemoryTree tree;
    for (const auto& leaf : ex.log()) {
      types.push_back(static_cast<protocol::LeafType>(leaf[0]));
      tree.Append(merkle::LeafHash(crypto::Bytes(leaf)));
    }
    using T = protocol::LeafType;
    const std::vector<T> want = {T::kStatement, T::kEnrolment, T::kReport, T::kReport, T::kDeviceRevoked};
    EXPECT_EQ(std::vector<T>(types.begin(), types.begin() + 5), want);
    auto head = protocol::VerifyLogHead(crypto::Bytes(ex.log_head()));
    ASSERT_TRUE(head.ok()) << head.status().message();
    EXPECT_EQ(head->size, leaves);
    EXPECT_EQ(head->root, *merkle::Root(tree, tree.size()));
    EXPECT_EQ(head->server_key, w.server->server_key());
    auto sum = desk::OpenExport(w.desk, w.t.sub(name), w.t.sub(name + "-desk"));
    ASSERT_TRUE(sum.ok());
    EXPECT_EQ(sum->log_problems, 0u);
    EXPECT_EQ(sum->verified, 2u);
  };
  check("a.dala", 5);
  // Restarted, the log goes on from where it was: a new statement is leaf 5.
  w.net.reset();
  w.server.reset();
  w.server = std::move(server::ServerCore::Open(w.t.sub("server"))).value();
  w.net = std::make_unique<LoopTransport>(w.server.get());
  ASSERT_TRUE(desk::RotateRecipients(w.desk, SystemNowMs()).ok());
  ASSERT_TRUE(w.server->SetStatement(w.desk.signed_statement).ok());
  check("b.dala", 6);
  // Its tables refuse to change a leaf or remove one (anyone with the database key could still rewrite
  // the file: heads held elsewhere catch that, docs/protocol.md).
  auto key = fs::ReadFile(w.t.sub("server") + "/" + server::kServerKeyFile, 64);
  ASSERT_TRUE(key.ok());
  w.net.reset();
  w.server.reset();
  auto db = db::Db::Open(w.t.sub("server") + "/" + server::kServerDbFile, SecretBuffer(key->data(), key->size()), false);
  ASSERT_TRUE(db.ok());
  EXPECT_FALSE(db->Exec("UPDATE log SET leaf = X'00' WHERE idx = 2").ok());
  EXPECT_FALSE(db->Exec("DELETE FROM log WHERE idx = 4").ok());
  EXPECT_FALSE(db->Exec("DELETE FROM log_nodes").ok());
}

// The server keeps recent log nodes in memory; a transaction that fails takes its leaves with it, and
// what is appended in their place is read back, not what the failed transaction had written.
TEST(Log, NodesOfAFailedTransactionAreNotRemembered) {
  TempDir t;
  SecretBuffer key(32);
  randombytes_buf(key.data(), key.size());
  auto db = db::Db::Open(t.sub("log.db"), key, true);
  ASSERT_TRUE(db.ok());
  ASSERT_TRUE(db->Exec("CREATE TABLE log(idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL);"
                       "CREATE TABLE log_nodes(level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, "
                       "PRIMARY KEY(level, idx)) WITHOUT ROWID;").ok());
  server::sql::SqliteConnection conn(std::move(*db));
  server::ServerLog log(conn);
  ASSERT_TRUE(log.Load().ok());
  ASSERT_TRUE(log.Append("a").ok());
  {
    db::Txn txn(conn.db());
    ASSERT_TRUE(txn.Begin().ok());
    ASSERT_TRUE(log.Append("forgotten").ok());
    ASSERT_TRUE(log.Perfect(1, 0).ok());
    log.Rollback(1);  // the transaction ends without a commit
  }
  ASSERT_TRUE(log.Append("b").ok());
  merkle::MemoryTree want;
  want.Append(merkle::LeafHash(crypto::Bytes(std::string("a"))));
  want.Append(merkle::LeafHash(crypto::Bytes(std::string("b"))));
  EXPECT_EQ(*log.Perfect(0, 1), *want.Perfect(0, 1));
  EXPECT_EQ(*log.Perfect(1, 0), *want.Perfect(1, 0));
  EXPECT_EQ(*merkle::Root(log, 2), *merkle::Root(want, 2));
}

// The log as a phone sees it (docs/protocol.md, "What a phone checks").
v1::SignedReceipt HeldReceipt(Store& phone, const ReportId& id, uint32_t version = 1) {
  auto bytes = phone.Receipt((*phone.Servers())[0].destination, id, version);
  v1::SignedReceipt sr;
  EXPECT_TRUE(bytes.ok() && sr.ParseFromArray(bytes->data(), static_cast<int>(bytes->size())));
  return sr;
}
v1::LogWitness Witness(Store& phone) {
  v1::LogWitness w;
  EXPECT_TRUE(w.ParseFromString((*phone.Servers())[0].log_witness));
  return w;
}
// A copy of a server's data directory, taken while it is closed (a backup, or a raider's clone).
// The server's data directory replaced by the copy CopyServer made (a server restored from a backup).
void RestoreServer(World& w, const std::string& from) {
  w.net.reset();
  w.server.reset();
  std::filesystem::remove_all(w.t.sub("server"));
  std::filesystem::rename(w.t.sub(from), w.t.sub("server"));
  w.server = std::move(server::ServerCore::Open(w.t.sub("server"))).value();
  w.net = std::make_unique<LoopTransport>(w.server.get());
}

void CopyServer(World& w, const std::string& to) {
  w.net.reset();
  w.server.reset();
  std::filesystem::copy(w.t.sub("server"), w.t.sub(to), std::filesystem::copy_options::recursive);
  w.server = std::move(server::ServerCore::Open(w.t.sub("server"))).value();
  w.net = std::make_unique<LoopTransport>(w.server.get());
}

// Each receipt comes with its report's place in the server's log: the leaf, the inclusion proof and the
// signed head; the phone keeps the newest head, hands it back, and takes the next only as its extension.
// A receipt whose place does not hold (a server, or whoever has its key, lying about it) is not taken.
TEST(Log, EveryReceiptCarriesItsPlaceInTheServersLog) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ReportId a = SealOne(*phone, "a"), b = SealOne(*phone, "b");
  std::vector<int> heads_sent;
  w.net->tamper = [&](const sync::HttpRequest& req, std::string&) {
    v1::SignedRequest sreq;
    v1::Request r;
    if (req.path == protocol::kPathPush && sreq.ParseFromString(req.body) && r.ParseFromString(sreq.request()))
      heads_sent.push_back(r.log_sizes_size());
  };
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 2u);
  ReportId c = SealOne(*phone, "c");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  EXPECT_EQ(heads_sent, (std::vector<int>{0, 1}));  // the second run hands back the head of the first
  ASSERT_TRUE(w.server->Export(w.t.sub("e.dala")).ok());
  auto bytes = test::ReadAll(w.t.sub("e.dala"));
  v1::Export ex;
  ASSERT_TRUE(ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  for (const ReportId& id : {a, b, c}) {
    v1::SignedReceipt sr = HeldReceipt(*phone, id);
    v1::Receipt r;
    ASSERT_TRUE(r.ParseFromString(sr.receipt()));
    auto head = protocol::VerifyLogHead(crypto::Bytes(sr.log_head()));
    ASSERT_TRUE(head.ok());
    EXPECT_EQ(head->server_key, w.server->server_key());
    ASSERT_TRUE(sr.has_leaf_index());
    EXPECT_TRUE(protocol::ReceiptInLog(r, sr.leaf_index(), sr.inclusion_proof(), *head));
    EXPECT_EQ(ex.log(static_cast<int>(sr.leaf_index())), protocol::ReportLeaf(r));
  }
  v1::LogWitness witness = Witness(*phone);
  EXPECT_EQ(witness.tip(), HeldReceipt(*phone, c).log_head());
  EXPECT_EQ(witness.unlinked_size(), 0);
  EXPECT_EQ(witness.evidence_size(), 0);
  EXPECT_EQ(protocol::VerifyLogHead(crypto::Bytes(witness.tip()))->size, static_cast<uint64_t>(ex.log_size()));
  // The desk, given the phone's receipts, finds each where the phone was told it is.
  std::vector<std::string> held;
  for (const ReportId& id : {a, b, c}) held.push_back(HeldReceipt(*phone, id).SerializeAsString());
  auto sum = desk::OpenExport(w.desk, w.t.sub("e.dala"), w.t.sub("desk"), held);
  ASSERT_TRUE(sum.ok());
  EXPECT_TRUE(sum->clean());
  EXPECT_EQ(sum->log_problems, 0u);

  // Whoever holds the server's key answers with the report at another leaf, or without its proof.
  const crypto::SigningKey stolen = w.StolenServerKey();
  for (int lie : {0, 1, 2, 3}) {
    SealOne(*phone, "lied about " + std::to_string(lie));
    w.net->tamper = [&](const sync::HttpRequest& req, std::string& body) {
      v1::Response r = Answer(body);
      if (r.results_size() == 0) return;
      if (lie == 0) r.mutable_results(0)->set_leaf_index(r.results(0).leaf_index() - 1);
      if (lie == 1) r.mutable_results(0)->clear_inclusion_proof();
      if (lie == 2) r.clear_log_head();
      if (lie == 3) r.set_log_head(r.log_head() + std::string("\x1a\x04pad!", 6));  // unsigned bytes riding along
      body = SignAnswer(stolen, r, req);
    };
    auto run = Sync(*phone, *w.net);
    EXPECT_EQ(run.delivered, 0u) << lie;
    EXPECT_EQ(run.remaining, 1u) << lie;
    w.net->tamper = nullptr;
    ASSERT_TRUE(phone->RetryNow().ok());
    EXPECT_EQ(Sync(*phone, *w.net).delivered, 1u) << lie;  // stored already: the true answer comes now
  }
  // The reports of one push are neighbouring leaves: each proof after the first carries only the hashes it
  // does not share with the one before. A count that claims more than is there shows nothing.
  SealOne(*phone, "first of two");
  ReportId second = SealOne(*phone, "second of two");
  w.net->tamper = [&](const sync::HttpRequest& req, std::string& body) {
    v1::Response r = Answer(body);
    if (r.results_size() != 2) return;
    EXPECT_GT(r.results(1).proof_shared(), 0u);
    EXPECT_LT(r.results(1).inclusion_proof_size(), r.results(0).inclusion_proof_size());
    r.mutable_results(1)->set_proof_shared(r.results(1).proof_shared() + 1);
    body = SignAnswer(stolen, r, req);
  };
  auto shared = Sync(*phone, *w.net);
  EXPECT_EQ(shared.delivered, 1u);
  EXPECT_EQ(shared.remaining, 1u);
  EXPECT_EQ(phone->Get(second)->state, ReportState::kQueued);
  w.net->tamper = nullptr;
  ASSERT_TRUE(phone->RetryNow().ok());
  EXPECT_EQ(Sync(*phone, *w.net).delivered, 1u);
  // A proof element that covers only leaves of the same answer is not sent: the phone computes it from
  // those reports' receipts (proof_computed). One it cannot compute (a leaf not in the answer) shows nothing.
  // Lies: the first element a result sends claimed as computed instead (leaves outside the answer); a bit
  // past the proof's elements; a fifth result for four reports.
  std::vector<ReportId> four;
  for (int lie : {0, 1, 2}) {
    four.clear();
    for (int i = 0; i < 4; ++i) four.push_back(SealOne(*phone, "one of four " + std::to_string(i)));
    w.net->tamper = [&](const sync::HttpRequest& req, std::string& body) {
      v1::Response r = Answer(body);
      if (r.results_size() != 4) return;
      int lied = -1;
      for (int k = 0; k < 4 && lied < 0; ++k) {
        const uint64_t computed = r.results(k).proof_computed();
        if (computed == 0 || r.results(k).inclusion_proof_size() == 0) continue;
        if (lie == 0) {
          const int first_sent = std::countr_one(computed);
          r.mutable_results(k)->set_proof_computed(computed | (uint64_t{1} << first_sent));
          r.mutable_results(k)->mutable_inclusion_proof()->DeleteSubrange(0, 1);
        } else if (lie == 1) {
          r.mutable_results(k)->set_proof_computed(computed | (uint64_t{1} << 63));
        } else {
          *r.add_results() = r.results(k);
        }
        lied = k;
      }
      EXPECT_GE(lied, 0) << "no result of four neighbouring leaves had an element computed";
      body = SignAnswer(stolen, r, req);
    };
    auto computed = Sync(*phone, *w.net);  // that result, and those whose proofs share its tail, wait
    EXPECT_GE(computed.remaining, 1u) << "lie " << lie << " was taken";
    EXPECT_EQ(computed.delivered + computed.remaining, 4u) << lie;
    if (lie == 2) EXPECT_EQ(computed.delivered, 0u) << "an answer of five results for four reports was used";
    w.net->tamper = nullptr;
    ASSERT_TRUE(phone->RetryNow().ok());
    EXPECT_EQ(Sync(*phone, *w.net).delivered, computed.remaining) << lie;
  }
  for (const ReportId& id : four) {  // each kept with its whole proof, computed elements filled in
    v1::SignedReceipt sr = HeldReceipt(*phone, id);
    v1::Receipt rr;
    ASSERT_TRUE(rr.ParseFromString(sr.receipt()));
    EXPECT_TRUE(protocol::ReceiptInLog(rr, sr.leaf_index(), sr.inclusion_proof(),
                                       *protocol::VerifyLogHead(crypto::Bytes(sr.log_head()))));
  }
  v1::SignedReceipt whole = HeldReceipt(*phone, second);  // kept whole: anyone can check it alone
  v1::Receipt wr;
  ASSERT_TRUE(wr.ParseFromString(whole.receipt()));
  EXPECT_TRUE(protocol::ReceiptInLog(wr, whole.leaf_index(), whole.inclusion_proof(),
                                     *protocol::VerifyLogHead(crypto::Bytes(whole.log_head()))));
  EXPECT_EQ(Witness(*phone).evidence_size(), 0);
}

// A server proves consistency only from the size of a head it signed: a phone holds no other, and any
// other size would let a rogue device make the server compute proofs at will under its lock.
TEST(Log, ConsistencyIsProvenOnlyFromHeadsTheServerSigned) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "one");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  const uint64_t head = protocol::VerifyLogHead(crypto::Bytes(Witness(*phone).tip()))->size;  // statement, enrolment, report
  SealOne(*phone, "two");
  SealOne(*phone, "three");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 2u);
  v1::Request req;
  const crypto::PublicKey device = phone->device_key(), server = w.server->server_key();
  req.set_device_key(device.data(), 32);
  req.set_server_key(server.data(), 32);
  req.mutable_push();
  for (uint64_t size : {head, head + 1, head}) req.add_log_sizes(size);
  auto answer = w.server->Handle("POST", protocol::kPathPush, protocol::kContentType, phone->SignRequest(req));
  ASSERT_EQ(answer.status, 200);
  v1::Response r = Answer(answer.body);
  ASSERT_EQ(r.consistency_size(), 3);
  EXPECT_GT(r.consistency(0).hashes_size(), 0);   // a head it signed
  EXPECT_EQ(r.consistency(1).hashes_size(), 0);   // a size inside a commit: never a head
  EXPECT_EQ(r.consistency(2).SerializeAsString(), r.consistency(0).SerializeAsString());
  req.clear_log_sizes();
  for (int i = 0; i < 10; ++i) req.add_log_sizes(head);
  EXPECT_EQ(w.server->Handle("POST", protocol::kPathPush, protocol::kContentType, phone->SignRequest(req)).status, 400);
}

// A server that shows two phones two logs (a clone of its data directory run with its key, or a fork on
// purpose) is caught by the desk given both phones' receipts, and by the phone that later meets the other
// branch, which keeps both heads as evidence and delivers nothing there.
TEST(Log, AForkedLogIsCaughtByTheDeskAndByThePhoneThatSeesBothBranches) {
  World w;
  const std::string invite = w.Invite();
  auto alice = w.Phone("alice");
  ASSERT_TRUE(alice->Join(invite).ok());
  SealOne(*alice, "before the fork");
  ASSERT_EQ(Sync(*alice, *w.net).delivered, 1u);
  CopyServer(w, "clone");
  auto clone = std::move(server::ServerCore::Open(w.t.sub("clone"))).value();
  LoopTransport to_clone(clone.get());
  auto bob = w.Phone("bob");
  ASSERT_TRUE(bob->Join(invite).ok());
  ReportId bobs = SealOne(*bob, "shown only the clone's log");
  ASSERT_EQ(Sync(*bob, to_clone).delivered, 1u);
  for (int i = 0; i < 4; ++i) SealOne(*alice, "after the fork " + std::to_string(i));
  ASSERT_EQ(Sync(*alice, *w.net).delivered, 4u);
  ASSERT_TRUE(w.server->Export(w.t.sub("e.dala")).ok());
  auto receipts = [](Store& phone) {
    std::vector<std::string> out;
    auto held = phone.ListReceipts();
    for (const auto& r : *held) out.emplace_back(r.receipt.begin(), r.receipt.end());
    return out;
  };
  // Alice's receipts alone agree with the export: a forked server's own export is consistent.
  auto alone = desk::OpenExport(w.desk, w.t.sub("e.dala"), w.t.sub("desk1"), receipts(*alice));
  ASSERT_TRUE(alone.ok());
  { auto t = test::ReadAll(w.t.sub("desk1") + "/summary.json"); EXPECT_TRUE(alone->clean()) << std::string(t.begin(), t.end()); }
  std::vector<std::string> both = receipts(*alice);
  for (auto& r : receipts(*bob)) both.push_back(r);
  auto sum = desk::OpenExport(w.desk, w.t.sub("e.dala"), w.t.sub("desk2"), both);
  ASSERT_TRUE(sum.ok());
  EXPECT_GE(sum->log_problems, 1u);
  EXPECT_FALSE(sum->clean());
  std::ifstream summary(w.t.sub("desk2") + "/summary.json");
  std::string text((std::istreambuf_iterator<char>(summary)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("forked its log"), std::string::npos) << text;
  // Bob reaches the other branch: its head does not extend the one he holds.
  SealOne(*bob, "sent to the other branch");
  EXPECT_EQ(Sync(*bob, *w.net).delivered, 0u);  // this branch never enrolled him: he enrols anew
  ASSERT_TRUE(bob->RetryNow().ok());
  auto run = Sync(*bob, *w.net);
  EXPECT_EQ(run.delivered, 0u);
  EXPECT_EQ(run.remaining, 1u);
  EXPECT_NE(run.last_error.find("fork"), std::string::npos) << run.last_error;
  // Nor does he send anything more to the branch he knew, which could otherwise feed him its own log again.
  int to_clone_calls = to_clone.calls;
  ASSERT_TRUE(bob->RetryNow().ok());
  EXPECT_EQ(Sync(*bob, to_clone).delivered, 0u);
  EXPECT_EQ(to_clone.calls.load(), to_clone_calls);
  v1::LogWitness witness = Witness(*bob);
  ASSERT_EQ(witness.evidence_size(), 2);
  EXPECT_EQ(witness.evidence(0), HeldReceipt(*bob, bobs).log_head());
  EXPECT_EQ(protocol::VerifyLogHead(crypto::Bytes(witness.evidence(1)))->server_key, w.server->server_key());
  EXPECT_EQ(witness.tip(), HeldReceipt(*bob, bobs).log_head());  // still the head it had
  EXPECT_EQ(Sync(*bob, *w.net).delivered, 0u);  // and so it stays
}

// A server restored from an old backup would hand out log positions again that phones already hold:
// a phone holding a newer head takes nothing from it.
TEST(Log, AServerRestoredFromAnOldBackupIsCaughtByPhonesHoldingNewerHeads) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "one");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  CopyServer(w, "backup");
  SealOne(*phone, "two");
  SealOne(*phone, "three");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 2u);
  RestoreServer(w, "backup");
  SealOne(*phone, "four");
  auto run = Sync(*phone, *w.net);
  EXPECT_EQ(run.delivered, 0u);
  EXPECT_EQ(run.remaining, 1u);
  EXPECT_NE(run.last_error.find("old backup"), std::string::npos) << run.last_error;
  EXPECT_EQ(Witness(*phone).evidence_size(), 2);
  // The restored server's export is consistent in itself; the phone's receipts show what it lost.
  ASSERT_TRUE(w.server->Export(w.t.sub("e.dala")).ok());
  std::vector<std::string> held;
  auto receipts = phone->ListReceipts();
  for (const auto& r : *receipts) held.emplace_back(r.receipt.begin(), r.receipt.end());
  auto sum = desk::OpenExport(w.desk, w.t.sub("e.dala"), w.t.sub("desk"), held);
  ASSERT_TRUE(sum.ok());
  EXPECT_GE(sum->log_problems, 2u);  // the two receipts of the reports after the backup
  EXPECT_EQ(sum->missing, 2u);
  auto text = test::ReadAll(w.t.sub("desk") + "/summary.json");
  EXPECT_NE(std::string(text.begin(), text.end()).find("the server logged more than the export shows"), std::string::npos);
}

// The desk holds each export against its earlier exports of the same server (--since): a server restored
// from an old backup gives an export consistent in itself, from which the reports after the backup are
// gone; next to the earlier export, which held them, that is a log rewritten.
TEST(Log, AnExportIsHeldAgainstTheDesksEarlierExportsOfTheSameServer) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite(2)).ok());
  SealOne(*phone, "one");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->Export(w.t.sub("first.dala")).ok());
  CopyServer(w, "backup");
  SealOne(*phone, "two");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->Export(w.t.sub("second.dala")).ok());
  auto open = [&](const std::string& file, const std::vector<std::string>& since) {
    desk::OpenOptions o;
    o.summary_path = w.t.sub("summary.json");
    o.earlier_exports = since;
    auto sum = desk::OpenExport(w.desk, w.t.sub(file), "", o);
    EXPECT_TRUE(sum.ok()) << sum.status().message();
    auto text = test::ReadAll(w.t.sub("summary.json"));
    return std::make_pair(sum.ok() ? *sum : desk::Summary{}, std::string(text.begin(), text.end()));
  };
  // An honest server: each export extends the one before, whatever their order on the command line.
  EXPECT_TRUE(open("second.dala", {w.t.sub("first.dala")}).first.clean());
  EXPECT_TRUE(open("second.dala", {w.t.sub("first.dala"), w.t.sub("second.dala")}).first.clean());
  // The earlier export held more than this one: leaves were removed.
  auto [shorter, shorter_text] = open("first.dala", {w.t.sub("second.dala")});
  EXPECT_EQ(shorter.log_problems, 1u);
  EXPECT_NE(shorter_text.find("leaves were removed since"), std::string::npos) << shorter_text;

  // Restored from the backup (before "two"), the server takes another phone's report in its place.
  RestoreServer(w, "backup");
  auto other = w.Phone("other");
  ASSERT_TRUE(other->Join(w.Invite()).ok());
  SealOne(*other, "in its place");
  ASSERT_EQ(Sync(*other, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->Export(w.t.sub("restored.dala")).ok());
  auto [alone, alone_text] = open("restored.dala", {});
  EXPECT_TRUE(alone.clean()) << alone_text;  // consistent in itself
  EXPECT_TRUE(open("restored.dala", {w.t.sub("first.dala")}).first.clean());  // before the backup: still held
  auto [caught, caught_text] = open("restored.dala", {w.t.sub("first.dala"), w.t.sub("second.dala")});
  EXPECT_EQ(caught.log_problems, 1u);
  EXPECT_FALSE(caught.clean());
  EXPECT_NE(caught_text.find("leaves were removed or changed since"), std::string::npos) << caught_text;
}

// A push sent before the answer that moved the tip (pipelining) brings a head proven against an older one
// only: it waits, unlinked, and the next answer links it. Proofs that are missing or for other heads prove
// nothing and change nothing.
TEST(Log, AHeadProvenOnlyAgainstAnOlderHeadWaitsForTheNextAnswer) {
  const crypto::SigningKey server = crypto::GenerateSigningKey();
  merkle::MemoryTree tree;
  auto head_at = [&](uint64_t leaves) {
    while (tree.size() < leaves) tree.Append(merkle::LeafHash(crypto::Bytes(std::to_string(tree.size()))));
    protocol::LogHead h;
    h.size = leaves;
    h.root = *merkle::Root(tree, leaves);
    h.server_key = server.public_key;
    return protocol::SignLogHead(server, h);
  };
  auto proofs = [&](const std::vector<std::string>& from, uint64_t to) {
    google::protobuf::RepeatedPtrField<v1::ConsistencyProof> out;
    for (const auto& f : from) {
      auto* c = out.Add();
      c->set_from_size(protocol::LogHeadSize(f));
      if (c->from_size() >= to) continue;
      auto proof = merkle::ConsistencyProof(tree, c->from_size(), to);  // held: a range-for over *temporary dangles
      for (const auto& h : *proof) c->add_hashes(h.data(), h.size());
    }
    return out;
  };
  const std::string h3 = head_at(3), h5 = head_at(5), h8 = head_at(8), h9 = head_at(9);
  sync::LogWitness w = sync::LogWitness::Load("", server.public_key);
  ASSERT_TRUE(w.Observe({}, h3, proofs({}, 3)).ok());
  const std::vector<std::string> sent_early = w.HeadsToSend();  // {h3}: a pipelined push
  auto o5 = w.Observe(w.HeadsToSend(), h5, proofs(w.HeadsToSend(), 5));
  ASSERT_TRUE(o5.ok()) << o5.status().message();
  EXPECT_EQ(w.state().tip(), h5);
  ASSERT_TRUE(w.Observe(sent_early, h8, proofs(sent_early, 8)).ok());  // proven against h3 only
  EXPECT_EQ(w.state().tip(), h5);
  ASSERT_EQ(w.state().unlinked_size(), 1);
  EXPECT_EQ(w.HeadsToSend(), (std::vector<std::string>{h5, h8}));
  // Missing, or for another size: nothing changes.
  EXPECT_EQ(w.Observe(w.HeadsToSend(), h9, proofs({h5}, 9)).status().code(), Code::kVerify);
  auto shifted = proofs(w.HeadsToSend(), 9);
  shifted.Mutable(1)->set_from_size(7);
  EXPECT_EQ(w.Observe(w.HeadsToSend(), h9, shifted).status().code(), Code::kVerify);
  EXPECT_EQ(w.state().unlinked_size(), 1);
  ASSERT_TRUE(w.Observe(w.HeadsToSend(), h9, proofs(w.HeadsToSend(), 9)).ok());
  EXPECT_EQ(w.state().tip(), h9);
  EXPECT_EQ(w.state().unlinked_size(), 0);
  // A malformed proof (a hash of 31 bytes) proves nothing, and is no evidence either.
  const std::string h12 = head_at(12);
  auto malformed = proofs(w.HeadsToSend(), 12);
  ASSERT_GT(malformed.Mutable(0)->hashes_size(), 0);
  malformed.Mutable(0)->mutable_hashes(0)->pop_back();
  EXPECT_EQ(w.Observe(w.HeadsToSend(), h12, malformed).status().code(), Code::kVerify);
  EXPECT_EQ(w.state().evidence_size(), 0);
  // A head of another key is not this server's.
  const crypto::SigningKey other = crypto::GenerateSigningKey();
  protocol::LogHead fake;
  fake.size = 10;
  fake.server_key = other.public_key;
  EXPECT_EQ(w.Observe(w.HeadsToSend(), protocol::SignLogHead(other, fake), {}).status().code(), Code::kVerify);
  EXPECT_EQ(w.state().evidence_size(), 0);
}

// An export past what one protobuf message can hold (2 GiB) is refused as such, before it is read.
TEST(Desk, AnExportLargerThan2GiBIsRefusedNotMisread) {
  World w;
  const std::string path = w.t.sub("huge.dala");
  {
    std::ofstream f(path, std::ios::binary);
    f << "x";
  }
  std::filesystem::resize_file(path, (2ull << 30) + 1);  // sparse: nothing is written
  auto sum = desk::OpenExport(w.desk, path, w.t.sub("huge"));
  EXPECT_EQ(sum.status().code(), Code::kInvalidArgument);
  EXPECT_NE(sum.status().message().find("2 GiB"), std::string::npos) << sum.status().message();
}

// The desk reads an export in one pass without holding it (desk/export_file.h): what it reads must be what
// protobuf would make of the same bytes, with strict parsing's count of the places protobuf would read in
// silence (a field it does not know, a singular field twice).
TEST(Desk, AnExportIsReadFieldForFieldAsProtobufReadsIt) {
  World w;
  v1::Export ex;
  ex.set_server_key(std::string(32, 'k'));
  for (int i = 0; i < 3; ++i) {
    auto* r = ex.add_reports();
    r->set_envelope("envelope " + std::to_string(i));
    r->set_receipt(std::string(200 + i, static_cast<char>('a' + i)));
    auto* e = ex.add_enrolments();
    e->set_device_key(std::string(32, static_cast<char>('d' + i)));
    e->set_enrolled_ms(1000 + i);
    auto* t = ex.add_timestamps();
    t->set_head("head " + std::to_string(i));
    t->set_token(std::string(3000, static_cast<char>('t' + i)));
  }
  ex.set_statement("statement");
  for (int i = 0; i < 5; ++i) ex.add_log(std::string(133, static_cast<char>(i)));
  ex.set_log_head("the head");
  ex.set_log_from(7);
  std::string bytes = ex.SerializeAsString();
  auto read = [&](const std::string& b) {
    test::WriteAll(w.t.sub("read.bin"), std::vector<uint8_t>(b.begin(), b.end()));
    return desk::ReadExport(w.t.sub("read.bin"));
  };
  auto same = [&](const desk::ExportFile& got, const v1::Export& want) {
    EXPECT_EQ(got.server_key, want.server_key());
    EXPECT_EQ(got.statement, want.statement());
    EXPECT_EQ(got.log_head, want.log_head());
    EXPECT_EQ(got.log_from, want.log_from());
    EXPECT_EQ(got.log_size, static_cast<uint64_t>(want.log_size()));
    ASSERT_EQ(got.log.size(), static_cast<size_t>(want.log_size()));
    for (int i = 0; i < want.log_size(); ++i) EXPECT_EQ(got.log[static_cast<size_t>(i)], want.log(i));
    auto reader = desk::EntryReader::Open(got.path);
    ASSERT_TRUE(reader.ok());
    ASSERT_EQ(got.entries.size(), static_cast<size_t>(want.reports_size()));
    for (int i = 0; i < want.reports_size(); ++i) {
      std::string entry;
      std::string_view envelope, receipt;
      ASSERT_TRUE(reader->Read(got.entries[static_cast<size_t>(i)], &entry).ok());
      ASSERT_TRUE(desk::SplitEntry(entry, &envelope, &receipt));
      EXPECT_EQ(envelope, want.reports(i).envelope());
      EXPECT_EQ(receipt, want.reports(i).receipt());
    }
    ASSERT_EQ(got.enrolments.size(), static_cast<size_t>(want.enrolments_size()));
    for (int i = 0; i < want.enrolments_size(); ++i)
      EXPECT_EQ(got.enrolments[static_cast<size_t>(i)].SerializeAsString(), want.enrolments(i).SerializeAsString());
    ASSERT_EQ(got.timestamps.size(), static_cast<size_t>(want.timestamps_size()));
    for (int i = 0; i < want.timestamps_size(); ++i)
      EXPECT_EQ(got.timestamps[static_cast<size_t>(i)].SerializeAsString(), want.timestamps(i).SerializeAsString());
  };
  {
    auto got = read(bytes);
    ASSERT_TRUE(got.ok()) << got.status().message();
    same(*got, ex);
    EXPECT_EQ(got->unknown_fields, 1u);  // log_from: read, but no field of a full export (below)
    EXPECT_TRUE(got->unknown.empty());
    ASSERT_EQ(got->entry_hashes.size(), 3u);
    EXPECT_EQ(got->entry_hashes[1], crypto::Blake2b256(crypto::Bytes(ex.reports(1).SerializeAsString())));
  }
  // Read in part: the leaves counted only, the entries skipped; the singular fields are always read.
  {
    test::WriteAll(w.t.sub("read.bin"), std::vector<uint8_t>(bytes.begin(), bytes.end()));
    auto got = desk::ReadExport(w.t.sub("read.bin"), desk::ExportParts{false, false, true, false});
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->log_size, 5u);
    EXPECT_TRUE(got->log.empty());
    EXPECT_TRUE(got->entries.empty());
    EXPECT_EQ(got->enrolments.size(), 3u);
    EXPECT_TRUE(got->timestamps.empty());
    EXPECT_EQ(got->log_head, "the head");
  }
  // A singular field twice (protobuf takes the last), a field it does not know, one of each other wire
  // type, a known number with another wire type, and an entry holding a field of its own: each read as
  // protobuf reads it, and each place counted.
  std::string odd = bytes;
  desk::AppendBytesField(1, std::string(32, 'K'), &odd);  // server key again
  const size_t unknown_from = odd.size();
  desk::AppendBytesField(15, "an entry hidden behind a changed tag", &odd);
  odd += std::string("\xa5\x01", 2) + "abcd";              // field 20, fixed32
  odd += std::string("\xa9\x01", 2) + "abcdefgh";          // field 21, fixed64
  odd += std::string("\x10\x05", 2);                       // field 2 as a varint
  const size_t unknown_to = odd.size();
  std::string entry;
  desk::AppendBytesField(1, "envelope 3", &entry);
  desk::AppendBytesField(9, "an unknown field inside an entry", &entry);
  desk::AppendBytesField(2, "receipt 3", &entry);
  desk::AppendBytesField(2, entry, &odd);
  {
    v1::Export want;
    ASSERT_TRUE(want.ParseFromString(odd));
    EXPECT_EQ(want.server_key(), std::string(32, 'K'));
    auto got = read(odd);
    ASSERT_TRUE(got.ok()) << got.status().message();
    same(*got, want);
    EXPECT_EQ(got->unknown_fields, 2u);  // the export itself, and the one entry
    ASSERT_EQ(got->unknown.size(), 1u);  // field 15, 20, 21, and 2 as a varint: one run of them
    EXPECT_EQ(got->unknown[0].offset, unknown_from);
    EXPECT_EQ(got->unknown[0].size, unknown_to - unknown_from);
  }
  // Each of these alone is one place strict parsing refuses, and no more: a singular field twice, at the
  // top or in an entry; a log_from at all, even 0 (a full export holds none; protobuf reads it in silence).
  {
    v1::Export full = ex;
    full.clear_log_from();
    std::string twice = full.SerializeAsString();
    desk::AppendBytesField(6, "another head", &twice);
    auto got = read(twice);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->log_head, "another head");
    EXPECT_EQ(got->unknown_fields, 1u);
    std::string in_entry;
    desk::AppendBytesField(1, "envelope 3", &in_entry);
    desk::AppendBytesField(1, "envelope 3 again", &in_entry);
    std::string entry_twice = full.SerializeAsString();
    desk::AppendBytesField(2, in_entry, &entry_twice);
    got = read(entry_twice);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->unknown_fields, 1u);
    std::string zero = full.SerializeAsString() + std::string("\x40\x00", 2);
    got = read(zero);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->log_from, 0u);
    EXPECT_EQ(got->unknown_fields, 1u);
    got = read(full.SerializeAsString());
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->unknown_fields, 0u);
  }
  // What protobuf refuses is refused: a truncated export, a length past the end, an entry that is no message,
  // a tag or a length of more than 5 bytes (here padded: the same values, other bytes), at the top or in an
  // entry, and a length past 2 GiB.
  const std::string padded_tag = std::string("\x8a\x80\x80\x80\x80\x00", 6) + bytes.substr(1);
  ASSERT_EQ(bytes[0], '\x0a');
  // An entry: field 1, its length (1) in 6 bytes, "x".
  const std::string padded_length = bytes + std::string("\x12\x08\x0a\x81\x80\x80\x80\x80\x00x", 10);
  for (const std::string& bad : {bytes.substr(0, bytes.size() - 1), bytes + std::string("\x2a\x7f", 2) + "short",
                                 bytes + std::string("\x12\x02\x0a\x05", 4), padded_tag, padded_length,
                                 bytes + std::string("\x22\x81\x80\x80\x80\x80\x00s", 8),
                                 bytes + std::string("\x2a\x80\x80\x80\x80\x08", 6)}) {
    v1::Export want;
    EXPECT_FALSE(want.ParseFromString(bad));
    EXPECT_EQ(read(bad).status().code(), Code::kCorrupt) << bad.size() << " of " << bytes.size();
  }
  // Larger than one message may be (2 GiB): refused as such, before anything is read.
  {
    std::ofstream f(w.t.sub("huge.bin"), std::ios::binary);
    f << bytes;
  }
  std::filesystem::resize_file(w.t.sub("huge.bin"), (2ull << 30) + 1);  // sparse
  EXPECT_EQ(desk::ReadExport(w.t.sub("huge.bin")).status().code(), Code::kInvalidArgument);
}

// The desk reads each entry again when it writes it (its memory then holds no report for long): bytes that
// changed on disk after they were checked are refused, never written or stored as checked. Here a receipt
// (which the desk store would keep as it is) changes while the first window of entries is written.
TEST(Desk, AnExportThatChangesWhileItIsReadIsRefused) {
  World w;
  v1::Export ex;
  ex.set_server_key(std::string(32, 'k'));
  for (int i = 0; i < 2100; ++i) {  // more than one window (2,048 entries) of junk: none opens
    auto* r = ex.add_reports();
    r->set_envelope("envelope " + std::to_string(i));
    r->set_receipt("receipt " + std::to_string(i));
  }
  const std::string bytes = ex.SerializeAsString();
  const std::string path = w.t.sub("changing.bin");
  test::WriteAll(path, std::vector<uint8_t>(bytes.begin(), bytes.end()));
  const size_t at = bytes.find("receipt 2099");
  ASSERT_NE(at, std::string::npos);
  auto run = [&](bool change, const std::string& out = "") {
    test::WriteAll(path, std::vector<uint8_t>(bytes.begin(), bytes.end()));
    desk::OpenOptions o;
    uint64_t handed = 0;
    o.sink = [&](const desk::OpenedEntry&) {
      if (handed++ == 0 && change) {
        std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(at));
        f << "RECEIPT";
      }
      return Status::Ok();
    };
    auto sum = desk::OpenExport(w.desk, path, out, o);
    return std::pair{sum, handed};
  };
  auto [unchanged, all] = run(false);
  ASSERT_TRUE(unchanged.ok()) << unchanged.status().message();
  EXPECT_EQ(all, 2100u);
  EXPECT_EQ(unchanged->failed, 2100u);
  auto [changed, handed] = run(true);
  EXPECT_EQ(changed.status().code(), Code::kCorrupt);
  EXPECT_NE(changed.status().message().find("changed while it was read"), std::string::npos)
      << changed.status().message();
  EXPECT_EQ(handed, 2048u) << "entries past the change were handed on";
  // Opened into a directory: the report files of the first window are removed again, none is left without
  // the summary.json that says what the export as a whole is.
  const std::string out = w.t.sub("changing-out");
  auto [written, _] = run(true, out);
  EXPECT_EQ(written.status().code(), Code::kCorrupt);
  size_t left = 0;
  for (const auto& e : std::filesystem::directory_iterator(out)) left += e.path().extension() == ".json" ? 1 : 0;
  EXPECT_EQ(left, 0u);
}

TEST(Desk, ExportProblemsAreReportedNotHidden) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ReportId edited = SealOne(*phone, "first version");
  auto v2 = phone->Edit(edited);
  ASSERT_TRUE(v2.ok());
  ASSERT_TRUE(v2->SetNarrative("second version").ok());
  ASSERT_TRUE(phone->Seal(*v2).ok());
  SealOne(*phone, "another report");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 3u);
  ASSERT_TRUE(w.server->Export(w.t.sub("export.bin")).ok());

  auto good = desk::OpenExport(w.desk, w.t.sub("export.bin"), w.t.sub("desk-good"));
  ASSERT_TRUE(good.ok()) << good.status().message();
  EXPECT_EQ(good->verified, 3u);
  EXPECT_EQ(good->failed, 0u);

  // Drop version 1 of the edited report and damage the other report's receipt.
  v1::Export ex;
  auto bytes = test::ReadAll(w.t.sub("export.bin"));
  ASSERT_TRUE(ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  v1::Export bad;
  bad.set_server_key(ex.server_key());
  for (const auto& item : ex.reports()) {
    envelope::Header h;
    ASSERT_TRUE(envelope::Verify(crypto::Bytes(item.envelope()), &h).ok());
    if (h.report_id == edited && h.version == 1) continue;
    auto* copy = bad.add_reports();
    *copy = item;
    if (h.report_id != edited) {
      std::string r = copy->receipt();
      r[r.size() - 1] ^= 1;
      copy->set_receipt(r);
    }
  }
  std::string out = bad.SerializeAsString();
  test::WriteAll(w.t.sub("bad.bin"), std::vector<uint8_t>(out.begin(), out.end()));
  auto sum = desk::OpenExport(w.desk, w.t.sub("bad.bin"), w.t.sub("desk-bad"));
  ASSERT_TRUE(sum.ok()) << sum.status().message();
  EXPECT_EQ(sum->reports, 2u);
  EXPECT_EQ(sum->verified, 0u);
  EXPECT_EQ(sum->failed, 2u);
  auto summary = test::ReadAll(w.t.sub("desk-bad") + "/summary.json");
  std::string text(summary.begin(), summary.end());
  EXPECT_NE(text.find("version 1 is missing"), std::string::npos) << text;
  EXPECT_NE(text.find("receipt"), std::string::npos) << text;
  // Both reports are still written out with their content, flagged.
  auto v2file = test::ReadAll(w.t.sub("desk-bad") + "/" + encoding::ToHex(edited) + "-v2.json");
  std::string v2text(v2file.begin(), v2file.end());
  EXPECT_NE(v2text.find("\"verified\":false"), std::string::npos);
  EXPECT_NE(v2text.find("second version"), std::string::npos);
}


// What an attacker can build without the organisation's root: an export from scratch with the public keys
// every invite carries (a device of their own, a server key of their own, a receipt it signed), even with a
// genuine invite scanned from a QR code to enrol their device. None of it is "verified".
TEST(Desk, AnExportFabricatedFromPublicKeysIsNotVerified) {
  World w;
  const std::string invite = w.Invite();  // what the attacker holds: the QR code, public keys inside
  auto decoded = protocol::DecodeInvite(invite);
  ASSERT_TRUE(decoded.ok());
  crypto::SigningKey device = crypto::GenerateSigningKey(), fake_server = crypto::GenerateSigningKey();
  v1::ReportContent c;
  ReportId id{};
  randombytes_buf(id.data(), id.size());
  c.set_report_id(id.data(), id.size());
  c.set_version(1);
  c.set_form("detention/1");
  c.set_form_version(1);
  c.set_narrative("a fabricated detention");
  c.set_created_ms(SystemNowMs());
  c.set_sealed_ms(SystemNowMs());
  c.set_device_key(device.public_key.data(), 32);
  std::string signed_report = SignContent(device, c);
  envelope::Header h;
  h.report_id = id;
  h.version = 1;
  h.device_key = device.public_key;
  auto env = envelope::Seal(device, h, crypto::Bytes(signed_report), std::vector<crypto::PublicKey>{w.recipient()});
  ASSERT_TRUE(env.ok());
  v1::Receipt r;
  r.set_report_id(id.data(), id.size());
  r.set_version(1);
  auto hash = crypto::Blake2b256(crypto::Bytes(*env));
  r.set_content_hash(hash.data(), 32);
  r.set_server_time_ms(SystemNowMs());
  r.set_sequence(1);
  r.set_server_key(fake_server.public_key.data(), 32);
  r.set_device_key(device.public_key.data(), 32);
  // 0: the attacker's own server key; 1: the same with the genuine invite; 2: the raided server's real key
  // (it signs a receipt the organisation would believe), for a device no invite enrolled.
  const crypto::SigningKey stolen = w.StolenServerKey();
  for (int variant : {0, 1, 2}) {
    const crypto::SigningKey& signer = variant == 2 ? stolen : fake_server;
    v1::Receipt rc = r;
    rc.set_server_key(signer.public_key.data(), 32);
    v1::Export ex;
    ex.set_server_key(signer.public_key.data(), 32);
    auto* item = ex.add_reports();
    item->set_envelope(*env);
    item->set_receipt(protocol::SignReceipt(signer, rc));
    if (variant == 1) {  // the genuine invite, and a proof for the attacker's device made with its secret
      auto* e = ex.add_enrolments();
      e->set_device_key(device.public_key.data(), 32);
      e->set_invite(decoded->checked.signed_invite);
      e->set_proof(protocol::EnrolProof(decoded->enrol_secret, device.public_key, w.server->server_key()));
    }
    std::string out = ex.SerializeAsString();
    const std::string file = w.t.sub("forged" + std::to_string(variant) + ".bin");
    test::WriteAll(file, std::vector<uint8_t>(out.begin(), out.end()));
    auto sum = desk::OpenExport(w.desk, file, file + ".desk");
    ASSERT_TRUE(sum.ok()) << sum.status().message();
    EXPECT_EQ(sum->reports, 1u);
    EXPECT_EQ(sum->verified, 0u) << variant;
    auto summary = test::ReadAll(file + ".desk/summary.json");
    std::string text(summary.begin(), summary.end());
    EXPECT_EQ(text.find("never authorised") != std::string::npos, variant != 2) << text;
    EXPECT_EQ(text.find("not enrolled") != std::string::npos, variant != 1) << text;
  }
}

// A genuine export whose receipts were all re-signed by another key (as a raider who lost the server key
// would), back-dated a year, with the export's own server key replaced to match: not verified.
TEST(Desk, AGenuineExportResignedByAnotherServerKeyIsNotVerified) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "one");
  SealOne(*phone, "two");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 2u);
  ASSERT_TRUE(w.server->Export(w.t.sub("export.bin")).ok());
  auto bytes = test::ReadAll(w.t.sub("export.bin"));
  v1::Export ex;
  ASSERT_TRUE(ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  ASSERT_EQ(desk::OpenExport(w.desk, w.t.sub("export.bin"), w.t.sub("desk-good"))->verified, 2u);
  crypto::SigningKey other = crypto::GenerateSigningKey();
  ex.set_server_key(other.public_key.data(), 32);
  for (auto& item : *ex.mutable_reports()) {
    v1::SignedReceipt sr;
    v1::Receipt r;
    ASSERT_TRUE(sr.ParseFromString(item.receipt()) && r.ParseFromString(sr.receipt()));
    r.set_server_key(other.public_key.data(), 32);
    r.set_server_time_ms(r.server_time_ms() - 365LL * 86400000);
    item.set_receipt(protocol::SignReceipt(other, r));
  }
  std::string out = ex.SerializeAsString();
  test::WriteAll(w.t.sub("resigned.bin"), std::vector<uint8_t>(out.begin(), out.end()));
  auto sum = desk::OpenExport(w.desk, w.t.sub("resigned.bin"), w.t.sub("desk-resigned"));
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(sum->verified, 0u);
  EXPECT_EQ(sum->failed, 2u);
}

// The organisation revokes a server key it believes stolen: receipts it signed before stay the
// organisation's, any dated from the revocation on are not.
TEST(Desk, ReceiptsOfARevokedServerKeyAreNotTrustedFromTheRevocationOn) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  const std::string before = w.desk.signed_statement;  // as the invite carried it
  const ReportId first = SealOne(*phone, "before the revocation");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  const int64_t revoked = SystemNowMs() + 1;
  ASSERT_TRUE(desk::RevokeServer(w.desk, w.server->server_key(), revoked, SystemNowMs()).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  SealOne(*phone, "after the revocation");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->Export(w.t.sub("export.bin")).ok());
  auto sum = desk::OpenExport(w.desk, w.t.sub("export.bin"), w.t.sub("desk"));
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(sum->verified, 1u);
  EXPECT_EQ(sum->failed, 1u);
  auto summary = test::ReadAll(w.t.sub("desk") + "/summary.json");
  EXPECT_NE(std::string(summary.begin(), summary.end()).find("revoked"), std::string::npos);
  // The key file keeps the revocation: a desk opened again knows it.
  auto again = desk::OpenKey(w.t.sub("org.key"), Pass("desk"));
  ASSERT_TRUE(again.ok());
  EXPECT_NE(protocol::FindServer(again->statement, w.server->server_key())->revoked_ms(), 0);
  EXPECT_EQ(desk::OpenExport(*again, w.t.sub("export.bin"), w.t.sub("desk2"))->verified, 1u);
  // The phone's receipt from before the revocation holds, proven by its head. The same tree under a head
  // the stolen key dates after the revocation proves nothing: a receipt proven by its head needs the key
  // authorised at the head's time too (docs/protocol.md, "Receipts are proven by the log").
  v1::SignedReceipt held = HeldReceipt(*phone, first);
  ASSERT_TRUE(held.signature().empty());
  auto genuine = desk::OpenExport(*again, w.t.sub("export.bin"), w.t.sub("desk3"), {held.SerializeAsString()});
  ASSERT_TRUE(genuine.ok());
  EXPECT_EQ(genuine->phone_receipts_invalid, 0u);
  auto audit = [&](const v1::SignedReceipt& receipt) {  // dala log verify, the receipt alone
    desk::LogVerifyInputs in;
    in.phone_receipts = {receipt.SerializeAsString()};
    in.statements = {again->signed_statement};
    auto v = desk::VerifyLog(w.desk.root.public_key, in);
    EXPECT_TRUE(v.ok());
    return v.ok() ? *v : desk::LogVerdict{};
  };
  EXPECT_TRUE(audit(held).ok());
  EXPECT_EQ(audit(held).receipts_in_log, 1u);
  auto head = protocol::VerifyLogHead(crypto::Bytes(held.log_head()));
  ASSERT_TRUE(head.ok());
  ASSERT_LT(head->time_ms, revoked);
  head->time_ms = revoked + 1000;
  held.set_log_head(protocol::SignLogHead(w.StolenServerKey(), *head));
  auto late = desk::OpenExport(*again, w.t.sub("export.bin"), w.t.sub("desk4"), {held.SerializeAsString()});
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->phone_receipts_invalid, 1u);
  EXPECT_FALSE(audit(held).ok());
  EXPECT_EQ(audit(held).receipts_in_log, 0u);

  // Statements are public (every invite carries one): the one from before the revocation, pasted into the
  // key file after its wrapped secret, does not bring the revoked server back.
  auto file = test::ReadAll(w.t.sub("org.key"));
  const size_t tail = w.desk.signed_statement.size();
  ASSERT_GT(file.size(), tail);
  file.resize(file.size() - tail);
  file.insert(file.end(), before.begin(), before.end());
  test::WriteAll(w.t.sub("org.key"), file);
  auto spliced = desk::OpenKey(w.t.sub("org.key"), Pass("desk"));
  EXPECT_EQ(spliced.status().code(), Code::kCorrupt) << "an older statement was taken for the desk's own";
}

// An export as a raided server or a courier could alter it: entries repeated, listed out of order, hidden
// behind an unknown tag, a report's latest version or a whole report dropped. The desk says so, counts
// nothing twice, and a phone's receipts show what was withheld.
struct ExportFile {
  v1::Export ex;
  std::string Write(const std::string& path) const {
    std::string out = ex.SerializeAsString();
    test::WriteAll(path, std::vector<uint8_t>(out.begin(), out.end()));
    return path;
  }
};

TEST(Desk, AlteredExportsAreCaught) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ReportId edited = SealOne(*phone, "version 1");
  SealOne(*phone, "another");
  auto v2 = phone->Edit(edited);
  ASSERT_TRUE(v2.ok());
  ASSERT_TRUE(v2->SetNarrative("version 2").ok());
  ASSERT_TRUE(phone->Seal(*v2).ok());
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 3u);
  ASSERT_TRUE(w.server->Export(w.t.sub("export.bin")).ok());
  auto bytes = test::ReadAll(w.t.sub("export.bin"));
  ExportFile good;
  ASSERT_TRUE(good.ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  ASSERT_EQ(good.ex.reports_size(), 3);
  // Each export is also only verified (dala desk verify: no output directory): the same verdicts, the
  // same summary.json, and nothing else written.
  auto open = [&](const ExportFile& f, const std::string& name, std::vector<std::string> receipts = {}) {
    const std::string file = f.Write(w.t.sub(name + ".bin"));
    auto sum = desk::OpenExport(w.desk, file, w.t.sub(name), receipts);
    EXPECT_TRUE(sum.ok()) << sum.status().message();
    auto before = std::filesystem::directory_iterator(w.t.sub("")), end = std::filesystem::directory_iterator();
    const auto files = std::distance(before, end);
    desk::OpenOptions o;
    o.phone_receipts = receipts;
    o.summary_path = w.t.sub(name + "-verify.json");
    auto checked = desk::OpenExport(w.desk, file, "", o);
    EXPECT_TRUE(checked.ok()) << checked.status().message();
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(w.t.sub("")), end), files + 1) << name;
    auto a = test::ReadAll(w.t.sub(name) + "/summary.json"), b = test::ReadAll(w.t.sub(name + "-verify.json"));
    std::string ta(a.begin(), a.end()), tb(b.begin(), b.end());
    for (std::string* t : {&ta, &tb})  // the only difference: no report files to name
      for (size_t at; (at = t->find("\"file\":\"")) != std::string::npos;)
        t->replace(at, t->find('"', at + 8) + 1 - at, "\"file\":null");
    EXPECT_EQ(ta, tb) << name;
    if (sum.ok() && checked.ok()) {
      EXPECT_EQ(sum->verified, checked->verified) << name;
      EXPECT_EQ(sum->failed, checked->failed) << name;
      EXPECT_EQ(sum->clean(), checked->clean()) << name;
      EXPECT_EQ(sum->missing, checked->missing) << name;
    }
    return sum.ok() ? *sum : desk::Summary{};
  };
  desk::Summary clean = open(good, "good");
  EXPECT_TRUE(clean.clean());
  EXPECT_EQ(clean.verified, 3u);

  ExportFile dup = good;  // an entry twice: counted and written once
  *dup.ex.add_reports() = good.ex.reports(0);
  desk::Summary d = open(dup, "dup");
  EXPECT_EQ(d.reports, 3u);
  EXPECT_EQ(d.verified, 3u);
  EXPECT_EQ(d.duplicates, 1u);
  EXPECT_FALSE(d.clean());

  ExportFile reordered = good;
  reordered.ex.mutable_reports()->SwapElements(0, 2);
  desk::Summary r = open(reordered, "reordered");
  EXPECT_GT(r.reordered, 0u);
  EXPECT_FALSE(r.clean());

  // The last entry's field tag flipped from 2 to 15: protobuf would keep it as an unknown field.
  std::string flipped = good.ex.SerializeAsString();
  {
    v1::Export last_only;
    *last_only.add_reports() = good.ex.reports(2);
    std::string entry = last_only.SerializeAsString();  // field 2, length-delimited: the entry's tag and bytes
    size_t at = flipped.find(entry);
    ASSERT_NE(at, std::string::npos);
    ASSERT_EQ(static_cast<uint8_t>(flipped[at]), 0x12);
    flipped[at] = 0x7a;  // field 15
  }
  test::WriteAll(w.t.sub("flipped.bin"), std::vector<uint8_t>(flipped.begin(), flipped.end()));
  auto f = desk::OpenExport(w.desk, w.t.sub("flipped.bin"), w.t.sub("flipped"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->reports, 2u);
  EXPECT_EQ(f->unknown_fields, 1u);
  EXPECT_FALSE(f->clean());

  // Version 1 of the edited report dropped from the middle: the chain and the sequence numbers show it.
  ExportFile middle = good;
  middle.ex.mutable_reports()->DeleteSubrange(0, 1);
  desk::Summary m = open(middle, "middle");
  EXPECT_EQ(m.missing, 1u);
  EXPECT_EQ(m.failed, 1u);

  // The latest version dropped (the last sequence number): the server's log still holds it.
  ExportFile latest = good;
  latest.ex.mutable_reports()->RemoveLast();
  desk::Summary l = open(latest, "latest");
  EXPECT_EQ(l.missing, 1u);
  EXPECT_EQ(l.log_problems, 0u);
  EXPECT_FALSE(l.clean());
  {
    auto summary = test::ReadAll(w.t.sub("latest") + "/summary.json");
    EXPECT_NE(std::string(summary.begin(), summary.end()).find("the server's log holds report"), std::string::npos);
  }
  // The log altered with it: a leaf dropped, changed, repeated, two swapped, or no head at all. The signed
  // head no longer matches (a courier holds no server key).
  for (int how = 0; how < 5; ++how) {
    ExportFile cut = latest;
    auto* log = cut.ex.mutable_log();
    ASSERT_GE(log->size(), 4);
    if (how == 0) log->RemoveLast();
    if (how == 1) (*log->Mutable(1))[5] ^= 1;
    if (how == 2) *cut.ex.add_log() = cut.ex.log(0);
    if (how == 3) log->SwapElements(1, 2);
    if (how == 4) cut.ex.clear_log_head();
    desk::Summary c = open(cut, "log-" + std::to_string(how));
    EXPECT_EQ(c.log_problems, 1u) << how;
    EXPECT_FALSE(c.clean()) << how;
  }
  // A raider holding the server's key truncates the log and signs a new head: the export alone then looks
  // complete; the phone's receipts show what it lacks.
  ExportFile resigned = latest;
  {
    resigned.ex.mutable_log()->RemoveLast();
    merkle::MemoryTree tree;
    for (const auto& leaf : resigned.ex.log()) tree.Append(merkle::LeafHash(crypto::Bytes(leaf)));
    protocol::LogHead head;
    head.size = tree.size();
    head.root = *merkle::Root(tree, tree.size());
    head.time_ms = SystemNowMs();
    const crypto::SigningKey stolen = w.StolenServerKey();
    head.server_key = stolen.public_key;
    resigned.ex.set_log_head(protocol::SignLogHead(stolen, head));
  }
  EXPECT_TRUE(open(resigned, "resigned-log").clean());
  std::vector<std::string> receipts;
  auto kept = phone->ListReceipts();
  ASSERT_TRUE(kept.ok());
  for (const auto& ri : *kept) receipts.emplace_back(ri.receipt.begin(), ri.receipt.end());
  ASSERT_EQ(receipts.size(), 3u);
  desk::Summary with_receipts = open(resigned, "latest-receipts", receipts);
  EXPECT_EQ(with_receipts.missing, 1u);
  EXPECT_FALSE(with_receipts.clean());
  auto summary = test::ReadAll(w.t.sub("latest-receipts") + "/summary.json");
  EXPECT_NE(std::string(summary.begin(), summary.end()).find("which the export lacks"), std::string::npos);
  // The withheld version is counted once however it shows (the log and a phone's receipt).
  EXPECT_EQ(open(latest, "latest-both", receipts).missing, 1u);
  EXPECT_TRUE(open(good, "good-receipts", receipts).clean());
  // A phone keeps a receipt with no signature: its place in a head its server signed proves it. One altered
  // is said to be invalid: its content hash changed (no longer the leaf its proof shows), its head stripped
  // (neither a signature nor the log), a signature added that does not verify, its head's signature
  // changed, its head replaced by one of another key over the same tree. A receipt as an export carries it
  // (signed) counts as well.
  const crypto::SigningKey fake = crypto::GenerateSigningKey();
  for (int how = 0; how < 5; ++how) {
    v1::SignedReceipt sr;
    ASSERT_TRUE(sr.ParseFromString(receipts[0]));
    ASSERT_TRUE(sr.signature().empty());
    ASSERT_FALSE(sr.log_head().empty());
    if (how == 0) {
      v1::Receipt r;
      ASSERT_TRUE(r.ParseFromString(sr.receipt()));
      std::string hash = r.content_hash();
      hash[3] ^= 1;
      r.set_content_hash(hash);
      sr.set_receipt(r.SerializeAsString());
    }
    if (how == 1) sr.clear_log_head();
    if (how == 2) sr.set_signature(std::string(64, '\x01'));
    if (how == 3) {
      std::string head = sr.log_head();
      head.back() ^= 1;  // the last byte of its signature
      sr.set_log_head(head);
    }
    if (how == 4) {
      auto h = protocol::VerifyLogHead(crypto::Bytes(sr.log_head()));
      ASSERT_TRUE(h.ok());
      h->server_key = fake.public_key;
      sr.set_log_head(protocol::SignLogHead(fake, *h));
    }
    desk::Summary bad_receipt = open(good, "bad-receipt-" + std::to_string(how), {sr.SerializeAsString()});
    EXPECT_EQ(bad_receipt.phone_receipts_invalid, 1u) << how;
    EXPECT_FALSE(bad_receipt.clean()) << how;
  }
  EXPECT_TRUE(open(good, "export-receipt", {good.ex.reports(0).receipt()}).clean());
}

// Anyone holding the organisation's public identity (an auditor, a court) checks a server's log and the
// phones' receipts against it: no desk key, no report contents (dala log verify).
TEST(Log, TheLogIsVerifiedWithThePublicIdentityAlone) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  for (const char* text : {"one", "two", "three"}) SealOne(*phone, text);
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 3u);
  ASSERT_TRUE(w.server->Export(w.t.sub("e.dala")).ok());
  std::vector<std::string> held;
  auto listed = phone->ListReceipts();
  ASSERT_TRUE(listed.ok());
  for (const auto& r : *listed) held.emplace_back(r.receipt.begin(), r.receipt.end());
  ASSERT_EQ(held.size(), 3u);
  auto bytes = test::ReadAll(w.t.sub("e.dala"));
  ExportFile good;
  ASSERT_TRUE(good.ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  auto verify = [&](const ExportFile* f, const std::string& name, std::vector<std::string> receipts,
                    const crypto::PublicKey& root) {
    desk::LogVerifyInputs in;
    if (f != nullptr) in.export_path = f->Write(w.t.sub(name + ".dala"));
    in.phone_receipts = std::move(receipts);
    auto v = desk::VerifyLog(root, in);
    EXPECT_TRUE(v.ok()) << v.status().message();
    return v.ok() ? *v : desk::LogVerdict{};
  };
  const crypto::PublicKey& root = w.desk.root.public_key;
  auto v = verify(&good, "good", held, root);
  EXPECT_TRUE(v.ok()) << (v.problems.empty() ? "" : v.problems[0]);
  EXPECT_EQ(v.receipts_in_log, 3u);
  EXPECT_EQ(v.head_size, v.leaves);
  EXPECT_GT(v.leaves, 3u);  // the statement and the enrolment too
  // Receipts alone, each in its own head: with the organisation's statement (dala desk statement), as
  // without an export nothing else says which server keys it authorised.
  EXPECT_FALSE(verify(nullptr, "", held, root).ok());
  {
    desk::LogVerifyInputs in;
    in.phone_receipts = held;
    in.statements = {w.desk.signed_statement};
    auto alone = desk::VerifyLog(root, in);
    ASSERT_TRUE(alone.ok());
    EXPECT_TRUE(alone->ok()) << (alone->problems.empty() ? "" : alone->problems[0]);
    EXPECT_EQ(alone->receipts_in_log, 3u);
  }

  // Another organisation's root: nothing it holds is this organisation's.
  const crypto::SigningKey stranger = crypto::GenerateSigningKey();
  EXPECT_FALSE(verify(&good, "stranger", held, stranger.public_key).ok());
  // One leaf changed.
  ExportFile changed = good;
  std::string leaf = good.ex.log(2);
  leaf.back() ^= 1;
  changed.ex.set_log(2, leaf);
  auto c = verify(&changed, "changed", {}, root);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.problems[0].find("do not make its signed head"), std::string::npos) << c.problems[0];
  // The same leaves under a head a key of the attacker's signed (the organisation never authorised it).
  ExportFile fabricated = good;
  const crypto::SigningKey fake = crypto::GenerateSigningKey();
  auto head = protocol::VerifyLogHead(crypto::Bytes(good.ex.log_head()));
  ASSERT_TRUE(head.ok());
  protocol::LogHead h = *head;
  h.server_key = fake.public_key;
  fabricated.ex.set_log_head(protocol::SignLogHead(fake, h));
  fabricated.ex.set_server_key(fake.public_key.data(), 32);
  EXPECT_FALSE(verify(&fabricated, "fabricated", {}, root).ok());
  // A receipt moved to another leaf of its head.
  std::vector<std::string> moved = held;
  v1::SignedReceipt sr;
  ASSERT_TRUE(sr.ParseFromString(moved[0]));
  sr.set_leaf_index(sr.leaf_index() == 0 ? 1 : sr.leaf_index() - 1);
  moved[0] = sr.SerializeAsString();
  auto m = verify(&good, "moved", moved, root);
  EXPECT_EQ(m.receipts_in_log, 2u);
  EXPECT_FALSE(m.ok());
  // A receipt the server gave after this export: its head holds more than the export shows.
  SealOne(*phone, "after the export");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  std::vector<std::string> later;
  auto relisted = phone->ListReceipts();
  ASSERT_TRUE(relisted.ok());
  for (const auto& r : *relisted) later.emplace_back(r.receipt.begin(), r.receipt.end());
  auto l = verify(&good, "later", later, root);
  EXPECT_FALSE(l.ok());
  EXPECT_NE(l.problems.back().find("not a prefix of the export's log"), std::string::npos) << l.problems.back();
}

// ---- trusted time: a real RFC 3161 time-stamping authority (openssl ts, tests/support/tsa.py) ----

// Heads stamped by a TSA the organisation trusts date the reports they hold ("received no later than");
// the desk checks every token: one over another head, one from a TSA it does not trust, one over a head of
// another log, a stamp removed, each is a time-stamp problem.
TEST(Time, HeadsStampedByATrustedAuthorityDateTheReportsTheyHold) {
  World w;
  Tsa tsa(w.t, "Trusted Time"), other(w.t, "Other Time");
  EXPECT_EQ(*w.server->StampNewestHead(tsa.Post()), 0u);  // an empty log: nothing to stamp
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ReportId first = SealOne(*phone, "first");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  auto stamped = w.server->StampNewestHead(tsa.Post());
  ASSERT_TRUE(stamped.ok()) << stamped.status().message();
  EXPECT_GT(*stamped, 0u);
  EXPECT_EQ(*w.server->StampNewestHead(tsa.Post()), 0u);  // nothing new since
  // An answer that does not answer this request (a replay of the last one: another nonce, another head)
  // is not kept.
  SealOne(*phone, "second");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  auto replayed = w.server->StampNewestHead([&](const std::string&) -> Result<std::string> {
    auto r = test::ReadAll(tsa.dir + "/r.tsr");
    return std::string(r.begin(), r.end());
  });
  EXPECT_FALSE(replayed.ok());
  ASSERT_TRUE(w.server->StampNewestHead(tsa.Post()).ok());
  ReportId third = SealOne(*phone, "third, not stamped");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->Export(w.t.sub("e.dala")).ok());
  auto bytes = test::ReadAll(w.t.sub("e.dala"));
  ExportFile good;
  ASSERT_TRUE(good.ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  ASSERT_EQ(good.ex.timestamps_size(), 2);

  auto open = [&](const ExportFile& f, const std::string& name, const std::string& pem) {
    desk::OpenOptions o;
    o.trusted_tsa_pem = pem;
    auto sum = desk::OpenExport(w.desk, f.Write(w.t.sub(name + ".bin")), w.t.sub(name), o);
    EXPECT_TRUE(sum.ok()) << sum.status().message();
    auto text = test::ReadAll(w.t.sub(name) + "/summary.json");
    return std::make_pair(sum.ok() ? *sum : desk::Summary{}, std::string(text.begin(), text.end()));
  };
  const int64_t before = SystemNowMs();
  auto [sum, text] = open(good, "good", tsa.Pem());
  EXPECT_TRUE(sum.clean()) << text;
  EXPECT_EQ(sum.timestamps, 2u);
  auto report = test::ReadAll(w.t.sub("good") + "/" + encoding::ToHex(first) + "-v1.json");
  std::string rtext(report.begin(), report.end());
  const std::string key = "\"timestamp\":{\"no_later_than_ms\":";
  auto at = rtext.find(key);
  ASSERT_NE(at, std::string::npos) << rtext;
  const int64_t no_later_than = std::stoll(rtext.substr(at + key.size()));
  EXPECT_LE(no_later_than, before);
  EXPECT_GE(no_later_than, before - 120000);
  EXPECT_NE(rtext.find("Trusted Time TSA"), std::string::npos) << rtext;
  auto later = test::ReadAll(w.t.sub("good") + "/" + encoding::ToHex(third) + "-v1.json");
  EXPECT_NE(std::string(later.begin(), later.end()).find("\"timestamp\":null"), std::string::npos);
  // The TSA's own certificate is trusted as well as its CA's.
  EXPECT_EQ(open(good, "by-tsa-cert", tsa.Pem("tsa.crt")).first.timestamps, 2u);
  // Without trusted TSA certificates: not checked, nothing claimed, still clean.
  auto [unchecked, unchecked_text] = open(good, "unchecked", "");
  EXPECT_TRUE(unchecked.clean());
  EXPECT_EQ(unchecked.timestamps, 0u);
  EXPECT_NE(unchecked_text.find("were not checked"), std::string::npos);

  // A TSA the organisation does not trust.
  auto [untrusted, untrusted_text] = open(good, "untrusted", other.Pem());
  EXPECT_EQ(untrusted.timestamp_problems, 2u);
  EXPECT_FALSE(untrusted.clean());
  EXPECT_NE(untrusted_text.find("not signed by a trusted time-stamping authority"), std::string::npos) << untrusted_text;
  // Tokens swapped between the heads: each is for another hash.
  ExportFile swapped = good;
  swapped.ex.mutable_timestamps(0)->set_token(good.ex.timestamps(1).token());
  swapped.ex.mutable_timestamps(1)->set_token(good.ex.timestamps(0).token());
  auto [other_hash, other_hash_text] = open(swapped, "swapped", tsa.Pem());
  EXPECT_EQ(other_hash.timestamp_problems, 2u);
  EXPECT_NE(other_hash_text.find("for other data"), std::string::npos) << other_hash_text;
  // The right token over a head the server did not sign (its time moved), or of another log.
  ExportFile moved = good;
  std::string head = good.ex.timestamps(0).head();
  head[20] ^= 1;
  moved.ex.mutable_timestamps(0)->set_head(head);
  EXPECT_EQ(open(moved, "moved", tsa.Pem()).first.timestamp_problems, 1u);
  // A head the server's key signed (a raider holding it), stamped by the trusted TSA, over another log.
  {
    auto real = protocol::VerifyLogHead(crypto::Bytes(good.ex.timestamps(0).head()));
    ASSERT_TRUE(real.ok());
    protocol::LogHead forged = *real;
    forged.root[0] ^= 1;
    const std::string forged_head = protocol::SignLogHead(w.StolenServerKey(), forged);
    auto req = rfc3161::MakeRequest(crypto::Bytes(forged_head));
    ASSERT_TRUE(req.ok());
    auto answer = tsa.Post()(req->der);
    ASSERT_TRUE(answer.ok());
    auto token = rfc3161::TokenFromResponse(crypto::Bytes(*answer), *req, crypto::Bytes(forged_head));
    ASSERT_TRUE(token.ok()) << token.status().message();
    // An answer to another request for the same head (another nonce) is not taken.
    auto again = rfc3161::MakeRequest(crypto::Bytes(forged_head));
    EXPECT_FALSE(rfc3161::TokenFromResponse(crypto::Bytes(*answer), *again, crypto::Bytes(forged_head)).ok());
    ExportFile forked = good;
    auto* t = forked.ex.add_timestamps();
    t->set_head(forged_head);
    t->set_token(*token);
    auto [fork, fork_text] = open(forked, "forked", tsa.Pem());
    EXPECT_EQ(fork.timestamp_problems, 1u);
    EXPECT_EQ(fork.timestamps, 2u);
    EXPECT_NE(fork_text.find("not of this export's log"), std::string::npos) << fork_text;
  }
  // The stamps removed, where the organisation expects them.
  ExportFile stripped = good;
  stripped.ex.clear_timestamps();
  auto [none, none_text] = open(stripped, "stripped", tsa.Pem());
  EXPECT_EQ(none.timestamp_problems, 1u);
  EXPECT_NE(none_text.find("holds no time-stamp"), std::string::npos);
}

// What an enrolled device could seal that the desk must not call verified: a version 2 naming the wrong
// previous version, one changing the form, one claiming another device's report, a forged inner signature,
// an envelope declaring an attachment the report does not list. Receipts are genuine (the server's key),
// so only the desk's own checks can catch them.
TEST(Desk, WhatAnEnrolledDeviceCouldSealIsChecked) {
  World w;
  auto phone = w.Phone("phone");
  const std::string invite = w.Invite();
  ASSERT_TRUE(phone->Join(invite).ok());
  ReportId theirs = SealOne(*phone, "the victim's version 1");
  ReportId second = SealOne(*phone, "the victim's other report");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 2u);
  // A second device, enrolled with the same invite.
  crypto::SigningKey dev = crypto::GenerateSigningKey();
  auto decoded = protocol::DecodeInvite(invite);
  ASSERT_TRUE(decoded.ok());
  v1::Request enrol;
  enrol.set_device_key(dev.public_key.data(), 32);
  enrol.set_server_key(w.server->server_key().data(), 32);
  enrol.mutable_enrol()->set_invite(decoded->checked.signed_invite);
  enrol.mutable_enrol()->set_proof(protocol::EnrolProof(decoded->enrol_secret, dev.public_key, w.server->server_key()));
  ASSERT_EQ(w.server->Handle("POST", protocol::kPathEnrol, protocol::kContentType, protocol::SignRequest(dev, enrol)).status, 200);
  ASSERT_TRUE(w.server->Export(w.t.sub("export.bin")).ok());
  auto bytes = test::ReadAll(w.t.sub("export.bin"));
  v1::Export ex;
  ASSERT_TRUE(ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  const crypto::SigningKey server_key = w.StolenServerKey();
  uint64_t sequence = 2;  // the victim's two
  auto content = [&](const ReportId& id, uint32_t version) {
    v1::ReportContent c;
    c.set_report_id(id.data(), id.size());
    c.set_version(version);
    c.set_form("detention/1");
    c.set_form_version(1);
    c.set_narrative("by the second device");
    c.set_created_ms(1000);
    c.set_sealed_ms(2000);
    c.set_device_key(dev.public_key.data(), 32);
    return c;
  };
  auto add = [&](const v1::ReportContent& c, bool forge_inner = false, bool extra_manifest = false) {
    std::string signed_bytes = SignContent(dev, c);
    if (forge_inner) {
      v1::SignedReport sr;
      sr.ParseFromString(signed_bytes);
      std::string sig = sr.signature();
      sig[0] ^= 1;
      sr.set_signature(sig);
      signed_bytes = sr.SerializeAsString();
    }
    envelope::Header h;
    std::memcpy(h.report_id.data(), c.report_id().data(), 16);
    h.version = c.version();
    h.device_key = dev.public_key;
    if (extra_manifest) {
      const std::string ct(1000, 'c');  // any bytes make a valid manifest: the server never decrypts
      attachment::ChunkTree tree(65536);
      tree.Update(crypto::Bytes(ct));
      const crypto::Hash root = tree.Finish();
      v1::AttachmentManifest m;
      m.set_attachment_id(std::string(16, 'x'));
      m.set_size(ct.size());
      m.set_chunk_size(65536);
      m.set_root(root.data(), 32);
      m.set_chunk_hashes(tree.chunk_hashes());
      h.attachments.push_back(m);
    }
    auto env = envelope::Seal(dev, h, crypto::Bytes(signed_bytes), std::vector<crypto::PublicKey>{w.recipient()});
    EXPECT_TRUE(env.ok()) << env.status().message();
    v1::Receipt r;
    r.set_report_id(c.report_id());
    r.set_version(c.version());
    auto hash = crypto::Blake2b256(crypto::Bytes(*env));
    r.set_content_hash(hash.data(), 32);
    r.set_server_time_ms(SystemNowMs());
    r.set_sequence(++sequence);
    r.set_server_key(server_key.public_key.data(), 32);
    r.set_device_key(dev.public_key.data(), 32);
    auto* item = ex.add_reports();
    item->set_envelope(*env);
    item->set_receipt(protocol::SignReceipt(server_key, r));
    return crypto::Blake2b256(crypto::Bytes(signed_bytes));
  };
  ReportId a{}, b{}, d{}, e{}, g{};
  for (ReportId* id : {&a, &b, &d, &e, &g}) randombytes_buf(id->data(), id->size());
  crypto::Hash a1 = add(content(a, 1));
  v1::ReportContent a2 = content(a, 2);
  a2.set_previous_hash(std::string(32, 'w'));  // not version 1's hash
  add(a2);
  crypto::Hash b1 = add(content(b, 1));
  v1::ReportContent b2 = content(b, 2);
  b2.set_previous_hash(b1.data(), 32);
  b2.set_form("release/1");  // the form changed
  add(b2);
  v1::ReportContent takeover = content(theirs, 2);  // the victim's id, "version 2"
  takeover.set_previous_hash(std::string(32, 'v'));
  add(takeover);
  add(content(second, 1));  // the victim's id and version: the rogue's own report, written beside the victim's
  add(content(d, 1), /*forge_inner=*/true);
  add(content(e, 1), false, /*extra_manifest=*/true);
  crypto::Hash g1 = add(content(g, 1));  // and a chain that is right, to show the checks pass what is genuine
  v1::ReportContent g2 = content(g, 2);
  g2.set_previous_hash(g1.data(), 32);
  add(g2);
  (void)a1;
  std::string out = ex.SerializeAsString();
  test::WriteAll(w.t.sub("crafted.bin"), std::vector<uint8_t>(out.begin(), out.end()));
  auto sum = desk::OpenExport(w.desk, w.t.sub("crafted.bin"), w.t.sub("desk"));
  ASSERT_TRUE(sum.ok()) << sum.status().message();
  EXPECT_EQ(sum->reports, 12u);
  EXPECT_EQ(sum->verified, 2u + 2u + 2u + 1u);  // the victim's two, a v1, b v1, g v1 and v2, the rogue's v1
  EXPECT_EQ(sum->failed, 5u);
  // Two devices' version 1 of one id: each written under its own name (attachments likewise), neither
  // in the other's place.
  for (const crypto::PublicKey& k : {phone->device_key(), dev.public_key}) {
    const std::string file = w.t.sub("desk") + "/" + encoding::ToHex(second) + "-v1-" +
                             encoding::ToHex(std::span<const uint8_t>(k.data(), 8)) + ".json";
    auto j = test::ReadAll(file);
    EXPECT_NE(std::string(j.begin(), j.end()).find("\"verified\":true"), std::string::npos) << file;
  }
  auto summary = test::ReadAll(w.t.sub("desk") + "/summary.json");
  std::string text(summary.begin(), summary.end());
  for (const char* why : {"the previous-version hash does not match", "the form differs",
                          "version 1 was signed by another device", "does not list"})
    EXPECT_NE(text.find(why), std::string::npos) << why << "\n" << text;
}

// The organisation rotates its recipient key: the server hands the new statement to phones with their next
// answers; reports sealed before stay sealed to the old key, those sealed after go to the new one only, and
// the desk opens both.
TEST(Organisation, RecipientKeysRotateWithReportsBeforeAndAfter) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "sealed to the first key");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  const crypto::PublicKey old_key = w.recipient();
  ASSERT_TRUE(desk::RotateRecipients(w.desk, SystemNowMs()).ok());
  const crypto::PublicKey new_key = w.recipient();
  ASSERT_NE(old_key, new_key);
  ASSERT_TRUE(w.server->SetStatement(w.desk.signed_statement).ok());
  EXPECT_EQ(w.server->SetStatement(w.desk.signed_statement).code(), Code::kState);  // not newer
  SealOne(*phone, "sealed before the phone heard of the rotation");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);  // the answer carries the statement
  EXPECT_EQ((*phone->Servers())[0].statement_version, w.desk.statement.version());
  SealOne(*phone, "sealed to the new key");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->Export(w.t.sub("export.bin")).ok());
  auto bytes = test::ReadAll(w.t.sub("export.bin"));
  v1::Export ex;
  ASSERT_TRUE(ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  ASSERT_EQ(ex.reports_size(), 3);
  auto sealed_to = [](const std::string& env) {
    v1::SealedEnvelope se;
    v1::EnvelopeBody body;
    EXPECT_TRUE(se.ParseFromString(env) && body.ParseFromString(se.body()));
    std::vector<std::string> keys;
    for (const auto& k : body.keys()) keys.push_back(k.recipient());
    return keys;
  };
  const std::string o(old_key.begin(), old_key.end()), n(new_key.begin(), new_key.end());
  EXPECT_EQ(sealed_to(ex.reports(0).envelope()), std::vector<std::string>{o});
  EXPECT_EQ(sealed_to(ex.reports(1).envelope()), std::vector<std::string>{o});
  EXPECT_EQ(sealed_to(ex.reports(2).envelope()), std::vector<std::string>{n});
  auto again = desk::OpenKey(w.t.sub("org.key"), Pass("desk"));  // the key file keeps both generations
  ASSERT_TRUE(again.ok());
  auto sum = desk::OpenExport(*again, w.t.sub("export.bin"), w.t.sub("desk"));
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(sum->verified, 3u);
  EXPECT_TRUE(sum->clean());
}

// A raided server's key is revoked at the desk; the phone learns it (here with an invite to the new
// server); an old, unexpired invite for the raided server is then refused, and nothing goes there.
TEST(Organisation, AnOldInviteForARevokedServerIsRefused) {
  World w;
  auto phone = w.Phone("phone");
  const std::string old_invite = w.Invite();
  ASSERT_TRUE(phone->Join(old_invite).ok());
  ASSERT_TRUE(desk::RevokeServer(w.desk, w.server->server_key(), SystemNowMs(), SystemNowMs()).ok());
  crypto::SigningKey replacement = crypto::GenerateSigningKey();
  desk::InviteParams p;
  p.server = replacement.public_key;
  p.urls = {"http://127.0.0.1:2"};
  p.expires_ms = SystemNowMs() + 60000;
  auto fresh = desk::MakeInvite(w.desk, p, SystemNowMs());
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(phone->Join(*fresh).ok());
  auto refused = phone->Join(old_invite);
  EXPECT_EQ(refused.status().code(), Code::kVerify);
  EXPECT_NE(refused.status().message().find("no longer authorises"), std::string::npos);
  auto servers = phone->Servers();
  ASSERT_EQ(servers->size(), 1u);
  EXPECT_EQ((*servers)[0].server_key, replacement.public_key);
  // And a phone that hears of the revocation from the server's own answer stops sending to it.
  auto other = w.Phone("other");
  ASSERT_TRUE(other->Join(old_invite).ok());  // it has not heard yet
  ASSERT_TRUE(w.server->SetStatement(w.desk.signed_statement).ok());
  SealOne(*other, "x");
  auto r = Sync(*other, *w.net);
  EXPECT_EQ(r.delivered, 0u);
  EXPECT_FALSE((*other->Servers())[0].authorised);
  EXPECT_EQ(Sync(*other, *w.net).remaining, 1u);  // kept, for a new invite
}

// A server that holds the statement revoking it accepts nothing more from phones enrolled before: a
// receipt it signed now would be worthless at the desk while the phone took the report as delivered.
TEST(Organisation, ARevokedServerAcceptsNothingMore) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "before");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(desk::RevokeServer(w.desk, w.server->server_key(), SystemNowMs(), SystemNowMs()).ok());
  ASSERT_TRUE(w.server->SetStatement(w.desk.signed_statement).ok());
  SealOne(*phone, "after");
  auto r = Sync(*phone, *w.net);
  EXPECT_EQ(r.delivered, 0u);
  EXPECT_EQ(r.remaining, 1u);
  EXPECT_EQ(*w.server->ReportCount(), 1u);  // the server stored nothing more
  EXPECT_FALSE((*phone->Servers())[0].authorised);
  // Nor by an upload of an attachment, for a phone that has not heard yet.
  crypto::SigningKey dev = crypto::GenerateSigningKey();
  v1::Request up;
  up.set_device_key(dev.public_key.data(), 32);
  up.set_server_key(w.server->server_key().data(), 32);
  up.mutable_upload()->set_attachment_id(std::string(16, 'a'));
  up.mutable_upload()->set_length(0);
  auto answer = w.server->HandleUpload("Bearer " + encoding::Base64Url(crypto::Bytes(protocol::SignRequest(dev, up))), "", 0);
  EXPECT_EQ(answer.status, 403);
  EXPECT_NE(answer.body.find("no longer authorises"), std::string::npos);
}

// One photographed invite enrols at most its uses, however its bytes are re-encoded, at the server and at
// the desk.
TEST(Server, AnInvitesUsesCannotBeStretchedByReencodingIt) {
  World w;
  const std::string invite = w.Invite(1);
  auto decoded = protocol::DecodeInvite(invite);
  ASSERT_TRUE(decoded.ok());
  auto enrol = [&](const std::string& signed_invite) {
    crypto::SigningKey dev = crypto::GenerateSigningKey();
    v1::Request req;
    req.set_device_key(dev.public_key.data(), 32);
    req.set_server_key(w.server->server_key().data(), 32);
    req.mutable_enrol()->set_invite(signed_invite);
    req.mutable_enrol()->set_proof(protocol::EnrolProof(decoded->enrol_secret, dev.public_key, w.server->server_key()));
    return Answer(w.server->Handle("POST", protocol::kPathEnrol, protocol::kContentType, protocol::SignRequest(dev, req)).body)
        .status();
  };
  EXPECT_EQ(enrol(decoded->checked.signed_invite), v1::OK);
  EXPECT_EQ(enrol(decoded->checked.signed_invite), v1::INVITE_USED_UP);
  EXPECT_EQ(enrol(decoded->checked.signed_invite + std::string("\x18\x01", 2)), v1::INVITE_USED_UP);  // an extra field
  EXPECT_EQ(w.server->Devices()->size(), 1u);
}

// --- Media: attachments upload in verified chunks; the receipt comes only when all of them are held ---

std::vector<uint8_t> Bytes(size_t n, uint32_t seed) { return test::PseudoRandomBytes(n, seed); }

struct MediaReport {
  ReportId id{};
  std::vector<AttachmentInfo> attachments;
};

MediaReport SealWithMedia(Store& s, const std::vector<size_t>& sizes, const std::string& text = "media") {
  MediaReport out;
  auto r = s.CreateDraft("detention/1");
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r->SetNarrative(text).ok());
  EXPECT_TRUE(s.SaveDraft(*r).ok());
  uint32_t seed = 1;
  for (size_t n : sizes) {
    auto c = s.CaptureAttachment(r->id(), "video/mp4");
    EXPECT_TRUE(c.ok());
    auto data = Bytes(n, seed++);
    EXPECT_TRUE((*c)->Write(data).ok());
    auto info = (*c)->Finish();
    EXPECT_TRUE(info.ok()) << info.status().message();
    out.attachments.push_back(*info);
  }
  EXPECT_TRUE(s.Seal(*r).ok());
  out.id = r->id();
  return out;
}

uint64_t TotalCiphertext(const MediaReport& m) {
  uint64_t n = 0;
  for (const auto& a : m.attachments) n += a.ciphertext_size;
  return n;
}

std::string ServerAttachmentFile(World& w, Store& phone, const AttachmentInfo& a) {
  return w.t.sub("server") + "/attachments/" +
         attachment::FileName(phone.device_key(), std::span<const uint8_t>(a.id.data(), 16));
}

bool SameFile(const std::string& a, const std::string& b) {
  auto x = fs::ReadFile(a, 64u << 20), y = fs::ReadFile(b, 64u << 20);
  return x.ok() && y.ok() && *x == *y;
}

// A data directory of dala-server 0.1 (no organisation key: its invites were its own) is refused with
// what to do, and left exactly as it was, so that the 0.1 binary can still export it.
TEST(Server, DataOfDala01IsRefusedAndLeftUntouched) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  SealOne(*phone, "before the upgrade");
  EXPECT_EQ(Sync(*phone, *w.net).delivered, 1u);
  w.net.reset();
  w.server.reset();
  const std::string dir = w.t.sub("server");
  auto key = fs::ReadFile(dir + "/server.key", 64);
  ASSERT_TRUE(key.ok());
  {  // as 0.1 (schema 2) left it: no organisation key
    auto db = db::Db::Open(dir + "/server.db", SecretBuffer(key->data(), key->size()), false);
    ASSERT_TRUE(db.ok()) << db.status().message();
    ASSERT_TRUE(db->Exec("DELETE FROM meta WHERE key = 'organisation_key'; PRAGMA user_version = 2;").ok());
  }
  auto before = fs::ReadFile(dir + "/server.db", 64u << 20);
  auto opened = server::ServerCore::Open(dir);
  EXPECT_EQ(opened.status().code(), Code::kState);
  EXPECT_NE(opened.status().message().find("0.1"), std::string::npos) << opened.status().message();
  EXPECT_NE(opened.status().message().find("export"), std::string::npos);
  EXPECT_EQ(*fs::ReadFile(dir + "/server.db", 64u << 20), *before);
}

// A database that SQLCipher 3 wrote (as dala-server 0.1 did) in a data directory: refused with what to do,
// and not converted (the 0.1 binary could no longer read it). A real SQLCipher 3 file: the 0.1 phone
// store of tests/fixtures, under its own key.
TEST(Server, Sqlcipher3DatabaseIsRefusedAndLeftUntouched) {
  World w;
  w.net.reset();
  w.server.reset();
  const std::string dir = w.t.sub("server");
  const std::string fixture = std::string(DALA_TEST_SOURCE_DIR) + "/fixtures/store-0.1";
  auto file = fs::ReadFile(fixture + "/dala.key", 4096);
  ASSERT_TRUE(file.ok());
  auto key = UnwrapSecret(KeyPurpose::kStoreDatabase, *file, test::Pass("fixture 0.1 passphrase"));
  ASSERT_TRUE(key.ok()) << key.status().message();
  ASSERT_TRUE(fs::RemoveFile(dir + "/server.db-wal").ok());
  ASSERT_TRUE(fs::RemoveFile(dir + "/server.db-shm").ok());
  ASSERT_TRUE(fs::CopyFile(fixture + "/dala.db", dir + "/server.db.new").ok());
  ASSERT_EQ(::rename((dir + "/server.db.new").c_str(), (dir + "/server.db").c_str()), 0);
  ASSERT_TRUE(fs::WriteFileAtomic(dir + "/server.key", key->span()).ok());
  auto before = fs::ReadFile(dir + "/server.db", 64u << 20);
  auto opened = server::ServerCore::Open(dir);
  EXPECT_EQ(opened.status().code(), Code::kState);
  EXPECT_NE(opened.status().message().find("0.1"), std::string::npos) << opened.status().message();
  EXPECT_NE(opened.status().message().find("export"), std::string::npos);
  EXPECT_EQ(*fs::ReadFile(dir + "/server.db", 64u << 20), *before);
  EXPECT_FALSE(fs::Exists(dir + "/server.db-convert"));
  // Nor does `dala-server backup` convert it (the backup would be of a file the 0.1 binary cannot read).
  auto backup = server::Backup(dir, w.t.sub("b.tar"), false);
  EXPECT_FALSE(backup.ok());
  EXPECT_EQ(backup.status().code(), Code::kState) << backup.status().message();
  EXPECT_NE(backup.status().message().find("0.1"), std::string::npos) << backup.status().message();
  EXPECT_NE(backup.status().message().find("xport"), std::string::npos) << backup.status().message();
  EXPECT_EQ(*fs::ReadFile(dir + "/server.db", 64u << 20), *before);
  EXPECT_FALSE(fs::Exists(dir + "/server.db-convert"));
}

TEST(Media, UploadsThenDeliversWithAReceiptCoveringTheAttachments) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport big = SealWithMedia(*phone, {2 * attachment::kUploadChunk + 1000, 5000}, "with video");
  ReportId small = SealOne(*phone, "text only");
  auto r = Sync(*phone, *w.net);
  EXPECT_EQ(r.delivered, 2u) << r.last_error;
  EXPECT_EQ(r.remaining, 0u);
  EXPECT_EQ(*w.server->ReportCount(), 2u);
  // The server holds exactly the phone's encrypted files, sent once.
  for (const auto& a : big.attachments) {
    auto local = phone->LocalAttachmentFile(a.id);
    ASSERT_TRUE(local.ok());
    EXPECT_TRUE(SameFile(local->path, ServerAttachmentFile(w, *phone, a)));
  }
  EXPECT_EQ(w.net->upload_bytes, TotalCiphertext(big));
  // Both receipts verify; the attachment report's receipt is over the envelope that names the attachments.
  auto receipts = phone->ListReceipts();
  ASSERT_TRUE(receipts.ok());
  EXPECT_EQ(receipts->size(), 2u);
  EXPECT_EQ(phone->Get(big.id)->state, ReportState::kDelivered);
  EXPECT_EQ(phone->Get(small)->state, ReportState::kDelivered);
  // A second run has nothing to do, and sends nothing.
  uint64_t before = w.net->upload_bytes;
  auto again = Sync(*phone, *w.net);
  EXPECT_EQ(again.delivered, 0u);
  EXPECT_EQ(w.net->upload_bytes, before);
}

TEST(Media, ASmallReportIsNotHeldBackBehindMedia) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport big = SealWithMedia(*phone, {3 * attachment::kUploadChunk}, "video first");
  ReportId small = SealOne(*phone, "sealed after the video");
  // The connection dies during the first upload: the small report was already delivered by then.
  w.net->cut_at = {100, 0, 0, 0, 0, 0, 0, 0};  // and it stays down
  auto r = Sync(*phone, *w.net);
  EXPECT_EQ(phone->Get(small)->state, ReportState::kDelivered);
  EXPECT_NE(phone->Get(big.id)->state, ReportState::kDelivered);
  EXPECT_TRUE(r.unreachable);
  w.net->cut_at.clear();
  ASSERT_TRUE(phone->RetryOfflineNow().ok());
  r = Sync(*phone, *w.net);
  EXPECT_EQ(phone->Get(big.id)->state, ReportState::kDelivered) << r.last_error;
}

TEST(Media, CutsAtRandomOffsetsResendAtMostOneChunkEach) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {5 * attachment::kUploadChunk + 12345, 70000});
  const uint64_t total = TotalCiphertext(m);
  // Ten cuts at random byte offsets across the upload.
  uint32_t seed = 12345;
  for (int i = 0; i < 10; ++i) w.net->cut_at.push_back(1 + (seed = seed * 1103515245u + 12345u) % (total / 6));
  const size_t cuts = w.net->cut_at.size();
  sync::RunResult r;
  for (int run = 0; run < 20 && phone->Get(m.id)->state != ReportState::kDelivered; ++run) {
    ASSERT_TRUE(phone->RetryOfflineNow().ok());
    r = Sync(*phone, *w.net);
  }
  ASSERT_EQ(phone->Get(m.id)->state, ReportState::kDelivered) << r.last_error;
  EXPECT_TRUE(w.net->cut_at.empty());
  for (const auto& a : m.attachments)
    EXPECT_TRUE(SameFile(phone->LocalAttachmentFile(a.id)->path, ServerAttachmentFile(w, *phone, a)));
  EXPECT_LE(w.net->upload_bytes, total + cuts * attachment::kUploadChunk)
      << "sent " << w.net->upload_bytes << " for " << total << " bytes and " << cuts << " cuts";
  EXPECT_GE(w.net->upload_bytes, total);
}

// A hostile server (signing with its real key) answering an upload with a chunk the request did not carry,
// a chunk past the end, or an offset inside a chunk, changes nothing: the intact attachment is not marked
// damaged, nothing is read past the manifest, and the report is delivered once answers are honest.
TEST(Media, AForgedUploadAnswerCannotMarkAnIntactAttachmentDamaged) {
  World w;
  const crypto::SigningKey hostile = w.StolenServerKey();
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {3 * attachment::kUploadChunk + 10}, "photo");
  const uint64_t size = m.attachments[0].ciphertext_size;
  for (uint64_t forged : {~uint64_t{0}, size, size - size % attachment::kUploadChunk, uint64_t{7},
                          uint64_t{2} * attachment::kUploadChunk + 1}) {
    int left = 1;
    w.net->tamper_upload = [&](const sync::HttpRequest& req, std::string& body) {
      if (left-- <= 0) return;
      v1::Response r = Answer(body);
      r.mutable_upload()->set_code(v1::UPLOAD_BAD_CHUNK);
      r.mutable_upload()->set_received(forged);
      body = SignAnswer(hostile, r, req);
    };
    ASSERT_TRUE(phone->RetryNow().ok());
    auto r = sync::RunOnce(*phone, *w.net, SystemNowMs() + 10000, nullptr);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_EQ(r->rejected, 0u) << "offset " << forged;
    auto got = phone->Get(m.id);
    ASSERT_TRUE(got.ok());
    EXPECT_NE(got->state, ReportState::kRejected) << "offset " << forged;
    if (got->state == ReportState::kDelivered) break;  // the honest answers after the forged one finished it
  }
  w.net->tamper_upload = nullptr;
  ASSERT_TRUE(phone->RetryNow().ok());
  Sync(*phone, *w.net);
  EXPECT_EQ(phone->Get(m.id)->state, ReportState::kDelivered);
  EXPECT_TRUE(SameFile(phone->LocalAttachmentFile(m.attachments[0].id)->path,
                       ServerAttachmentFile(w, *phone, m.attachments[0])));
}

TEST(Media, ACorruptedChunkIsRefusedAndSentAgain) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {2 * attachment::kUploadChunk + 5});
  w.net->corrupt_uploads = 2;
  auto r = Sync(*phone, *w.net);
  EXPECT_EQ(r.delivered, 1u) << r.last_error;
  EXPECT_EQ(w.net->corrupt_uploads, 0);
  EXPECT_TRUE(SameFile(phone->LocalAttachmentFile(m.attachments[0].id)->path, ServerAttachmentFile(w, *phone, m.attachments[0])));
}

TEST(Media, ALocalFileThatNoLongerMatchesTheEnvelopeIsNotDelivered) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport bad = SealWithMedia(*phone, {attachment::kUploadChunk + 10}, "damaged later");
  MediaReport good = SealWithMedia(*phone, {1000}, "fine");
  ReportId text = SealOne(*phone, "text");
  // The phone's copy changes after sealing (a bad flash cell, a tool): its hash no longer matches.
  {
    std::string path = phone->LocalAttachmentFile(bad.attachments[0].id)->path;
    std::FILE* f = std::fopen(path.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, 100, SEEK_SET);
    int byte = std::fgetc(f);
    std::fseek(f, 100, SEEK_SET);
    std::fputc(byte ^ 0x55, f);  // always a different byte (a fixed value would match 1 time in 256)
    std::fclose(f);
  }
  auto r = Sync(*phone, *w.net);
  EXPECT_EQ(r.delivered, 2u);
  EXPECT_EQ(r.rejected, 1u);
  EXPECT_EQ(phone->Get(bad.id)->state, ReportState::kRejected);
  EXPECT_NE(r.last_error.find("damaged on this phone"), std::string::npos) << r.last_error;
  EXPECT_EQ(phone->Get(good.id)->state, ReportState::kDelivered);
  EXPECT_EQ(phone->Get(text)->state, ReportState::kDelivered);
  EXPECT_EQ(*w.server->ReportCount(), 2u);  // the damaged one has no receipt and is not counted
  // The server refused the chunk outright: it never holds bytes that differ from the signed manifest.
  EXPECT_EQ(std::filesystem::file_size(ServerAttachmentFile(w, *phone, bad.attachments[0])), 0u);
}

TEST(Media, ServerStorageFullKeepsEverythingForLater) {
  World w;
  server::ServerLimits small;
  small.max_storage_bytes = attachment::kUploadChunk;  // room for one chunk
  w.net.reset();
  w.server.reset();
  w.server = std::move(server::ServerCore::Open(w.t.sub("server"), small)).value();
  w.net = std::make_unique<LoopTransport>(w.server.get());
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {3 * attachment::kUploadChunk});
  ReportId text = SealOne(*phone, "text");
  auto r = Sync(*phone, *w.net);
  EXPECT_EQ(r.delivered, 1u);
  EXPECT_EQ(r.remaining, 1u);
  EXPECT_NE(r.last_error.find("storage is full"), std::string::npos) << r.last_error;
  EXPECT_EQ(phone->Get(text)->state, ReportState::kDelivered);
  EXPECT_EQ(phone->Get(m.id)->state, ReportState::kQueued);
  auto back = phone->OpenAttachment(m.attachments[0].id);  // still whole on the phone
  ASSERT_TRUE(back.ok());
  // The organisation makes room: the next run (after the backoff) delivers.
  w.net.reset();
  w.server.reset();
  w.server = std::move(server::ServerCore::Open(w.t.sub("server"))).value();
  w.net = std::make_unique<LoopTransport>(w.server.get());
  phone->set_clock([] { return SystemNowMs() + 24 * 3600 * 1000LL; });
  r = Sync(*phone, *w.net);
  EXPECT_EQ(phone->Get(m.id)->state, ReportState::kDelivered) << r.last_error;
}

TEST(Media, AServerRestartKeepsEveryAcknowledgedChunk) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {4 * attachment::kUploadChunk + 77});
  const uint64_t total = TotalCiphertext(m);
  w.net->cut_at = {2 * attachment::kUploadChunk + 500, 0, 0, 0, 0, 0, 0, 0};  // two chunks and a bit, then the link dies
  Sync(*phone, *w.net);
  EXPECT_NE(phone->Get(m.id)->state, ReportState::kDelivered);
  // The server restarts (a crash after the cut: its process state is gone, its files are not).
  w.net.reset();
  w.server.reset();
  w.server = std::move(server::ServerCore::Open(w.t.sub("server"))).value();
  w.net = std::make_unique<LoopTransport>(w.server.get());
  ASSERT_TRUE(phone->RetryOfflineNow().ok());
  auto r = Sync(*phone, *w.net);
  EXPECT_EQ(phone->Get(m.id)->state, ReportState::kDelivered) << r.last_error;
  EXPECT_LE(w.net->upload_bytes, total - 2 * attachment::kUploadChunk);  // resumed after the two durable chunks
}

// Two nodes on one database (here two ServerCores on one data directory, as with PostgreSQL): a phone
// that holds a head from node B, whose next push reaches node A and appends nothing there (a report held
// until its attachment is uploaded), must get the newest head, not the one A last knew: else it records a
// fork that is not one and stops delivering.
TEST(Log, ANodeAnswersWithTheNewestHeadAfterAnotherNodeGrewTheLog) {
  World w;
  auto node_b = std::move(server::ServerCore::Open(w.t.sub("server"))).value();
  LoopTransport to_b(node_b.get());
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 0u);  // enrolled through node A
  for (int i = 0; i < 3; ++i) SealOne(*phone, "through node B " + std::to_string(i));
  ASSERT_EQ(Sync(*phone, to_b).delivered, 3u);  // node B grew the log; the phone holds B's newest head
  MediaReport m = SealWithMedia(*phone, {attachment::kUploadChunk + 5});
  auto run = Sync(*phone, *w.net);  // node A: the first push appends nothing (the photo is not there yet)
  EXPECT_EQ(run.last_error.find("fork"), std::string::npos) << run.last_error;
  EXPECT_EQ(phone->Get(m.id)->state, ReportState::kDelivered) << run.last_error;
}

// The server restarts right after an upload is cut (or the phone's next address is another node sharing
// the attachment files): the phone's probe meets a process that knows nothing of the upload, which must
// answer from its files. (It read the chunk hashes after handing them on, so it answered 0, and the whole
// attachment was sent again.)
TEST(Media, AProbeToARestartedServerResumesFromItsFiles) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {4 * attachment::kUploadChunk + 77});
  const uint64_t total = TotalCiphertext(m);
  w.net->cut_at = {2 * attachment::kUploadChunk + 500};
  w.net->after_cut = [&] {
    w.net->after_cut = nullptr;
    w.server.reset();
    w.server = std::move(server::ServerCore::Open(w.t.sub("server"))).value();
    w.net->set_server(w.server.get());
  };
  auto r = Sync(*phone, *w.net);
  EXPECT_EQ(phone->Get(m.id)->state, ReportState::kDelivered) << r.last_error;
  EXPECT_LE(w.net->upload_bytes, total + 500);  // the cut request, then only what the files did not hold
}

// A crash-trial failure led here: dala-server killed after an upload's last chunk was made durable but
// before it recorded the attachment complete. The phone, told that every byte is there, has nothing left
// to send; pushing the report again must finish it, not hold it as incomplete for ever.
TEST(Media, AServerKilledBeforeRecordingAnUploadCompleteStillDelivers) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {2 * attachment::kUploadChunk + 300});
  phone.reset();  // the child opens its own handles, as a separate process would
  w.net.reset();
  w.server.reset();
  pid_t pid = fork();
  if (pid == 0) {
    testing::SetFailpointHook([](const char* n) {
      if (std::string_view(n) == "server.upload.before_complete") _exit(0);
    });
    auto server = server::ServerCore::Open(w.t.sub("server"));
    auto p = Store::Open(w.t.sub("p"), Pass("pw"), FastOptions());
    if (!server.ok() || !p.ok()) _exit(2);
    LoopTransport net(server->get());
    (void)sync::RunOnce(**p, net, SystemNowMs() + 10000, nullptr);
    _exit(1);  // the failpoint was not reached
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "the failpoint was not reached";

  w.server = std::move(server::ServerCore::Open(w.t.sub("server"))).value();
  w.net = std::make_unique<LoopTransport>(w.server.get());
  phone = std::move(Store::Open(w.t.sub("p"), Pass("pw"), FastOptions())).value();
  ASSERT_TRUE(phone->RetryNow().ok());
  auto r = Sync(*phone, *w.net);
  EXPECT_EQ(phone->Get(m.id)->state, ReportState::kDelivered) << r.last_error;
  EXPECT_EQ(r.remaining, 0u);
  EXPECT_EQ(w.net->upload_bytes, 0u);  // every byte was already held: nothing is sent again
  EXPECT_EQ(*w.server->ReportCount(), 1u);
  EXPECT_TRUE(SameFile(phone->LocalAttachmentFile(m.attachments[0].id)->path, ServerAttachmentFile(w, *phone, m.attachments[0])));
}

TEST(Media, UploadRequestsThatDoNotFitAreRefused) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {attachment::kUploadChunk * 2});
  ASSERT_TRUE(Sync(*phone, *w.net).delivered == 1);
  auto sign = [&](uint64_t offset, uint64_t length, std::string id) {
    v1::Request req;
    req.set_server_key(w.server->server_key().data(), 32);
    auto* up = req.mutable_upload();
    up->set_report_id(m.id.data(), 16);
    up->set_version(1);
    up->set_attachment_id(id);
    up->set_offset(offset);
    up->set_length(length);
    return "Bearer " + encoding::Base64Url(crypto::Bytes(phone->SignRequest(req)));
  };
  std::string id(reinterpret_cast<const char*>(m.attachments[0].id.data()), 16);
  auto code = [](const server::HttpResult& r) { return Answer(r.body); };
  EXPECT_EQ(w.server->HandleUpload("", "abc").status, 400);
  EXPECT_EQ(w.server->HandleUpload("not base64 !", "abc").status, 400);
  EXPECT_EQ(w.server->HandleUpload(sign(0, 3, id).substr(7), "abc").status, 400);  // without its "Bearer "
  EXPECT_EQ(w.server->HandleUpload(sign(0, 5, id), "abc").status, 400);  // length differs from the body
  // Complete already: nothing to do, the server says so without reading more.
  auto done = code(w.server->HandleUpload(sign(0, 3, id), "abc"));
  EXPECT_TRUE(done.upload().complete());
  // An attachment this device never declared.
  auto unknown = code(w.server->HandleUpload(sign(0, 3, std::string(16, 'x')), "abc"));
  EXPECT_EQ(unknown.upload().code(), v1::UPLOAD_UNKNOWN);
  // Another device cannot upload into this device's attachment (its key names a different file).
  auto other = w.Phone("q");
  ASSERT_TRUE(other->Join(w.Invite()).ok());
  ASSERT_TRUE(Sync(*other, *w.net).unreachable == false);
  v1::Request req;
  req.set_server_key(w.server->server_key().data(), 32);
  req.mutable_upload()->set_attachment_id(id);
  req.mutable_upload()->set_length(3);
  auto theirs = code(w.server->HandleUpload("Bearer " + encoding::Base64Url(crypto::Bytes(other->SignRequest(req))), "abc"));
  EXPECT_EQ(theirs.upload().code(), v1::UPLOAD_UNKNOWN);
}

// The ids of the envelopes a push carries (to forge answers that name them).
std::vector<std::pair<std::string, uint32_t>> PushedIds(const sync::HttpRequest& req) {
  v1::SignedRequest sreq;
  v1::Request r;
  std::vector<std::pair<std::string, uint32_t>> out;
  if (!sreq.ParseFromString(req.body) || !r.ParseFromString(sreq.request()) || !r.has_push()) return out;
  for (const auto& e : r.push().envelopes()) {
    envelope::Header h;
    if (envelope::Verify(crypto::Bytes(e), &h).ok()) out.emplace_back(IdBytes(h.report_id), h.version);
  }
  return out;
}

// An on-path attacker (plain http://, a TLS-terminating proxy) answers in the server's place: "enrolled",
// "revoked", "rejected", a bad chunk at any offset, unsigned or signed by a key of its own. None of it
// changes what the phone records, and everything is delivered once the real server answers.
TEST(Sync, AnOnPathAttackerCannotDecideAReportsFate) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ReportId text = SealOne(*phone, "a report");
  MediaReport media = SealWithMedia(*phone, {2 * attachment::kUploadChunk + 10}, "a photo");
  const crypto::SigningKey impostor = crypto::GenerateSigningKey();
  const std::string destination = (*phone->Servers())[0].destination;
  int forged = 0;
  for (bool sign_it : {false, true}) {
    for (v1::ResponseStatus status : {v1::OK, v1::DEVICE_REVOKED, v1::UNKNOWN_DEVICE, v1::INVITE_INVALID}) {
      w.net->intercept = [&](const sync::HttpRequest& req) -> std::optional<std::string> {
        ++forged;
        v1::Response r;
        r.set_status(status);
        r.set_message("forged");
        for (const auto& [id, version] : PushedIds(req)) {
          auto* res = r.add_results();
          res->set_report_id(id);
          res->set_version(version);
          res->set_code(v1::REJECTED);
          res->set_reason("forged rejection");
        }
        if (req.is_upload()) {
          r.mutable_upload()->set_code(v1::UPLOAD_BAD_CHUNK);
          r.mutable_upload()->set_received(0);
        }
        return sign_it ? SignAnswer(impostor, r, req) : r.SerializeAsString();
      };
      ASSERT_TRUE(phone->RetryNow().ok());
      auto run = Sync(*phone, *w.net);
      EXPECT_EQ(run.delivered + run.rejected, 0u);
      EXPECT_FALSE((*phone->Servers())[0].enrolled) << "a forged answer enrolled the phone";
      EXPECT_EQ(phone->Get(text)->state, ReportState::kQueued);
      EXPECT_EQ(phone->Get(media.id)->state, ReportState::kQueued);
      EXPECT_EQ(phone->Stats(destination)->rejected, 0u);
    }
  }
  EXPECT_EQ(*w.server->ReportCount(), 0u);
  // Enrolled for real, then the attacker forges push and upload answers only.
  w.net->intercept = nullptr;
  sync::SyncEngine e(*phone, (*phone->Servers())[0]);
  auto enrol = e.Next();
  ASSERT_TRUE(enrol.ok() && *enrol);
  ASSERT_TRUE(e.Apply(**enrol, w.net->Post("", **enrol, 1000, "")).ok());
  w.net->intercept = [&](const sync::HttpRequest& req) -> std::optional<std::string> {
    v1::Response r;
    r.set_status(v1::OK);
    for (const auto& [id, version] : PushedIds(req)) {
      auto* res = r.add_results();
      res->set_report_id(id);
      res->set_version(version);
      res->set_code(v1::REJECTED);
    }
    return r.SerializeAsString();
  };
  ASSERT_TRUE(phone->RetryNow().ok());
  EXPECT_EQ(Sync(*phone, *w.net).rejected, 0u);
  EXPECT_EQ(phone->Stats(destination)->rejected, 0u);
  // Pushes reach the server (the photo is held INCOMPLETE); upload answers are forged: a bad chunk at the
  // start, past the end, inside a chunk.
  int forged_uploads = 0;
  for (uint64_t offset : {uint64_t{0}, ~uint64_t{0}, uint64_t{7}}) {
    w.net->intercept = [&](const sync::HttpRequest& req) -> std::optional<std::string> {
      if (!req.is_upload()) return std::nullopt;
      ++forged_uploads;
      v1::Response r;
      r.set_status(v1::OK);
      r.mutable_upload()->set_code(v1::UPLOAD_BAD_CHUNK);
      r.mutable_upload()->set_received(offset);
      return r.SerializeAsString();
    };
    ASSERT_TRUE(phone->RetryNow().ok());
    EXPECT_EQ(Sync(*phone, *w.net).rejected, 0u);
    EXPECT_EQ(phone->Get(media.id)->state, ReportState::kQueued);
  }
  EXPECT_EQ(forged_uploads, 3);
  EXPECT_EQ(phone->Get(text)->state, ReportState::kDelivered);  // its push reached the server
  // The real server answers the uploads: the photo is delivered too.
  w.net->intercept = nullptr;
  ASSERT_TRUE(phone->RetryNow().ok());
  auto run = Sync(*phone, *w.net);
  EXPECT_EQ(run.delivered, 1u) << run.last_error;
  EXPECT_EQ(phone->Get(text)->state, ReportState::kDelivered);
  EXPECT_EQ(phone->Get(media.id)->state, ReportState::kDelivered);
  EXPECT_EQ(forged, 8);  // each round's enrolment
}

// A genuine answer is bound to the request it answers: a real rejection, replayed when the phone sends the
// report again, changes nothing. A rejected report keeps everything, can be queued again, and does not hold
// back the rest of the queue.
TEST(Sync, ARejectionCanBeRetriedAndAReplayedRejectionIsIgnored) {
  World w;
  w.server.reset();
  server::ServerLimits tight;
  tight.max_envelope_bytes = 1600;  // a report larger than this is refused (the operator raises it later)
  w.server = std::move(server::ServerCore::Open(w.t.sub("server"), tight)).value();
  w.net = std::make_unique<LoopTransport>(w.server.get());
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ReportId big = SealOne(*phone, std::string(2000, 'x'));
  ReportId small = SealOne(*phone, "small");
  std::string genuine_rejection;
  w.net->tamper = [&](const sync::HttpRequest&, std::string& body) {
    if (Answer(body).results_size() > 0) genuine_rejection = body;
  };
  auto first = Sync(*phone, *w.net);
  EXPECT_EQ(first.rejected, 1u);
  EXPECT_EQ(first.delivered, 1u);  // the rejection held nothing back
  EXPECT_EQ(phone->Get(big)->state, ReportState::kRejected);
  EXPECT_EQ(phone->Get(small)->state, ReportState::kDelivered);
  ASSERT_FALSE(genuine_rejection.empty());
  ASSERT_EQ(Answer(genuine_rejection).results(0).code(), v1::REJECTED);

  // The operator raises the limit; the phone queues the report again; an attacker replays the old answer.
  w.net.reset();
  w.server.reset();
  w.server = std::move(server::ServerCore::Open(w.t.sub("server"))).value();
  w.net = std::make_unique<LoopTransport>(w.server.get());
  EXPECT_EQ(phone->RetryRejected(small).code(), Code::kNotFound);
  ASSERT_TRUE(phone->RetryRejected(big).ok());
  EXPECT_EQ(phone->Get(big)->state, ReportState::kQueued);
  w.net->intercept = [&](const sync::HttpRequest& req) -> std::optional<std::string> {
    if (req.path == protocol::kPathPush) return genuine_rejection;
    return std::nullopt;
  };
  auto replayed = Sync(*phone, *w.net);
  EXPECT_EQ(replayed.rejected, 0u);
  EXPECT_EQ(phone->Get(big)->state, ReportState::kQueued);
  w.net->intercept = nullptr;
  ASSERT_TRUE(phone->RetryNow().ok());
  EXPECT_EQ(Sync(*phone, *w.net).delivered, 1u);
  EXPECT_EQ(phone->Get(big)->state, ReportState::kDelivered);
}

// A phone draining its queue sends the next push while it records the answer to the one before (pipelined).
// That may change nothing it sends: a push goes out early only after an answer that verified, said OK and
// brought no statement. After any other answer the prepared push is given back unsent, the answer applied
// first, and the next push built from what it changed, exactly as one push at a time would.
TEST(Sync, APipelinedDrainSendsOnlyWhatOnePushAtATimeWould) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  for (int i = 0; i < 200; ++i) SealOne(*phone, "report " + std::to_string(i));  // 4 pushes of at most 64
  const std::string destination = (*phone->Servers())[0].destination;
  auto push_statement = [](const sync::HttpRequest& req) {
    v1::SignedRequest sreq;
    v1::Request r;
    EXPECT_TRUE(sreq.ParseFromString(req.body) && r.ParseFromString(sreq.request()));
    return r.statement_version();
  };
  // The second push's answer is forged (unsigned): the phone stops, and the third push, prepared while the
  // server worked on the second, never goes out; its reports are queued as before, not left in flight.
  int pushes = 0;
  w.net->intercept = [&](const sync::HttpRequest& req) -> std::optional<std::string> {
    if (req.path != protocol::kPathPush || ++pushes != 2) return std::nullopt;
    v1::Response r;
    r.set_status(v1::OK);
    return r.SerializeAsString();
  };
  auto first = Sync(*phone, *w.net);
  EXPECT_EQ(pushes, 2);
  EXPECT_EQ(first.delivered, 64u);
  EXPECT_EQ(first.remaining, 136u);
  EXPECT_EQ(phone->Stats(destination)->in_flight, 0u);
  EXPECT_EQ(phone->Stats(destination)->pending, 136u);
  // The organisation rotates its recipients; the server learns it while it works on the first push of the
  // next run, whose answer carries the statement. Every later push names the new statement: none was sent
  // before the phone had applied it.
  ASSERT_TRUE(desk::RotateRecipients(w.desk, SystemNowMs()).ok());
  std::vector<uint64_t> versions;
  w.net->intercept = [&](const sync::HttpRequest& req) -> std::optional<std::string> {
    if (req.path != protocol::kPathPush || PushedIds(req).empty()) return std::nullopt;  // not the linking push
    versions.push_back(push_statement(req));
    if (versions.size() == 1) {
      EXPECT_TRUE(w.server->SetStatement(w.desk.signed_statement).ok());
    }
    return std::nullopt;
  };
  ASSERT_TRUE(phone->RetryNow().ok());
  auto second = Sync(*phone, *w.net);
  EXPECT_EQ(second.delivered, 136u) << second.last_error;
  EXPECT_EQ(second.remaining, 0u);
  ASSERT_EQ(versions.size(), 3u);
  EXPECT_LT(versions[0], w.desk.statement.version());
  EXPECT_EQ(versions[1], w.desk.statement.version());
  EXPECT_EQ(versions[2], w.desk.statement.version());
  EXPECT_EQ(*w.server->ReportCount(), 200u);  // each stored once
  EXPECT_EQ(phone->Stats(destination)->delivered, 200u);
  // A pipelined push's head was proven against an older head only; the run ends linking it to the newest.
  v1::LogWitness witness = Witness(*phone);
  EXPECT_EQ(witness.unlinked_size(), 0);
  EXPECT_EQ(witness.evidence_size(), 0);
  EXPECT_EQ(protocol::VerifyLogHead(crypto::Bytes(witness.tip()))->size, 1 + 1 + 200 + 1u);  // statements, enrolment, reports
}

TEST(Media, CanaryAppearsNowhereOnThePhoneOrTheServer) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  const std::string canary = "CANARY-video-3c1f-Eskendirova";
  auto r = phone->CreateDraft("detention/1");
  ASSERT_TRUE(r.ok());
  auto c = phone->CaptureAttachment(r->id(), "video/mp4");
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 100000; ++i) ASSERT_TRUE((*c)->Write(crypto::Bytes(canary)).ok());
  ASSERT_TRUE((*c)->Finish().ok());
  ASSERT_TRUE(phone->Seal(*r).ok());
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->Export(w.t.sub("export.pb")).ok());
  std::string where;
  EXPECT_FALSE(test::TreeContains(w.t.path(), canary, &where)) << where;
}


TEST(Media, DeskDecryptsAndVerifiesAttachmentsAndReportsWhatFails) {
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {attachment::kUploadChunk + 3, 10}, "two files");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  const std::string ex = w.t.sub("export.pb");
  ASSERT_TRUE(w.server->Export(ex).ok());
  auto sum = desk::OpenExport(w.desk, ex, w.t.sub("desk"));
  ASSERT_TRUE(sum.ok()) << sum.status().message();
  EXPECT_EQ(sum->verified, 1u);
  const std::string dir = w.t.sub("desk") + "/" + encoding::ToHex(m.id) + "-v1-attachments/";
  for (size_t i = 0; i < 2; ++i) {
    auto plain = fs::ReadFile(dir + encoding::ToHex(m.attachments[i].id) + ".mp4", 8u << 20);
    ASSERT_TRUE(plain.ok());
    EXPECT_EQ(*plain, Bytes(i == 0 ? attachment::kUploadChunk + 3 : 10, static_cast<uint32_t>(i + 1)));
  }
  // One altered byte in the exported file: that attachment and its report fail, with the reason; the
  // other attachment still opens.
  std::string blob = ex + ".media/" + attachment::FileName(phone->device_key(), std::span<const uint8_t>(m.attachments[0].id.data(), 16));
  std::filesystem::remove(blob);  // a hard link to the server's file: replace it, do not edit through it
  auto good = fs::ReadFile(ServerAttachmentFile(w, *phone, m.attachments[0]), 8u << 20);
  (*good)[500] ^= 1;
  ASSERT_TRUE(fs::WriteFileAtomic(blob, *good).ok());
  auto sum2 = desk::OpenExport(w.desk, ex, w.t.sub("desk2"));
  ASSERT_TRUE(sum2.ok());
  EXPECT_EQ(sum2->failed, 1u);
  auto json = fs::ReadFile(w.t.sub("desk2") + "/" + encoding::ToHex(m.id) + "-v1.json", 1u << 20);
  std::string text(json->begin(), json->end());
  EXPECT_NE(text.find("altered"), std::string::npos) << text;
  EXPECT_FALSE(std::filesystem::exists(w.t.sub("desk2") + "/" + encoding::ToHex(m.id) + "-v1-attachments/" +
                                       encoding::ToHex(m.attachments[0].id) + ".mp4"));
  EXPECT_TRUE(std::filesystem::exists(w.t.sub("desk2") + "/" + encoding::ToHex(m.id) + "-v1-attachments/" +
                                      encoding::ToHex(m.attachments[1].id) + ".mp4"));
  // A missing file is reported too.
  std::filesystem::remove(blob);
  auto sum3 = desk::OpenExport(w.desk, ex, w.t.sub("desk3"));
  ASSERT_TRUE(sum3.ok());
  EXPECT_EQ(sum3->failed, 1u);
}

// --- Evidence packages (docs/evidence.md): made at the desk, checked with the organisation's identity ---

namespace evidence_test {

using Files = std::map<std::string, std::string>;

// A package's files, by name (manifest included).
Files ReadPackage(const std::string& path) {
  Files out;
  auto zip = desk::ZipReader::Open(path);
  EXPECT_TRUE(zip.ok()) << zip.status().message();
  for (const auto& e : (*zip)->entries()) out[e.name] = *(*zip)->Read(e.name, 256u << 20);
  return out;
}

// Writes `files` as a package whose manifest lists exactly them, signed by `signer`: what only the
// holder of the organisation's root key could make. Deeper checks must catch what it could forge.
void WritePackage(const std::string& path, Files files, const crypto::SigningKey& signer) {
  files.erase("manifest.json");
  files.erase("manifest.sig");
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [name, bytes] : files) {
    uint8_t sha[32], b2[32];
    crypto_hash_sha256(sha, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    crypto_generichash(b2, 32, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), nullptr, 0);
    list.push_back({{"path", name}, {"size", bytes.size()}, {"sha256", encoding::ToHex(std::span<const uint8_t>(sha, 32))},
                    {"blake2b", encoding::ToHex(std::span<const uint8_t>(b2, 32))}});
  }
  const std::string manifest =
      nlohmann::json{{"format", "dala-evidence/1"}, {"organisation", "x"}, {"created_ms", 1}, {"files", list}}.dump(1);
  const auto sig = crypto::Sign(signer, desk::kDomainEvidence, crypto::Bytes(manifest));
  (void)fs::RemoveFile(path);
  auto zip = desk::ZipWriter::Create(path);
  ASSERT_TRUE(zip.ok());
  for (const auto& [name, bytes] : files) ASSERT_TRUE((*zip)->Add(name, bytes).ok());
  ASSERT_TRUE((*zip)->Add("manifest.json", manifest).ok());
  ASSERT_TRUE((*zip)->Add("manifest.sig", std::string(reinterpret_cast<const char*>(sig.data()), 64)).ok());
  ASSERT_TRUE((*zip)->Close().ok());
}

std::string Problems(const desk::EvidenceVerdict& v) {
  std::string s;
  for (const auto& p : v.problems) s += p + "\n";
  return s;
}

}  // namespace evidence_test

// A package of a report with two versions and a video: dala verify's checks hold with the identity alone;
// each alteration, even one the organisation's own root re-signs, is caught by the check made for it.
TEST(Evidence, APackageVerifiesWithTheIdentityAloneAndEachAlterationIsCaught) {
  using namespace evidence_test;
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  MediaReport m = SealWithMedia(*phone, {200000}, "first account");
  auto v2 = phone->Edit(m.id);
  ASSERT_TRUE(v2.ok());
  ASSERT_TRUE(v2->SetNarrative("first account, with the time confirmed").ok());
  ASSERT_TRUE(phone->Seal(*v2).ok());
  SealOne(*phone, "another report");
  EXPECT_EQ(Sync(*phone, *w.net).delivered, 3u);
  ASSERT_TRUE(w.server->Export(w.t.sub("e.dala")).ok());
  auto store = desk::DeskStore::Open(w.desk, w.t.sub("desk"));
  ASSERT_TRUE(store.ok()) << store.status().message();
  auto imported = (*store)->Import(w.t.sub("e.dala"), {}, false);
  ASSERT_TRUE(imported.ok() && imported->imported) << (imported.ok() ? imported->problems.size() : 0);
  auto rids = (*store)->FindReports({encoding::ToHex(std::span<const uint8_t>(m.id.data(), 16))});
  ASSERT_TRUE(rids.ok());
  const std::string pkg = w.t.sub("evidence.zip");
  ASSERT_TRUE(desk::WriteEvidence(**store, *rids, pkg).ok());
  EXPECT_EQ(desk::WriteEvidence(**store, *rids, pkg).status().code(), Code::kExists);

  auto v = desk::VerifyEvidence(w.desk.root.public_key, pkg);
  ASSERT_TRUE(v.ok()) << v.status().message();
  EXPECT_TRUE(v->ok()) << Problems(*v);
  EXPECT_EQ(v->reports, 1u);
  EXPECT_EQ(v->versions, 2u);
  EXPECT_EQ(v->attachments, 1u);
  EXPECT_GT(v->custody_entries, 0u);
  // Another organisation's identity verifies nothing.
  desk::Organisation stranger = NewDesk(w.t, "stranger.key");
  auto other = desk::VerifyEvidence(stranger.root.public_key, pkg);
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->ok());

  const Files genuine = ReadPackage(pkg);
  std::string dir;
  for (const auto& [name, bytes] : genuine)
    if (name.rfind("reports/", 0) == 0) dir = name.substr(0, name.find('/', 8) + 1);
  ASSERT_FALSE(dir.empty());
  std::string att_name;
  for (const auto& [name, bytes] : genuine)
    if (name.rfind(dir + "attachments/", 0) == 0) att_name = name;
  ASSERT_FALSE(att_name.empty());
  auto flip = [](std::string s, size_t at) {
    s[at % s.size()] ^= 1;
    return s;
  };

  // Without the root key: any change to a file, an added or a removed file, breaks the manifest.
  {
    Files f = genuine;
    f[dir + "v1/envelope.bin"] = flip(f[dir + "v1/envelope.bin"], 100);
    const std::string out = w.t.sub("unsigned.zip");
    (void)fs::RemoveFile(out);
    auto zip = desk::ZipWriter::Create(out);
    for (const auto& [name, bytes] : f) ASSERT_TRUE((*zip)->Add(name, bytes).ok());
    ASSERT_TRUE((*zip)->Close().ok());
    auto r = desk::VerifyEvidence(w.desk.root.public_key, out);
    ASSERT_TRUE(r.ok());
    EXPECT_NE(Problems(*r).find("does not match its hashes"), std::string::npos) << Problems(*r);
  }

  // With the root key re-signing the manifest (the organisation, or a raided desk): each forgery is caught
  // by the check that exists for it.
  struct Forgery {
    const char* what;
    std::function<void(Files&)> change;
    const char* caught_as;
  };
  const crypto::SigningKey other_server = crypto::GenerateSigningKey();
  const std::vector<Forgery> forgeries = {
      {"an envelope changed", [&](Files& f) { f[dir + "v2/envelope.bin"] = flip(f[dir + "v2/envelope.bin"], 60); },
       "version 2"},
      {"another version's content key",
       [&](Files& f) { f[dir + "v2/content-key.bin"] = f[dir + "v1/content-key.bin"]; }, "commits to"},
      {"version 1's receipt for version 2",
       [&](Files& f) { f[dir + "v2/receipt.bin"] = f[dir + "v1/receipt.bin"]; }, "receipt"},
      {"a log proof moved", [&](Files& f) { f[dir + "v2/log.json"] = f[dir + "v1/log.json"]; }, "not proven to be in the log"},
      {"a log head signed by a key the organisation never authorised",
       [&](Files& f) {
         auto j = nlohmann::json::parse(f[dir + "v1/log.json"]);
         std::string head(protocol::kSignedLogHeadBytes, '\0');
         ASSERT_TRUE(encoding::FromHex(j["log_head"].get<std::string>(),
                                       std::span<uint8_t>(reinterpret_cast<uint8_t*>(head.data()), head.size())));
         auto h = protocol::VerifyLogHead(crypto::Bytes(head));
         ASSERT_TRUE(h.ok());
         h->server_key = other_server.public_key;
         j["log_head"] = encoding::ToHex(crypto::Bytes(protocol::SignLogHead(other_server, *h)));
         f[dir + "v1/log.json"] = j.dump();
       },
       "authorised"},
      {"the enrolment removed", [&](Files& f) { f.erase(dir + "enrolment.bin"); }, "enrolment"},
      {"version 1 removed (a gap)",
       [&](Files& f) {
         for (const char* n : {"envelope.bin", "content-key.bin", "receipt.bin", "log.json", "content.json"})
           f.erase(dir + "v1/" + n);
       },
       "without a gap"},
      {"the video replaced", [&](Files& f) { f[att_name] = flip(f[att_name], 5000); }, "is not the file the device signed"},
      {"the video removed", [&](Files& f) { f.erase(att_name); }, "is missing"},
      {"a custody entry changed",
       [&](Files& f) {
         std::string& c = f["custody.jsonl"];
         const size_t at = c.find("\"detail\":\"");
         ASSERT_NE(at, std::string::npos);
         c.insert(at + 10, "nothing: ");
       },
       "custody log"},
      {"another organisation's statement", [&](Files& f) { f["statement.bin"] = stranger.signed_statement; },
       "statement"},
  };
  for (const auto& forgery : forgeries) {
    Files f = genuine;
    forgery.change(f);
    const std::string out = w.t.sub("forged.zip");
    WritePackage(out, f, w.desk.root);
    auto r = desk::VerifyEvidence(w.desk.root.public_key, out);
    ASSERT_TRUE(r.ok()) << forgery.what << ": " << r.status().message();
    EXPECT_FALSE(r->ok()) << forgery.what;
    EXPECT_NE(Problems(*r).find(forgery.caught_as), std::string::npos) << forgery.what << ":\n" << Problems(*r);
  }
  // The genuine files re-signed the same way still verify: the forgeries above fail for what they change.
  WritePackage(w.t.sub("resigned.zip"), genuine, w.desk.root);
  auto resigned = desk::VerifyEvidence(w.desk.root.public_key, w.t.sub("resigned.zip"));
  ASSERT_TRUE(resigned.ok());
  EXPECT_TRUE(resigned->ok()) << Problems(*resigned);
}

// Trusted time in an evidence package: a version the server's log held when a trusted authority stamped it
// carries that stamp, and dala verify --tsa-cert says when it was received at the latest; a version stamped
// after none carries nothing; another authority, a stamp moved to another version or over a head that does
// not hold it, each is a problem even when the organisation's root re-signs the package.
// A report the desk kept although a check failed (--keep-failed keeps it, marked failed) is not packaged:
// the verification report would have nothing true to say of it, and dala verify would refuse the package.
// The desk is strict enough that no altered export yields a failed version alone (each alteration also
// shows as a missing or withheld entry, which refuses the import), so the mark is set here in the store.
TEST(Evidence, AVersionMarkedFailedIsNotPackaged) {
  using namespace evidence_test;
  World w;
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ReportId good = SealOne(*phone, "a report that verified");
  ReportId bad = SealOne(*phone, "a report kept though it failed");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 2u);
  ASSERT_TRUE(w.server->Export(w.t.sub("e.dala")).ok());
  auto store = desk::DeskStore::Open(w.desk, w.t.sub("desk"));
  ASSERT_TRUE(store.ok()) << store.status().message();
  auto imported = (*store)->Import(w.t.sub("e.dala"), {}, false);
  ASSERT_TRUE(imported.ok() && imported->imported);
  auto hex = [](const ReportId& id) { return encoding::ToHex(std::span<const uint8_t>(id.data(), 16)); };
  auto failed = (*store)->FindReports({hex(bad)});
  ASSERT_TRUE(failed.ok() && failed->size() == 1);
  const std::string mark = "UPDATE versions SET verified = 0 WHERE report_id = X'" + hex(bad) + "'";
  ASSERT_TRUE((*store)->db().Exec(mark.c_str()).ok());
  auto refused = desk::WriteEvidence(**store, *failed, w.t.sub("failed.zip"));
  EXPECT_EQ(refused.status().code(), Code::kState);
  EXPECT_NE(refused.status().message().find("did not verify at import"), std::string::npos) << refused.status().message();
  EXPECT_FALSE(std::filesystem::exists(w.t.sub("failed.zip")));
  auto fine = (*store)->FindReports({hex(good)});
  ASSERT_TRUE(fine.ok());
  ASSERT_TRUE(desk::WriteEvidence(**store, *fine, w.t.sub("good.zip")).ok());
  auto v = desk::VerifyEvidence(w.desk.root.public_key, w.t.sub("good.zip"));
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->ok()) << Problems(*v);
}

TEST(Evidence, AVersionsTimeStampTravelsInThePackageAndIsCheckedAgainstTheTrustedAuthority) {
  using namespace evidence_test;
  World w;
  Tsa tsa(w.t, "Trusted Time"), other(w.t, "Other Time");
  auto phone = w.Phone("p");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ReportId early = SealOne(*phone, "stamped");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  const int64_t before = SystemNowMs();
  ASSERT_TRUE(w.server->StampNewestHead(tsa.Post()).ok());
  ReportId late = SealOne(*phone, "not stamped yet");
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 1u);
  ASSERT_TRUE(w.server->Export(w.t.sub("e.dala")).ok());
  auto store = desk::DeskStore::Open(w.desk, w.t.sub("desk"));
  ASSERT_TRUE(store.ok());
  auto imported = (*store)->Import(w.t.sub("e.dala"), {}, false);
  ASSERT_TRUE(imported.ok() && imported->imported);
  auto rids = (*store)->FindReports({encoding::ToHex(std::span<const uint8_t>(early.data(), 16)),
                                     encoding::ToHex(std::span<const uint8_t>(late.data(), 16))});
  ASSERT_TRUE(rids.ok());
  const std::string pkg = w.t.sub("evidence.zip");
  ASSERT_TRUE(desk::WriteEvidence(**store, *rids, pkg).ok());
  const Files genuine = ReadPackage(pkg);
  const std::string early_dir = "reports/" + encoding::ToHex(phone->device_key()) + "-" +
                                encoding::ToHex(std::span<const uint8_t>(early.data(), 16)) + "/";
  const std::string late_dir = "reports/" + encoding::ToHex(phone->device_key()) + "-" +
                               encoding::ToHex(std::span<const uint8_t>(late.data(), 16)) + "/";
  ASSERT_TRUE(genuine.count(early_dir + "v1/timestamp.json"));
  EXPECT_FALSE(genuine.count(late_dir + "v1/timestamp.json"));  // no head stamped after it

  auto trusted = desk::VerifyEvidence(w.desk.root.public_key, pkg, tsa.Pem());
  ASSERT_TRUE(trusted.ok()) << trusted.status().message();
  EXPECT_TRUE(trusted->ok()) << Problems(*trusted);
  EXPECT_EQ(trusted->timestamps, 1u);
  std::string said;
  for (const auto& c : trusted->checked)
    if (c.find("received no later than") != std::string::npos) said = c;
  EXPECT_NE(said.find("Trusted Time TSA"), std::string::npos) << said;
  // The time said is the stamp's (ISO times of one format compare as text).
  const std::string key = "received no later than ";
  ASSERT_NE(said.find(key), std::string::npos) << said;
  const std::string when = said.substr(said.find(key) + key.size(), IsoTime(before).size());
  EXPECT_GE(when, IsoTime(before - 2000)) << said;
  EXPECT_LE(when, IsoTime(SystemNowMs() + 2000)) << said;
  // Without an authority to trust: the stamp is checked to hold the version, and no time is claimed.
  auto unchecked = desk::VerifyEvidence(w.desk.root.public_key, pkg);
  ASSERT_TRUE(unchecked.ok());
  EXPECT_TRUE(unchecked->ok()) << Problems(*unchecked);
  EXPECT_EQ(unchecked->timestamps, 0u);
  EXPECT_EQ(unchecked->timestamps_unchecked, 1u);
  // An authority the verifier does not trust.
  auto untrusted = desk::VerifyEvidence(w.desk.root.public_key, pkg, other.Pem());
  ASSERT_TRUE(untrusted.ok());
  EXPECT_FALSE(untrusted->ok());
  EXPECT_NE(Problems(*untrusted).find("time-stamp"), std::string::npos) << Problems(*untrusted);

  // Forged by the holder of the root key: the stamp moved to the later version (its head does not hold it),
  // and a stamp with its token changed by one byte.
  struct Forgery {
    std::string what;
    std::function<void(Files&)> change;
  };
  const std::vector<Forgery> forgeries = {
      {"the stamp moved to a version received after it",
       [&](Files& f) { f[late_dir + "v1/timestamp.json"] = f[early_dir + "v1/timestamp.json"]; }},
      {"the token changed",
       [&](Files& f) {
         auto j = nlohmann::json::parse(f[early_dir + "v1/timestamp.json"]);
         std::string t = j["token"].get<std::string>();
         t[t.size() - 8] = t[t.size() - 8] == '0' ? '1' : '0';
         j["token"] = t;
         f[early_dir + "v1/timestamp.json"] = j.dump();
       }},
  };
  for (const auto& forgery : forgeries) {
    Files f = genuine;
    forgery.change(f);
    const std::string out = w.t.sub("forged.zip");
    WritePackage(out, f, w.desk.root);
    auto r = desk::VerifyEvidence(w.desk.root.public_key, out, tsa.Pem());
    ASSERT_TRUE(r.ok()) << forgery.what;
    EXPECT_FALSE(r->ok()) << forgery.what;
    EXPECT_NE(Problems(*r).find("time-stamp"), std::string::npos) << forgery.what << ":\n" << Problems(*r);
  }
}

// dala-server check (ServerCore::Audit): a whole data directory passes; a leaf changed in the database, or
// a head signed over other leaves, is found (docs/operations.md, "Backups and restore").
TEST(Server, AuditFindsAChangedLeafAndAHeadOverOtherLeaves) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  for (int i = 0; i < 3; ++i) SealOne(*phone, "report " + std::to_string(i));
  ASSERT_EQ(Sync(*phone, *w.net).delivered, 3u);
  auto whole = w.server->Audit();
  ASSERT_TRUE(whole.ok()) << whole.status().message();
  EXPECT_TRUE(whole->problems.empty()) << whole->problems[0];
  EXPECT_EQ(whole->reports, 3u);
  EXPECT_GE(whole->log_size, 4u);  // the enrolment and three reports
  EXPECT_GE(whole->heads, 1u);

  auto key = fs::ReadFile(w.t.sub("server") + "/" + server::kServerKeyFile, 64);
  ASSERT_TRUE(key.ok());
  SecretBuffer k(key->data(), key->size());
  auto db = db::Db::Open(w.t.sub("server") + "/" + server::kServerDbFile, k, false);
  ASSERT_TRUE(db.ok());
  // As a raider with the key, or a damaged disk, would: past the append-only triggers.
  ASSERT_TRUE(db->Exec("DROP TRIGGER log_no_update;").ok());
  std::string leaf;
  {
    auto q = db->Prepare("SELECT leaf FROM log WHERE idx = 1");
    ASSERT_TRUE(q.ok() && *q->Step());
    leaf.assign(reinterpret_cast<const char*>(q->BlobView(0).data()), q->BlobView(0).size());
  }
  auto set_leaf = [&](const std::string& bytes) {
    auto u = db->Prepare("UPDATE log SET leaf = ? WHERE idx = 1");
    ASSERT_TRUE(u.ok());
    u->Bind(1, crypto::Bytes(bytes));
    ASSERT_TRUE(u->Run().ok());
  };
  std::string changed_leaf = leaf;
  changed_leaf[changed_leaf.size() / 2] ^= 1;
  set_leaf(changed_leaf);
  auto changed = w.server->Audit();
  ASSERT_TRUE(changed.ok());
  ASSERT_FALSE(changed->problems.empty());
  EXPECT_NE(changed->problems[0].find("do not match"), std::string::npos) << changed->problems[0];
  set_leaf(leaf);
  ASSERT_TRUE(w.server->Audit()->problems.empty());

  // A head the server's own key signed over a root that is not the log's (a raider's, or a fork's).
  protocol::LogHead forged;
  forged.size = whole->log_size;
  forged.root[0] = 1;
  forged.time_ms = SystemNowMs();
  forged.server_key = w.server->server_key();
  auto st = db->Prepare("UPDATE log_heads SET signed = ? WHERE size = ?");
  ASSERT_TRUE(st.ok());
  const std::string signed_head = protocol::SignLogHead(w.StolenServerKey(), forged);
  st->Bind(1, crypto::Bytes(signed_head)).Bind(2, static_cast<int64_t>(forged.size));
  ASSERT_TRUE(st->Run().ok());
  auto over_other = w.server->Audit();
  ASSERT_TRUE(over_other.ok());
  ASSERT_EQ(over_other->problems.size(), 2u);  // that head, and so no head over the whole log
  EXPECT_NE(over_other->problems[0].find("does not match the log's leaves"), std::string::npos)
      << over_other->problems[0];
}

}  // namespace
}  // namespace dala
