// What the in-process sync tests share: a transport that calls ServerCore directly (with fault knobs), and a
// world of one organisation's desk, one server and phones.
#pragma once

#include <atomic>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "../unit/test_util.h"
#include "base/clock.h"
#include "base/db.h"
#include "base/fsutil.h"
#include "client/sync_engine.h"
#include "desk/desk_key.h"
#include "format/response.h"
#include "protocol/http_api.h"
#include "server/server_core.h"

namespace dala::synctest {

using test::FastOptions;
using test::Pass;
using test::TempDir;

// Calls the server directly. Fault knobs: drop the request before the server sees it, or drop the answer
// after the server processed it (the "server killed mid-push" case as the phone sees it).
class LoopTransport : public sync::Transport {
 public:
  explicit LoopTransport(server::ServerCore* s) : server_(s) {}
  void set_server(server::ServerCore* s) { server_ = s; }
  std::function<void()> after_cut;  // runs after each cut upload (e.g. the server restarts there)
  Result<sync::HttpResponse> Post(const std::string&, const sync::HttpRequest& req, int64_t,
                                  const std::string&) override {
    ++calls;
    if (down) return Status(Code::kIo, "connection refused");
    if (intercept) {
      if (auto forged = intercept(req)) return sync::HttpResponse{200, std::move(*forged)};
    }
    if (req.is_upload()) return Upload(req);
    auto r = server_->Handle("POST", req.path, protocol::kContentType, req.body);
    if (drop_answers > 0) {
      --drop_answers;
      return Status(Code::kIo, "connection reset");
    }
    if (tamper) tamper(req, r.body);
    return sync::HttpResponse{r.status, r.body};
  }
  // Uploads: the body is read from the file range, as a real transport would send it. Knobs: cut the
  // connection after `cut_at.front()` body bytes (the server keeps what it got whole); flip one byte.
  Result<sync::HttpResponse> Upload(const sync::HttpRequest& req) {
    std::string body(req.file_length, '\0');
    std::FILE* f = std::fopen(req.file_path.c_str(), "rb");
    if (f == nullptr) return Status(Code::kNotFound, "no file");
    std::fseek(f, static_cast<long>(req.file_offset), SEEK_SET);
    size_t n = std::fread(body.data(), 1, body.size(), f);
    std::fclose(f);
    if (n != body.size()) return Status(Code::kIo, "short file");
    if (corrupt_uploads > 0 && !body.empty()) {
      --corrupt_uploads;
      body[body.size() / 2] ^= 0x40;
    }
    if (!cut_at.empty() && cut_at.front() < body.size()) {
      size_t cut = cut_at.front();
      cut_at.erase(cut_at.begin());
      upload_bytes += cut;
      server_->HandleUpload(req.upload_header, std::string_view(body).substr(0, cut), body.size());
      if (after_cut) after_cut();
      return Status(Code::kIo, "connection reset by the proxy");
    }
    if (!cut_at.empty()) cut_at.front() -= body.size();
    upload_bytes += body.size();
    auto r = server_->HandleUpload(req.upload_header, body);
    if (tamper_upload) tamper_upload(req, r.body);
    return sync::HttpResponse{r.status, r.body};
  }
  server::ServerCore* server_;
  int corrupt_uploads = 0;
  std::vector<size_t> cut_at;  // body-byte offsets (relative to the bytes after the previous cut)
  uint64_t upload_bytes = 0;
  bool down = false;
  int drop_answers = 0;
  std::atomic<int> calls{0};
  // Change an answer on its way to the phone (req.body is the SignedRequest of a push or an enrolment).
  std::function<void(const sync::HttpRequest& req, std::string& response)> tamper;
  std::function<void(const sync::HttpRequest& req, std::string& response)> tamper_upload;
  // An on-path attacker: answers in the server's place (the server never sees the request) when it returns
  // a body.
  std::function<std::optional<std::string>(const sync::HttpRequest& req)> intercept;
};

// The Response inside a server's signed answer (the test reads it; the phone verifies it as well).
inline v1::Response Answer(const std::string& body) {
  v1::SignedResponse sr;
  v1::Response r;
  EXPECT_TRUE(sr.ParseFromString(body) && r.ParseFromString(sr.response()));
  return r;
}

// An answer as `key` would sign it for the request `req`: a hostile server (one whose key was taken) or,
// with any other key, an impostor.
inline std::string SignAnswer(const crypto::SigningKey& key, v1::Response r, const sync::HttpRequest& req) {
  r.clear_request_hash();
  return protocol::SignResponse(key, r.SerializeAsString(), req.request_hash);
}

// The organisation's desk (a real key file), one server for it, and phones.
inline desk::Organisation NewDesk(const TempDir& t, const std::string& file = "org.key") {
  auto id = desk::GenerateKey(t.sub(file), Pass("desk"), {1, 8u << 20}, "KIBHR");
  EXPECT_TRUE(id.ok()) << id.status().message();
  return std::move(desk::OpenKey(t.sub(file), Pass("desk"))).value();
}

struct World {
  TempDir t;
  desk::Organisation desk = NewDesk(t);
  std::unique_ptr<server::ServerCore> server;
  std::unique_ptr<LoopTransport> net;

