// The sync protocol end to end in one process: phones (Store + SyncEngine) and a ServerCore, joined by a
// transport that calls ServerCore::Handle. Faults are injected in the transport.
#include <atomic>
#include <thread>

#include "../unit/test_util.h"
#include "desk.h"
#include "protocol.h"
#include "server_core.h"
#include "sync_engine.h"

namespace dala {
namespace {

using test::FastOptions;
using test::Pass;
using test::TempDir;

// Calls the server directly. Fault knobs: drop the request before the server sees it, or drop the answer
// after the server processed it (the "server killed mid-push" case as the phone sees it).
class LoopTransport : public sync::Transport {
 public:
  explicit LoopTransport(server::ServerCore* s) : server_(s) {}
  Result<sync::HttpResponse> Post(const std::string&, const sync::HttpRequest& req, int64_t,
                                  const std::string&) override {
    ++calls;
    if (down) return Status(Code::kIo, "connection refused");
    auto r = server_->Handle("POST", req.path, protocol::kContentType, req.body);
    if (drop_answers > 0) {
      --drop_answers;
      return Status(Code::kIo, "connection reset");
    }
    if (tamper) tamper(req.body, r.body);
    return sync::HttpResponse{r.status, r.body};
  }
  server::ServerCore* server_;
  bool down = false;
  int drop_answers = 0;
  std::atomic<int> calls{0};
  std::function<void(const std::string& request, std::string& response)> tamper;
};

struct World {
  TempDir t;
  crypto::BoxKeyPair org = crypto::GenerateBoxKeyPair();
  std::unique_ptr<server::ServerCore> server;
  std::unique_ptr<LoopTransport> net;

