// dala-server's storage and protocol logic, without any I/O of its own: HandleAsync() takes one HTTP
// request and calls back with the response. The HTTP front end (http_server.cc) and the tests drive it.
// Thread-safe. Parsing and signature checks run on the caller's thread; pushes then go to one storage
// writer that commits every push waiting at that moment in a single transaction (group commit) and only
// then answers them: receipts leave the server only for durable reports.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <optional>
#include <span>
#include <thread>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"
#include "server/attachment_store.h"
#include "server/server_log.h"
#include "server/server_metrics.h"
#include "base/db.h"
#include "base/status.h"
#include "format/envelope.h"

namespace dala::server {

struct ServerLimits {
  size_t max_body_bytes = 16u << 20;   // one request body (enrol, push; uploads stream)
  size_t max_batch = 256;              // envelopes per push
  size_t max_envelope_bytes = 8u << 20;
  uint64_t max_storage_bytes = 0;      // attachment bytes the server may hold; 0 = no limit but the disk's
  size_t export_page_bytes = 32u << 20;  // bytes of one page a desk pulls (POST /v2/export)
  size_t max_export_nonces = 1u << 16;   // listed desks' requests remembered (10 minutes each, by every node) against replay
};

struct HttpResult {
  int status = 200;
  std::string content_type;
  std::string body;
};

struct DeviceInfo {
  crypto::PublicKey key{};
  int64_t enrolled_ms = 0;
  int64_t last_seen_ms = 0;  // its last push or enrolment, to the minute
  bool revoked = false;
  uint64_t reports = 0;
  std::string label;          // the operator's, or empty
  crypto::Hash invite{};      // the hash of the invite it enrolled with (InviteInfo::hash)
};

// An invite as the server knows it: from the devices that enrolled with it, or from its cancellation. The
// desk makes invites offline, so one never used is unknown here until it is cancelled.
struct InviteInfo {
  crypto::Hash hash{};        // BLAKE2b-256 of its enrolment key: one per invite, whatever bytes encode it
  uint64_t uses = 0;          // how many devices it may enrol (0: unknown, cancelled before any use)
  uint64_t used = 0;
  int64_t issued_ms = 0, expires_ms = 0, last_used_ms = 0, cancelled_ms = 0;
  std::vector<std::string> urls;
};

inline constexpr char kServerKeyFile[] = "server.key";
inline constexpr char kServerDbFile[] = "server.db";
inline constexpr char kAttachmentDirName[] = "attachments";  // was "blobs" before version 3

class ServerCore;

// One upload request in progress: the HTTP front end feeds the body one chunk at a time (the session
// says how many bytes it wants next) and sends Answer() at the end. Each chunk is checked against the
// signed manifest as it arrives and written; they are made durable (fdatasync) before anything counts
// them: before the answer, or when the connection drops. At most one session per attachment.
class UploadSession {
 public:
  ~UploadSession();
  size_t want() const;                        // bytes to feed next; 0 = no more wanted
  // What want() will be once `fed` bytes of the body were fed (each Feed having returned true), for
  // reading ahead. Depends only on the request, not on Feed's progress.
  size_t want_at(uint64_t fed) const;
  bool Feed(std::span<const uint8_t> data);   // exactly want() bytes; false = stop reading, answer now
  HttpResult Answer();
  size_t max_chunk() const { return chunk_size_; }

