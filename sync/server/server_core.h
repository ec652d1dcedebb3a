// dala-server's storage and protocol logic, without any I/O of its own: HandleAsync() takes one HTTP
// request and calls back with the response. The HTTP front end (http_server.cc) and the tests drive it.
// Thread-safe. Parsing and signature checks run on the caller's thread; pushes then go to one storage
// writer that commits every push waiting at that moment in a single transaction (group commit) and only
// then answers them: receipts leave the server only for durable reports.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <string_view>
#include <vector>

#include "crypto.h"
#include "dala/v1/sync.pb.h"
#include "db.h"
#include "status.h"

namespace dala::server {

struct Limits {
  size_t max_body_bytes = 16u << 20;   // one request body
  size_t max_batch = 256;              // envelopes per push
  size_t max_envelope_bytes = 8u << 20;
};

struct HttpResult {
  int status = 200;
  std::string content_type;
  std::string body;
};

struct DeviceInfo {
  crypto::PublicKey key{};
  int64_t enrolled_ms = 0;
  int64_t last_seen_ms = 0;
  bool revoked = false;
  uint64_t reports = 0;
};

inline constexpr char kServerKeyFile[] = "server.key";
inline constexpr char kServerDbFile[] = "server.db";

class ServerCore {
 public:
  // Creates DIR (0700) with a random database key (server.key, 0600), the database and a signing key.
  static Status Init(const std::string& dir, const std::vector<crypto::PublicKey>& recipients);
  static Result<std::unique_ptr<ServerCore>> Open(const std::string& dir, Limits limits = {});

  crypto::PublicKey server_key() const { return signing_.public_key; }
  Result<std::string> CreateInvite(const std::vector<std::string>& urls, uint32_t uses, int64_t expires_ms,
                                   const std::string& organisation, const std::string& tls_pin = "");
  Result<std::vector<DeviceInfo>> Devices();
  Status Revoke(const crypto::PublicKey& device);
  // Writes every stored report (envelope + receipt) as a dala.v1.Export to `path`.
  Result<uint64_t> Export(const std::string& path);
  Result<uint64_t> ReportCount();

  using Done = std::function<void(HttpResult)>;
  // `done` is called exactly once, on this thread or on the storage writer's thread.
  void HandleAsync(std::string_view method, std::string_view target, std::string_view content_type,
                   std::string_view body, Done done);
  // The same, waiting for the answer.
  HttpResult Handle(std::string_view method, std::string_view target, std::string_view content_type,
                    std::string_view body);
  ~ServerCore();

  void set_clock(int64_t (*clock)());  // tests

 private:
  struct PushItem {
    crypto::EnvelopeHeader h;
    crypto::Hash hash{};
    std::string reject;
    std::string envelope;
  };
  struct PushJob {
    std::string device_key;
    std::vector<PushItem> items;
    Done done;
  };
  ServerCore(db::Db db, crypto::SigningKey signing, Limits limits);
  HttpResult Enrol(const std::string& device_key, const std::string& token);
  void WriterLoop();
  // Under mu_ and inside the writer's transaction: stores one push and builds its answer.
  Result<HttpResult> PushLocked(PushJob& job, int64_t now);

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<PushJob> queue_;
  bool stopping_ = false;
  std::thread writer_;

  std::mutex mu_;
  int64_t next_sequence_ = 1;  // under mu_
  db::Db db_;
  crypto::SigningKey signing_;
  Limits limits_;
  int64_t (*clock_)();
};

}  // namespace dala::server