  World() {
    EXPECT_TRUE(server::ServerCore::Init(t.sub("server"), desk.root.public_key).ok());
    server = std::move(server::ServerCore::Open(t.sub("server"))).value();
    net = std::make_unique<LoopTransport>(server.get());
  }
  const crypto::PublicKey& recipient() const { return desk.recipients.back().public_key; }
  std::string Invite(uint32_t uses = 10, int64_t ttl_ms = 3600000) {
    desk::InviteParams p;
    p.server = server->server_key();
    p.urls = {"http://127.0.0.1:1"};
    p.uses = uses;
    p.expires_ms = SystemNowMs() + ttl_ms;
    auto inv = desk::MakeInvite(desk, p, SystemNowMs() - (ttl_ms < 0 ? 2 * -ttl_ms : 0));
    EXPECT_TRUE(inv.ok()) << inv.status().message();
    return inv.ok() ? *inv : std::string();
  }
  std::unique_ptr<Store> Phone(const std::string& name) {
    return std::move(Store::Create(t.sub(name), Pass("pw"), FastOptions())).value();
  }
  // The server's signing key, taken from its data directory as a raider would: tests of a hostile server.
  crypto::SigningKey StolenServerKey() {
    auto key = fs::ReadFile(t.sub("server") + "/" + server::kServerKeyFile, 64);
    EXPECT_TRUE(key.ok());
    SecretBuffer k(key->data(), key->size());
    auto db = db::Db::Open(t.sub("server") + "/" + server::kServerDbFile, k, false);
    EXPECT_TRUE(db.ok());
    auto st = db->Prepare("SELECT value FROM meta WHERE key = 'signing_key'");
    EXPECT_TRUE(st.ok() && *st->Step());
    return std::move(crypto::SigningKeyFromSecret(st->BlobView(0))).value();
  }
};

inline ReportId SealOne(Store& s, const std::string& text) {
  auto r = s.CreateDraft("detention/1");
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r->SetNarrative(text).ok());
  EXPECT_TRUE(s.Seal(*r).ok());
  return r->id();
}

inline sync::RunResult Sync(Store& s, sync::Transport& net) {
  auto r = sync::RunOnce(s, net, SystemNowMs() + 10000, nullptr);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : sync::RunResult{};
}

// A TSA in a directory: its CA and TSA certificates, made at first use; Post() answers as it would.
struct Tsa {
  std::string dir;
  Tsa(const TempDir& t, const std::string& name) : dir(t.sub("tsa-" + std::to_string(std::hash<std::string>()(name)))) {
    const std::string cmd = "python3 " DALA_TEST_SOURCE_DIR "/support/tsa.py init " + dir + " '" + name + "'";
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  std::string Pem(const std::string& file = "ca.crt") const {
    auto b = test::ReadAll(dir + "/" + file);
    return std::string(b.begin(), b.end());
  }
  server::ServerCore::TsaPost Post() const {
    return [d = dir](const std::string& query) -> Result<std::string> {
      test::WriteAll(d + "/q.tsq", std::vector<uint8_t>(query.begin(), query.end()));
      const std::string cmd = "python3 " DALA_TEST_SOURCE_DIR "/support/tsa.py reply " + d + " " + d + "/q.tsq " + d +
                              "/r.tsr";
      if (std::system(cmd.c_str()) != 0) return Status(Code::kIo, "the TSA failed");
      auto r = test::ReadAll(d + "/r.tsr");
      return std::string(r.begin(), r.end());
    };
  }
};

}  // namespace dala::synctest