 private:
  friend class ServerCore;
  UploadSession(ServerCore& core) : core_(core) {}
  HttpResult Reply(v1::UploadCode code);
  bool Commit();
  void StorageFailed(const Status& st);
  ServerCore& core_;
  crypto::Hash request_hash_{};  // of the signed request this session answers
  std::string name_, device_key_, attachment_id_, chunk_hashes_;
  uint64_t size_ = 0, received_ = 0, offset_ = 0, end_ = 0, start_ = 0, skip_until_ = 0;
  uint32_t chunk_size_ = 0;
  std::unique_ptr<AttachmentWriter> writer_;  // set once the session holds the attachment
  bool holds_ = false;  // this session marked the attachment busy
  uint64_t written_ = 0;  // verified and written, not yet synced (counted once Commit syncs them)
  bool storage_failed_ = false;
  v1::UploadCode stop_ = v1::UPLOAD_OK;
};

// A data directory checked whole (ServerCore::Audit): what `dala-server check` and a restore report.
struct AuditReport {
  uint64_t reports = 0;           // stored report versions
  uint64_t log_size = 0;          // leaves of the log
  uint64_t heads = 0;             // signed heads, each checked against the leaves
  uint64_t attachments = 0;       // complete attachments, each file checked against its chunk hashes
  uint64_t attachment_bytes = 0;
  std::vector<std::string> problems;  // empty: nothing is wrong
};

class ServerCore {
 public:
  // Creates DIR (0700) with a random database key (server.key, 0600), the database and a signing key, for
  // the organisation whose root key is `organisation`: the server enrols only devices that present an
  // invite that root signed for this server.
  // `database`: a postgresql:// URL to keep the data in PostgreSQL (the data directory then holds the key
  // that seals the server's signing key there, the URL, and the attachments); empty: the embedded database.
  // `blobs`: an absolute directory for attachments that several nodes share (a network file system);
  // empty: DIR/attachments.
  static Status Init(const std::string& dir, const crypto::PublicKey& organisation, const std::string& database = {},
                     const std::string& blobs = {});
  static Result<std::unique_ptr<ServerCore>> Open(const std::string& dir, ServerLimits limits = {});

  crypto::PublicKey server_key() const { return signing_.public_key; }
  crypto::PublicKey organisation_key() const { return organisation_; }
  // Installs a newer statement of the organisation (dala desk statement): phones get it with their next
  // answers. kVerify: not the organisation's; kState: not newer than the one held.
  Status SetStatement(std::string_view signed_statement);
  // A node about to serve (dala-server run) on PostgreSQL: checks that its attachment store is the one the
  // other nodes use: that the running nodes' recent marks are in it (as CheckNodes looks; refused only while
  // no node says its store lacks one), and the mark the last node to start left (CheckSharedAttachments,
  // attachment_store.h); kState, saying what to do, if not, with nothing written. Then leaves its marks.
  // Admin commands neither check nor write.
  Status JoinNodes(int check_interval_s);
  // A serving node on PostgreSQL, every `interval_s` seconds (shared_attachments.cc): leaves a fresh mark in
  // its attachment store and records it in the database with its verdict, then looks in its store for a
  // recent mark of every other running node. While one is missing, or another node's row says its store
  // lacks one, the stores are apart (a shared directory unmounted under a running node, a node started on a
  // copy of the attachments, a one-way replica): this node takes no upload and records no attachment
  // complete (503, try later: the phone keeps the bytes), logs `attachment_stores_apart` each time, and
  // /metrics says how many nodes are concerned. Every node stops, since none can tell which store is the one
  // the others read. A store that cannot say whether it holds a mark stops this node; the database
  // unreachable changes nothing.
  // One call at a time; thread-safe with everything else.
  Status CheckNodes(int interval_s);
  // A node stopping gracefully: its mark's row and its marks are removed, so the others stop checking them.
  void LeaveNodes();
  // The operator's view (server_admin.cc); each safe while the server runs in another process.
  Result<std::vector<DeviceInfo>> Devices();
  Status Revoke(const crypto::PublicKey& device);
  // The operator's label for a device (UTF-8, at most 200 bytes; empty removes it). kNotFound: no such device.
  Status LabelDevice(const crypto::PublicKey& device, std::string_view label);
  Result<std::vector<InviteInfo>> Invites();
  // From now on no device enrols with that invite (those enrolled stay). kState: cancelled already.
  Status CancelInvite(const crypto::Hash& invite);
  // Writes the stored reports (envelope + receipt) as a dala.v1.Export to `path`, attachments in path.media/:
  // everything when `since` is 0, else an incremental export (docs/protocol.md, "Incremental exports"): the
  // log's leaves from position `since` on and the reports whose leaf is among them. Returns the reports
  // written; *log_size (if given) is the export's log size, the next incremental export's `since`.
  Result<uint64_t> Export(const std::string& path, uint64_t since = 0, uint64_t* log_size = nullptr);
  // POST /v2/export (server_export.cc): a desk the organisation's statement lists fetches a page of an
  // export, or a range of an attachment file (docs/protocol.md, "Pulling exports"). Answers are not signed:
  // what they carry is (the log head, receipts, the statement), and the desk checks it as a whole.
  HttpResult HandleExport(std::string_view body);
  // Checks the whole data directory (server_audit.cc): the database's integrity, the log's stored nodes
  // against its leaves, every signed head (this server's signature, its root over the first `size` leaves,
  // one over the whole log), every report's leaf in the log, every complete attachment's file against its
  // chunk hashes. Reads everything once; safe while the server runs in another process.
  Result<AuditReport> Audit();

