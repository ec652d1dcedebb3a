// The client sync engine, sans-IO: SyncEngine plans the next request from the outbox and applies the
// response; a Transport carries requests (the built-in HTTP one, or the app's own). RunOnce drives both
// until nothing is due, the deadline passes, or the server cannot be reached. The store's lock is never
// held during network I/O.
#pragma once

#include <atomic>
#include <deque>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "client/log_witness.h"
#include "client/transport.h"
#include "store/store.h"

namespace dala::sync {

struct Progress {
  std::string destination;
  uint64_t delivered = 0;  // in this run
  uint64_t rejected = 0;
  uint64_t remaining = 0;  // pending + in flight for this destination
  uint64_t upload_done = 0;   // attachment bytes the server holds, of the reports being uploaded in this run
  uint64_t upload_total = 0;  // their total size
};
using ProgressFn = std::function<void(const Progress&)>;

struct RunResult {
  uint64_t delivered = 0;
  uint64_t rejected = 0;
  uint64_t remaining = 0;       // across destinations: left for a later run
  bool unreachable = false;     // some server could not be reached
  std::string last_error;
};

class SyncEngine {
 public:
  SyncEngine(Store& store, ServerInfo server, size_t max_batch = 64, size_t max_bytes = 4u << 20);
  // The next request to send, or nullopt when this destination has nothing due (or must stop).
  Result<std::optional<HttpRequest>> Next();
  // Applies the result of sending the request Next() (or NextPush()) returned.
  Status Apply(const HttpRequest& request, const Result<HttpResponse>& response);

  // Pipelining (RunOnce): while the server works on one push, the phone prepares the next and then records
  // the first answer while the server works on the second. NextPush: the push that Next() would send after
  // the one outstanding now, if the engine is pushing queued reports (else nullopt; nothing is taken).
  Result<std::optional<HttpRequest>> NextPush();
  // Whether the answer to `request` lets the push NextPush() prepared go out before this answer is applied:
  // a push answered OK, verified (signed by the server key, naming this request), without a new statement.
  // Whatever else the answer is, it is applied first and the prepared push is given back (Unsent).
  bool Pipelinable(const HttpRequest& request, const Result<HttpResponse>& response) const;
  // Gives back the reports of a push that was prepared but never sent: queued as before.
  Status Unsent(const HttpRequest& request);

  const ServerInfo& server() const { return server_; }
  bool stopped() const { return stopped_; }
  uint64_t delivered() const { return delivered_; }
  uint64_t rejected() const { return rejected_; }
  const std::string& last_error() const { return last_error_; }
  bool unreachable() const { return unreachable_; }
  // Ends a run cut short (deadline, cancel): reports still waiting for uploads are due again at once.
  Status Finish();
  // Ends a run that failed on this side (the store): every report taken for it is queued again.
  Status Abandon(std::string_view why);
  // A pause the engine asks for before its next request (another upload of the same file is ending).
  int64_t pause_ms() const { return pause_ms_; }
  uint64_t upload_done() const;
  uint64_t upload_total() const;

  static constexpr uint64_t kMaxUploadRequest = 16u << 20;  // body bytes per upload request

 private:
  // A report the server holds as INCOMPLETE: its attachments are being uploaded.
  struct Upload {
    OutboxItem item;
    std::vector<v1::AttachmentManifest> manifests;
    std::vector<uint64_t> received;
    std::vector<std::string> files;
    size_t current = 0;        // the attachment being uploaded
    int bad_chunks = 0;        // chunks the server refused although they match here: corrupted on the way
    int failures = 0;          // consecutive transport failures without progress
    bool probe = false;        // after a failure: ask the server how much it holds before sending more
  };
  // The reports of one push, from Next() until its answer is applied.
  struct Batch {
    crypto::Hash request_hash{};
    std::vector<OutboxItem> items;
    std::vector<std::string> log_heads;  // the SignedLogHeads the request carried
  };
  Result<std::optional<HttpRequest>> Push(v1::Request& req, std::vector<OutboxItem> items);
  Status RetryAll(std::string_view reason);
  Status ApplyPush(const v1::Response& response);
  Status Smaller();
  Status ApplyUpload(const v1::UploadResult& result);
  Status StartUpload(const OutboxItem& item, const v1::PushResult& result);
  Status Damaged(const OutboxItem& item, const std::string& why);
  void Advance();
  void Stop(std::string reason, bool unreachable);

  Store& store_;
  ServerInfo server_;
  size_t max_batch_, max_bytes_;
  std::deque<Batch> pushes_;  // sent (or about to be) and not yet answered, oldest first: at most two
  std::vector<OutboxItem> answering_;  // during Apply: the reports of the push being answered
  std::vector<std::string> answering_heads_;  // and the log heads its request carried
  LogWitness witness_;                 // what this phone knows of the server's log
  std::deque<Upload> uploads_;
  std::vector<OutboxItem> ready_;  // every attachment held: push again for the receipt
  int64_t pause_ms_ = 0;
  uint64_t upload_total_ = 0, upload_finished_ = 0;
  bool stopped_ = false, unreachable_ = false;
  bool linking_sent_ = false;  // the run's push that carries only log heads, to link those left unlinked
  uint64_t delivered_ = 0, rejected_ = 0;
  std::string last_error_;
};

// cancel (may be null) is checked between requests; to abort a request in flight, cancel the transport too.
// Server-provided text made safe to store and show: printable UTF-8 only (no control or escape characters),
// at most 512 bytes.
std::string Printable(std::string_view text);

Result<RunResult> RunOnce(Store& store, Transport& transport, int64_t deadline_ms, const ProgressFn& progress,
                          const std::atomic<bool>* cancel = nullptr);

}  // namespace dala::sync