  World() {
    EXPECT_TRUE(server::ServerCore::Init(t.sub("server"), {org.public_key}).ok());
    server = std::move(server::ServerCore::Open(t.sub("server"))).value();
    net = std::make_unique<LoopTransport>(server.get());
  }
  std::string Invite(uint32_t uses = 10, int64_t ttl_ms = 3600000) {
    return *server->CreateInvite({"http://127.0.0.1:1"}, uses, SystemNowMs() + ttl_ms, "KIBHR");
  }
  std::unique_ptr<Store> Phone(const std::string& name) {
    return std::move(Store::Create(t.sub(name), Pass("pw"), FastOptions())).value();
  }
};

ReportId SealOne(Store& s, const std::string& text) {
  auto r = s.CreateDraft("detention/1");
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r->SetNarrative(text).ok());
  EXPECT_TRUE(s.Seal(*r).ok());
  return r->id();
}

sync::RunResult Sync(Store& s, sync::Transport& net) {
  auto r = sync::RunOnce(s, net, SystemNowMs() + 10000, nullptr);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : sync::RunResult{};
}

TEST(Invite, RoundTripAndTamper) {
  World w;
  std::string inv = w.Invite();
  auto decoded = protocol::DecodeInvite(inv);
  ASSERT_TRUE(decoded.ok()) << decoded.status().message();
  EXPECT_EQ(decoded->organisation(), "KIBHR");
  EXPECT_EQ(decoded->recipients(0), std::string(w.org.public_key.begin(), w.org.public_key.end()));
  // Any changed character is caught.
  for (size_t i = protocol::kInvitePrefix.size(); i < inv.size(); i += 7) {
    std::string bad = inv;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    EXPECT_FALSE(protocol::DecodeInvite(bad).ok()) << i;
  }
  EXPECT_EQ(protocol::DecodeInvite("hello").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(protocol::DecodeInvite(inv.substr(0, inv.size() - 10)).status().code(), Code::kVerify);
}

TEST(Sync, JoinOfflineSealsAtOnceThenDeliversWhenOnline) {
  World w;
  auto phone = w.Phone("phone");
  ReportId before = SealOne(*phone, "sealed before joining");
  w.net->down = true;  // no network: join still works and seals to the organisation at once
  auto info = phone->Join(w.Invite());
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
  // The receipt kept on the phone verifies against the pinned server key.
  auto receipt = phone->Receipt(info->destination, before, 1);
  ASSERT_TRUE(receipt.ok());
  EXPECT_TRUE(protocol::VerifyReceipt(*receipt, w.server->server_key()).ok());
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
  v1::Response r1, r2;
  ASSERT_TRUE(r1.ParseFromString(first.body) && r2.ParseFromString(second.body));
  EXPECT_EQ(r1.results(0).code(), v1::STORED);
  EXPECT_EQ(r2.results(0).code(), v1::DUPLICATE);
  EXPECT_EQ(r1.results(0).receipt_signature(), r2.results(0).receipt_signature());
  EXPECT_EQ(r1.results(0).sequence(), r2.results(0).sequence());
  EXPECT_EQ(r1.results(0).server_time_ms(), r2.results(0).server_time_ms());
  EXPECT_EQ(*w.server->ReportCount(), 1u);
}

TEST(Sync, ReceiptSignedByAnotherKeyIsNotAccepted) {
  World w;
  auto phone = w.Phone("phone");
  ASSERT_TRUE(phone->Join(w.Invite()).ok());
  ReportId id = SealOne(*phone, "needs a real receipt");
  auto impostor = crypto::GenerateSigningKey();
  const crypto::PublicKey dev = phone->device_key();
  const crypto::PublicKey srv = w.server->server_key();
  int forged = 0;
  w.net->tamper = [&](const std::string& request, std::string& body) {
    v1::SignedRequest sreq;
    v1::Request req;
    v1::Response r;
    if (!sreq.ParseFromString(request) || !req.ParseFromString(sreq.request()) || !req.has_push() ||
        !r.ParseFromString(body))
      return;
    for (int i = 0; i < r.results_size(); ++i) {
      auto& res = *r.mutable_results(i);
      // Exactly the receipt the phone expects, with only the signer changed.
      v1::Receipt rc;
      rc.set_report_id(res.report_id());
      rc.set_version(res.version());
      auto hash = crypto::Blake2b256(crypto::Bytes(req.push().envelopes(i)));
      rc.set_content_hash(hash.data(), 32);
      rc.set_server_time_ms(res.server_time_ms());
      rc.set_sequence(res.sequence());
      rc.set_server_key(srv.data(), 32);
      rc.set_device_key(dev.data(), 32);
      // The genuine signature verifies on this rebuild, so the forgery differs in the signer alone.
      EXPECT_TRUE(protocol::CompleteReceipt(rc, res.receipt_signature(), srv).ok());
      v1::SignedReceipt fake;
      fake.ParseFromString(protocol::SignReceipt(impostor, rc));
      res.set_receipt_signature(fake.signature());
      ++forged;
    }
    body = r.SerializeAsString();
  };
  auto run = Sync(*phone, *w.net);
  EXPECT_EQ(run.delivered, 0u);
  EXPECT_EQ(phone->Get(id)->state, ReportState::kQueued);
  EXPECT_EQ(phone->Stats((*phone->Servers())[0].destination)->pending, 1u);
  EXPECT_EQ(forged, 1);
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
  w.net->tamper = [](const std::string&, std::string& body) {
    v1::Response r;
    r.set_status(v1::DEVICE_REVOKED);
    r.set_message("revoked \x1b[31mred");
    body = r.SerializeAsString();
  };
  Sync(*phone, *w.net);
  EXPECT_EQ((*phone->Servers())[0].last_error, "revoked ?[31mred");
}

TEST(Server, BadRequestsAreRefusedCleanly) {
  World w;
  EXPECT_EQ(w.server->Handle("POST", "/v1/push", "text/plain", "x").status, 415);
  EXPECT_EQ(w.server->Handle("POST", "/v1/push", protocol::kContentType, "\xff\xff garbage").status, 400);
  EXPECT_EQ(w.server->Handle("GET", "/v1/push", protocol::kContentType, "").status, 405);
  EXPECT_EQ(w.server->Handle("POST", "/nope", protocol::kContentType, "").status, 404);
  EXPECT_EQ(w.server->Handle("GET", "/v1/health", "", "").status, 200);
  // Unknown device: 401.
  auto phone = w.Phone("phone");
  v1::Request req;
  req.set_server_key(w.server->server_key().data(), 32);
  req.mutable_push();
  std::string body = phone->SignRequest(req);
  EXPECT_EQ(w.server->Handle("POST", "/v1/push", protocol::kContentType, body).status, 401);
  // Signed for another server: refused.
  auto other = crypto::GenerateSigningKey();
  req.set_server_key(other.public_key.data(), 32);
  EXPECT_EQ(w.server->Handle("POST", "/v1/push", protocol::kContentType, phone->SignRequest(req)).status, 403);
  // A forged signature: 400.
  v1::SignedRequest sr;
  sr.ParseFromString(body);
  std::string sig = sr.signature();
  sig[0] ^= 1;
  sr.set_signature(sig);
  EXPECT_EQ(w.server->Handle("POST", "/v1/push", protocol::kContentType, sr.SerializeAsString()).status, 400);
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
  auto r = w.server->Handle("POST", "/v1/push", protocol::kContentType, b->SignRequest(req));
  v1::Response resp;
  ASSERT_TRUE(resp.ParseFromString(r.body));
  ASSERT_EQ(resp.results_size(), 1);
  EXPECT_EQ(resp.results(0).code(), v1::REJECTED);
  EXPECT_EQ(*w.server->ReportCount(), 0u);
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

  auto good = desk::OpenExport(w.org, w.t.sub("export.bin"), w.t.sub("desk-good"));
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
    crypto::EnvelopeHeader h;
    ASSERT_TRUE(crypto::VerifyEnvelope(crypto::Bytes(item.envelope()), &h).ok());
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
  auto sum = desk::OpenExport(w.org, w.t.sub("bad.bin"), w.t.sub("desk-bad"));
  ASSERT_TRUE(sum.ok()) << sum.status().message();
  EXPECT_EQ(sum->reports, 2u);
  EXPECT_EQ(sum->verified, 0u);
  EXPECT_EQ(sum->failed, 2u);
  auto summary = test::ReadAll(w.t.sub("desk-bad") + "/summary.json");
  std::string text(summary.begin(), summary.end());
  EXPECT_NE(text.find("version 1 is missing"), std::string::npos) << text;
  EXPECT_NE(text.find("receipt"), std::string::npos) << text;
  // Both reports are still written out with their content, flagged.
  auto v2file = test::ReadAll(w.t.sub("desk-bad") + "/" + crypto::ToHex(edited) + "-v2.json");
  std::string v2text(v2file.begin(), v2file.end());
  EXPECT_NE(v2text.find("\"verified\":false"), std::string::npos);
  EXPECT_NE(v2text.find("second version"), std::string::npos);
}

}  // namespace
}  // namespace dala