  // Trusted time (docs/protocol.md, "Trusted time"): asks a time-stamping authority, through `post` (an
  // RFC 3161 TimeStampReq in, the authority's TimeStampResp out), for a token over the newest signed head
  // not stamped yet, and keeps it unless a head as large was stamped meanwhile (by another node). Returns
  // the size of the head stamped, 0 when nothing was signed since the last stamp or nothing was kept.
  // Thread-safe; no lock is held while the authority answers.
  using TsaPost = std::function<Result<std::string>(const std::string& request_der)>;
  Result<uint64_t> StampNewestHead(const TsaPost& post);
  Result<uint64_t> ReportCount();
  // What the server counts (GET /metrics); the HTTP front end adds its requests and connections.
  ServerMetrics& metrics() { return metrics_; }

  using Done = std::function<void(HttpResult)>;
  // `done` is called exactly once, on this thread or on the storage writer's thread.
  void HandleAsync(std::string_view method, std::string_view target, std::string_view content_type,
                   std::string_view body, Done done);
  // The same, waiting for the answer.
  HttpResult Handle(std::string_view method, std::string_view target, std::string_view content_type,
                    std::string_view body);

  // POST /v2/upload: checks the Authorization header's signed request; on success the caller streams
  // the body into the session. `body_length` is the request's Content-Length.
  using UploadStart = std::variant<HttpResult, std::unique_ptr<UploadSession>>;
  UploadStart BeginUpload(std::string_view request_header, uint64_t body_length);
  // The whole upload in one call (tests, the in-process transport). A `declared_length` longer than the
  // body is a connection cut after body.size() bytes.
  HttpResult HandleUpload(std::string_view request_header, std::string_view body,
                          std::optional<uint64_t> declared_length = std::nullopt);

  ~ServerCore();

  void set_clock(int64_t (*clock)());  // tests

 private:
  struct PushItem {
    envelope::Header h;
    crypto::Hash hash{};
    std::string reject;
    std::string envelope;
  };
  struct PushJob {
    std::string device_key;
    std::vector<PushItem> items;
    std::vector<uint64_t> log_sizes;  // of the heads the request carried: the answer proves its head extends each
    Done done;
    uint64_t stored = 0, stored_bytes = 0;  // reports PushLocked stored, and their bytes: counted if committed
  };
  friend class UploadSession;
  struct StoredAttachment {  // what the attachments table holds for one
    uint64_t size = 0;
    uint32_t chunk_size = 0;
    std::string root, chunk_hashes;
    bool complete = false;
  };
  ServerCore(std::string dir, std::unique_ptr<sql::Connection> db, crypto::SigningKey signing, ServerLimits limits);
  // Open's second half, on a connection whose schema is migrated.
  static Result<std::unique_ptr<ServerCore>> OpenOn(const std::string& dir, std::unique_ptr<sql::Connection> conn,
                                                    const SecretBuffer& data_key, ServerLimits limits);
  static Status InitPostgres(const std::string& dir, const crypto::PublicKey& organisation,
                             const std::string& database, const SecretBuffer& key);
  static Result<crypto::SigningKey> ReadSigningKey(sql::Connection& db, const SecretBuffer& data_key);
  // Verified bytes held for an attachment: durable ones (from memory), or after a restart those its file
  // holds, which a SIGKILL may have left in the page cache only (CompleteOnDiskLocked syncs before use).
  Result<uint64_t> Received(const std::string& name, const StoredAttachment& stored);
  void EndUpload(const std::string& name, uint64_t received);
  // Received() for an envelope's attachment (0 if the store cannot say now: the upload then skips what it holds).
  uint64_t ReceivedFor(const std::string& device_key, const v1::AttachmentManifest& m);
  Status MarkComplete(const std::string& device_key, const std::string& attachment_id);
  Status MarkCompleteLocked(const std::string& device_key, const std::string& attachment_id);  // under mu_
  // Under mu_, inside the writer's transaction: an attachment not recorded complete whose file is whole and
  // verified is made durable and recorded complete (true); false if bytes are missing.
  Result<bool> CompleteOnDiskLocked(const std::string& device_key, const v1::AttachmentManifest& m);
  // Under mu_, inside the writer's transaction: records the envelope's attachments; true if all complete.
  // `declared`: the ids of those declared by this call (none of their bytes can be held yet).
  Result<bool> AttachmentsLocked(const std::string& device_key, const envelope::Header& h, std::string* conflict,
                                 std::set<std::string>* declared);
  HttpResult Enrol(const std::string& device_key, const v1::EnrolRequest& enrol);
  // Signs a protobuf answer (kProto) for the request whose hash is given; other answers pass unchanged.
  HttpResult Signed(HttpResult r, const crypto::Hash& request_hash) const;
  UploadStart BeginUploadUnsigned(uint64_t body_length, const crypto::Hash& hash, const std::string& raw);
  void WriterLoop();
  void CountStored(const std::vector<PushJob>& jobs);  // a committed group's reports, in the metrics
  // The log's size in the metrics, after each commit that may have appended to it (under mu_).
  void PublishLogSizeLocked() { metrics_.log_leaves.Set(static_cast<double>(log_.size())); }
  // Under mu_ and inside the writer's transaction: stores one push and builds its answer.
  Result<HttpResult> PushLocked(PushJob& job, int64_t now);

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<PushJob> queue_;
  bool stopping_ = false;
  std::thread writer_;

  struct UploadState {
    uint64_t received = 0;
    bool busy = false;
  };
  std::mutex uploads_mu_;
  std::map<std::string, UploadState> uploads_;  // by attachment file name, under uploads_mu_
  std::atomic<uint64_t> stored_bytes_{0};
  // Under mu_, outside any transaction, where an upload checks --max-storage-mib: on PostgreSQL every node
  // stores into one attachment store, so what the others stored is counted again from the database (a scan
  // of the attachments), at most every 2 s; limits are then kept across nodes to within what they store in
  // that time. A single node's count is as exact as before.
  void RecountSharedBytesLocked();
  std::chrono::steady_clock::time_point recounted_{};  // under mu_

  // CheckNodes' state: this process's id among the nodes, its marks (the newest two are kept: another node
  // may have just read the one before), each other node's mark as last seen and since when (a node whose
  // mark has not changed for three of its intervals is not running, and its mark is no longer checked).
  struct SeenNode {
    std::string token;
    std::chrono::steady_clock::time_point since{};
  };
  std::mutex nodes_mu_;
  std::string node_id_;                       // under nodes_mu_
  std::deque<std::string> node_marks_;        // under nodes_mu_
  std::map<std::string, SeenNode> seen_nodes_;  // under nodes_mu_
  std::atomic<bool> stores_apart_{false};
  struct NodeVerdict {
    std::vector<std::string> missing;              // running nodes' marks this node's store lacks (for the log)
    std::vector<std::string> missing_from_joined;  // those of nodes whose own stores lacked nothing
    std::vector<std::string> unreadable;           // marks the store could not say it holds
    std::vector<std::string> reported_apart;       // running nodes whose stores lack another's mark
    std::set<std::string> nodes;                   // the nodes concerned, by id (/metrics)
  };
  // Under nodes_mu_: the running nodes' rows read and their marks looked for; a new mark in the store (false
  // if it could not be written there) and this node's row in the database, saying `apart` (its store lacks
  // a mark); the verdict put in force (uploads, /metrics, the log).
  Result<NodeVerdict> CheckOtherNodes();
  Result<bool> WriteNodeMark(int interval_s, bool apart);
  void PublishNodeVerdict(const NodeVerdict& v, bool written);

  std::string dir_;
  std::unique_ptr<AttachmentStore> attachments_;  // DIR/attachments, or what init --blobs named
  std::mutex mu_;
  int64_t next_sequence_ = 1;  // under mu_
  std::unique_ptr<sql::Connection> db_;
  ServerLog log_{*db_};  // under mu_
  // Under mu_, inside a transaction: signs and records (log_heads) a head over the log as it now is;
  // returns it, or nothing if a head of that size is recorded already.
  Result<std::string> SignHeadLocked(int64_t now);
  // Under mu_: a push answer (200) gains the log (docs/protocol.md, "The log"): the head `signed_head` of
  // `size` leaves, each stored or duplicate report's inclusion proof in it, and a consistency proof from
  // each head the request carried.
  Result<std::string> NewestHeadLocked(uint64_t size);  // the recorded head of that size, or empty
  Status AddLogLocked(const PushJob& job, const std::string& signed_head, uint64_t size, HttpResult* answer);
  // Once, for data from before the log: its statement, enrolments and reports become its first leaves.
  Status BackfillLogLocked();
  // What an export holds (server_export.cc): the log's leaves [from, end) of the head of `size` leaves (0:
  // the newest head), and the reports whose leaf is among them. `budget` (0: none) ends the slice after the
  // leaf whose bytes (with its report or enrolment) reach it; *end is where it ended. Without a budget (to a
  // file): every enrolment and every report from `from` on. `first`: with the time-stamps.
  // `desk_key` (empty: the operator's own export): refused (kPermission) unless the newest statement in the
  // database lists it.
  // `stamps_from`: time-stamps only over heads of at least that size.
  struct ExportSlice {
    uint64_t from = 0, size = 0, stamps_from = 0;
    size_t budget = 0;
    bool first = true;
    std::string desk_key;
  };
  Result<v1::Export> BuildExport(const ExportSlice& slice, uint64_t* end);  // ReadExport, receipts signed
  Result<v1::Export> ReadExport(const ExportSlice& slice, uint64_t* end);   // under mu_, as stored
  Result<sql::Stmt> LeavesFrom(uint64_t from, uint64_t to);  // under mu_
  // Whether the newest statement lists `desk_key` (this node's, else the database's, read again at most once
  // a second).
  bool DeskListed(std::string_view desk_key);
  std::atomic<int64_t> desk_refresh_ms_{0};
  // Records a listed desk's export request (desk key + nonce) in the database, which every node shares,
  // until `forget_ms`: false if a node recorded it before; kBusy when max_export_nonces are held.
  Result<bool> RecordExportNonce(const std::string& key, int64_t now, int64_t forget_ms);
  crypto::SigningKey signing_;
  crypto::PublicKey organisation_{};
  // The newest SignedStatement seen (in an invite, or installed) and its version, under statement_mu_.
  mutable std::mutex statement_mu_;
  std::string statement_;
  uint64_t statement_version_ = 0;
  v1::OrgStatement statement_parsed_;
  // What an enrol or push answer carries for a phone holding statement `version`: the statement if newer.
  std::string StatementFor(uint64_t version) const;
  // Under mu_, inside a transaction: the statement the database holds, kept if newer than this node's.
  Status RefreshStatementLocked();
  void KeepStatement(std::string signed_statement, v1::OrgStatement statement);
  // Whether the newest statement held authorises this server's key at `now` (true before any statement:
  // then no device is enrolled). A server the organisation revoked or let expire signs nothing more.
  bool AuthorisedNow(int64_t now) const;
  ServerLimits limits_;
  int64_t (*clock_)();
  ServerMetrics metrics_;
};

}  // namespace dala::server
