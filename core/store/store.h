// Store: one encrypted report store in one directory. Lifecycle (create, open, change credential,
// wipe), reports (drafts, sealing, versions) and the durable outbox. All public methods are
// thread-safe: calls are serialised by one mutex. Layout and schema: docs/storage-format.md.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/id.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"
#include "base/db.h"
#include "store/outbox_state.h"
#include "crypto/keyfile.h"
#include "format/report.h"
#include "base/status.h"
#include "store/store_lock.h"
#include "store/store_paths.h"

namespace dala {

namespace attachment {
class Writer;
class Reader;
}  // namespace attachment


// One attachment as the store records it (never the key).
struct AttachmentInfo {
  AttachmentId id{};
  ReportId report_id{};
  uint32_t version = 0;            // the draft version it was added to; later versions carry it on
  std::string mime;
  uint64_t size = 0;               // plaintext bytes
  crypto::Hash plaintext_hash{};
  uint64_t ciphertext_size = 0;
  crypto::Hash ciphertext_hash{};  // the chunk-tree root
  int64_t created_ms = 0;
};

class Store;

// Captures one attachment into a draft: plaintext in, ciphertext to a random file in the store. Nothing
// is recorded until Finish; an abandoned capture leaves nothing behind (its file is removed, or swept at
// the next open after a crash). Not thread-safe; must not outlive its store.
class AttachmentCapture {
 public:
  ~AttachmentCapture();
  Status Write(std::span<const uint8_t> data);
  Result<AttachmentInfo> Finish();

 private:
  friend class Store;
  AttachmentCapture(Store& store, ReportId report, uint32_t version, std::string file,
                    std::unique_ptr<attachment::Writer> writer);
  Store& store_;
  ReportId report_;
  uint32_t version_;
  std::string file_;
  std::unique_ptr<attachment::Writer> writer_;
};

// Where the encrypted file of an attachment is, for uploads.
struct AttachmentFile {
  std::string path;
  uint64_t ciphertext_size = 0;
};

struct StoreOptions {
  KdfParams kdf;  // the Argon2id cost: the key file does not record it, so every open must pass the same
  StoreFileNames names;
  bool delete_after_delivery = false;  // used at create
  uint32_t backoff_base_ms = 5000;
  uint32_t backoff_max_ms = 3600000;
};

struct ReportInfo {
  ReportId id{};
  uint32_t version = 0;
  ReportState state = ReportState::kDraft;
  int64_t created_ms = 0;
  int64_t updated_ms = 0;
  std::string form;
};

// Where a page of the report list ends: the next page starts after it. Reports are ordered newest first
// by (created_ms, id), which a report keeps through all its versions, so a report edited between two pages
// neither moves nor repeats.
struct ReportCursor {
  int64_t created_ms = 0;
  ReportId id{};
  // As an app holds it: 48 hex digits. Decode refuses anything else (kInvalidArgument).
  std::string Encode() const;
  static Result<ReportCursor> Decode(std::string_view text);
};

// Which reports a page lists. Every filter is optional.
struct ReportQuery {
  size_t limit = 0;                    // the most reports on the page, 1 to kMaxPage; 0: every report
  std::optional<ReportCursor> after;   // from the newest when empty
  uint32_t states = 0;                 // reports whose latest version is in one of these (1 << ReportState); 0: any
  std::string form;                    // "name": every version of that form; "name/version": that one; "": any
  static constexpr size_t kMaxPage = 1000;
};

struct ReportPage {
  std::vector<ReportInfo> items;
  std::optional<ReportCursor> next;  // set when more reports match after this page
};

struct OutboxItem {
  ReportId id{};
  uint32_t version = 0;
  int32_t priority = 0;
  uint32_t attempts = 0;
  std::vector<uint8_t> envelope;
};

// The server of an organisation this store delivers to, recorded from an invite by Join.
struct ServerInfo {
  std::string destination;            // the outbox destination: "org-" + first 8 bytes of the root key in hex
  crypto::PublicKey server_key{};
  crypto::PublicKey organisation_key{};  // the root
  bool legacy = false;                // joined with a 0.1 invite: nothing is sent until a join of its organisation
  std::vector<std::string> urls;
  bool addresses_equivalent = false;  // the invite lets any address stand in for any other
  std::string invite;                 // the SignedInvite bytes, presented at enrolment
  std::string proof;                  // the enrolment proof for this device at this server (made at join)
  std::string organisation;           // the statement's name
  std::string fingerprint;            // of the root (protocol::Fingerprint)
  std::string tls_pin;
  bool enrolled = false;
  std::string last_error;
  uint64_t statement_version = 0;     // of the organisation statement the store holds
  bool authorised = false;            // that statement authorises server_key now
  v1::OrgStatement statement;         // that statement (empty for a 0.1 server)
  std::string log_witness;            // serialized v1::LogWitness: the server's log heads this phone holds
};

// A receipt the store keeps for a delivered version, checked against the server key from the invite.
struct ReceiptInfo {
  std::string destination;
  ReportId id{};
  uint32_t version = 0;
  std::vector<uint8_t> receipt;  // the SignedReceipt bytes
  bool verified = false;         // signed by the destination's server key, for this id and version
  uint64_t sequence = 0;         // when verified: the server's sequence number and time
  int64_t server_time_ms = 0;
};

// What one verified answer of a server means for one queued version (Store::RecordOutcomes).
struct OutboxOutcome {
  enum class Kind { kDelivered, kRetry, kRejected };
  Kind kind = Kind::kRetry;
  ReportId id{};
  uint32_t version = 0;
  std::vector<uint8_t> receipt;  // kDelivered: the receipt, verified by the caller
  std::string reason;            // kRetry, kRejected
};

struct OutboxStats {
  uint64_t pending = 0, in_flight = 0, delivered = 0, rejected = 0;
  int64_t next_attempt_ms = 0;
};

// The retry reason the sync engine records when no server could be reached.
inline constexpr char kOfflineReason[] = "offline";

// Re-key progress: the database copied under the new key (0 of 1, then 1 of 1), then the drafts'
// attachments (plaintext bytes encrypted again, of the total).
enum class RekeyPhase { kDatabase = 1, kAttachments = 2 };
using RekeyProgressFn = std::function<void(RekeyPhase phase, uint64_t done, uint64_t total)>;

class Store {
 public:
  using Clock = std::function<int64_t()>;  // Unix milliseconds

  static Result<std::unique_ptr<Store>> Create(const std::string& dir, const Credential& cred,
                                               const StoreOptions& options);
  // Opening with the duress passphrase (SetDuress) destroys the store's key and its data, and opens a new,
  // empty store under that passphrase: the same work, the same answer as any open.
  static Result<std::unique_ptr<Store>> Open(const std::string& dir, const Credential& cred,
                                             const StoreOptions& options);
  // Re-wraps the database key under `new_cred` (instant: the database is not rewritten). The old key
  // file's bytes are overwritten. A duress passphrase stays set (unless the kind of credential changes);
  // `new_cred` may not be the duress passphrase.
  static Status ChangeCredential(const std::string& dir, const Credential& old_cred, const Credential& new_cred,
                                 const StoreOptions& options);
  // Sets (replaces) the duress passphrase. The store's credential must include a passphrase; the duress
  // one is used with the same platform key if there is one. kInvalidArgument if it opens the store.
  static Status SetDuress(const std::string& dir, const Credential& cred, const SecretBuffer& duress_passphrase,
                          const StoreOptions& options);
  static Status ClearDuress(const std::string& dir, const Credential& cred, const StoreOptions& options);
  // Re-keys a closed store: every attachment file no signature binds is encrypted again under a new file
  // key, the database is copied under a new key, and the key file then wraps that key under `new_cred`.
  // Killed anywhere, the store opens with one credential or the other and loses nothing; run again, it
  // goes on where it stopped. Afterwards the old key file with the old credential opens none of the files.
  static Status Rekey(const std::string& dir, const Credential& old_cred, const Credential& new_cred,
                      const StoreOptions& options, const RekeyProgressFn& progress = nullptr);
  // Panic wipe, no credential: `destroy_platform_key` (if any) runs first; then the key file's bytes are
  // overwritten and it goes, then everything else. Everything is attempted even if a step fails.
  // The files are moved out of the store's way (a rename each) and removed; past a budget of 60 ms the
  // removal goes on on a thread of its own, and the wipe returns. The directory goes too if that leaves it
  // empty within the budget.
  static Status Wipe(const std::string& dir, const StoreFileNames& names = {},
                     const std::function<Status()>& destroy_platform_key = nullptr);
  // Removes, on a thread of its own, what a wipe in `dir` moved away and did not finish removing (its
  // process ended first), and what a duress open moved away. Create and Open call it.
  static Status SweepWipes(const std::string& dir, const StoreFileNames& names);

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  crypto::PublicKey device_key() const { return device_.public_key; }
  void set_clock(Clock clock);  // tests
  Status SetRecipients(const std::string& destination, const std::vector<crypto::PublicKey>& keys);
  Status SetDeleteAfterDelivery(bool enabled);
  Status Check();

  // Servers (sync). Join verifies the invite (signed by the organisation's root, its statement by the same
  // root), records the server and the organisation's recipients; enrolment happens at the first contact.
  // The destination is the organisation's: another invite of the same root updates its server, one of
  // another root is another organisation, which gets only what is sealed from now on unless
  // `include_existing` (then every sealed report is sealed to it at once, in the same transaction).
  Result<ServerInfo> Join(std::string_view invite_text, bool include_existing = false);
  Result<std::vector<ServerInfo>> Servers();
  // A statement of the destination's organisation received from a server: kept if it verifies under the
  // organisation's root and is newer; its recipients seal what is sealed from now on. Returns the version
  // held afterwards. kVerify: not that organisation's.
  Result<uint64_t> UpdateStatement(const std::string& destination, std::string_view signed_statement);
  // What the phone knows of the server's log (sync::LogWitness), replaced whole.
  Status SetLogWitness(const std::string& destination, std::string_view witness);
  Status SetServerState(const std::string& destination, bool enrolled, std::string_view last_error);
  // Signs a sync request with the device key (the secret never leaves the store). Fills device_key.
  std::string SignRequest(v1::Request& request);
  // Every receipt kept, oldest first, each verified again against its server's key.
  Result<std::vector<ReceiptInfo>> ListReceipts();

  // Reports.
  Result<Report> CreateDraft(const std::string& form);
  Result<Report> Get(const ReportId& id, std::optional<uint32_t> version = std::nullopt);
  Result<Report> Edit(const ReportId& id);
  Status SaveDraft(Report& report);
  Status Seal(Report& report);
  Status SealMany(const std::vector<ReportId>& ids);
  Status DeleteDraft(const ReportId& id);
  // Every report's latest version, newest first.
  Result<std::vector<ReportInfo>> List();
  // A page of them, newest first (ReportQuery). kInvalidArgument for a limit over kMaxPage, a state
  // outside ReportState, or a form name that cannot exist.
  Result<ReportPage> ListPage(const ReportQuery& query);

  // Attachments. Added to the report's draft (the latest version must be a draft); a sealed version
  // carries every attachment added up to it. Removing works on attachments of the draft only.
  Result<std::unique_ptr<AttachmentCapture>> CaptureAttachment(const ReportId& id, const std::string& mime);
  Result<AttachmentInfo> ImportAttachment(const ReportId& id, const std::string& path, const std::string& mime);
  Result<std::vector<AttachmentInfo>> Attachments(const ReportId& id, std::optional<uint32_t> version = std::nullopt);
  Result<std::unique_ptr<attachment::Reader>> OpenAttachment(const AttachmentId& id);
  Status RemoveAttachment(const AttachmentId& id);
  Result<AttachmentFile> LocalAttachmentFile(const AttachmentId& id);

  // Outbox.
  Result<std::vector<OutboxItem>> NextBatch(const std::string& destination, size_t max_items, size_t max_bytes);
  Status MarkDelivered(const std::string& destination, const ReportId& id, uint32_t version,
                       std::span<const uint8_t> receipt);
  Status MarkRetry(const std::string& destination, const ReportId& id, uint32_t version, std::string_view reason);
  Status MarkRejected(const std::string& destination, const ReportId& id, uint32_t version,
                      std::string_view reason);
  // Every outcome of one answer in one transaction, all or none: each as MarkDelivered, MarkRetry or
  // MarkRejected records it (the first error rolls all of them back).
  // `log_witness`, when not null, is stored for the destination in the same transaction (SetLogWitness).
  Status RecordOutcomes(const std::string& destination, std::span<const OutboxOutcome> outcomes,
                        const std::string* log_witness = nullptr);
  // Gives back items NextBatch handed out that were never sent: pending as before, their attempt not counted.
  Status Unclaim(const std::string& destination, std::span<const OutboxItem> items);
  // Back to pending and due at once, without backoff (e.g. the batch was too large, not the item at fault).
  Status Requeue(const std::string& destination, const ReportId& id, uint32_t version);
  Result<OutboxStats> Stats(const std::string& destination);
  // Connectivity returned: items that failed only because no server could be reached are due now.
  Status RetryOfflineNow();
  // The user asked to send now: every queued report is due at once, whatever its backoff.
  Status RetryNow();
  // Queues a rejected report again: every rejected version, at every destination, is pending and due now,
  // its envelope as it was (a rejection keeps everything). kNotFound if no version of it is rejected.
  Status RetryRejected(const ReportId& id);
  Result<std::vector<uint8_t>> Receipt(const std::string& destination, const ReportId& id, uint32_t version);

 private:
  Store(std::string dir, db::Db db, crypto::SigningKey device, const StoreOptions& options);
  static Result<std::unique_ptr<Store>> OpenWithKey(const std::string& dir, const SecretBuffer& db_key,
                                                    const StoreOptions& options);
  // store_keys.cc: the key file's life.
  struct Unlocked {
    SecretBuffer db_key;
    SecretBuffer kek;
    std::vector<uint8_t> file;  // the key file as it is now (format 2)
  };
  // Reads the key file with `cred`: upgrades a 0.1 key file, carries out a duress open, and finishes (or
  // discards) a database replacement a crash interrupted.
  static Result<Unlocked> Unlock(const StorePaths& paths, const Credential& cred, const StoreOptions& options);
  // Writes a new, empty database at `path` under `db_key` (a new device identity).
  static Status CreateDatabase(const std::string& path, const SecretBuffer& db_key, bool delete_after_delivery);
  // After the key file names the key of db_next: db_next replaces db (the old one's bytes overwritten
  // first if `overwrite_old`). Idempotent.
  static Status FinishReplacement(const StorePaths& paths, const SecretBuffer& db_key, bool overwrite_old);
  // The end of a replacement known to have committed: db_next, whole and checkpointed, takes db's place.
  static Status PromoteReplacement(const StorePaths& paths, bool overwrite_old);

  // *Locked: the caller holds mu_ (and, where they write, an open transaction).
  Result<uint64_t> NextCounterLocked();
  Status InsertDraftLocked(Report& report, int64_t now);
  Result<Report> GetLocked(const ReportId& id, std::optional<uint32_t> version);
  Result<ReportState> StateLocked(const ReportId& id, uint32_t version);
  using Destinations = std::vector<std::pair<std::string, std::vector<crypto::PublicKey>>>;
  Status SealLocked(Report& report, int64_t now, const Destinations& destinations);
  // A seal in three steps (store_reports.cc): what it needs read from the database, then signed and sealed
  // with no database (on several threads for a batch), then written.
  struct SealJob {
    struct Queued {
      std::string destination;
      const std::vector<crypto::PublicKey>* recipients = nullptr;
      std::vector<v1::AttachmentManifest> attachments;
      std::string envelope;
    };
    Report report;              // its content moved to `content`
    ReportId id{};
    v1::ReportContent content;  // as signed
    std::string signed_bytes;
    crypto::Hash hash{};
    std::vector<Queued> queued;
    Status status;
  };
  Result<SealJob> PrepareSealLocked(Report report, int64_t now, const Destinations& destinations);
  void SignAndSeal(SealJob& job) const;  // no database, no lock needed: any thread; never throws
  void SignAndSealOrThrow(SealJob& job) const;
  Status WriteSealLocked(SealJob& job, int64_t now);
  Status InsertOutboxLocked(const std::string& destination, const ReportId& id, uint32_t version, int32_t priority,
                            const std::string& envelope, int64_t now);
  // Records the destination's recipients; with `seal_existing`, seals every sealed version not yet queued
  // for it.
  Status SetRecipientsLocked(const std::string& destination, const std::vector<crypto::PublicKey>& keys,
                             bool seal_existing = true);
  Status EnqueueLocked(const std::string& destination, const std::vector<crypto::PublicKey>& recipients,
                       const ReportId& id, uint32_t version, int32_t priority, std::span<const uint8_t> signed_bytes,
                       int64_t now);
  Result<Destinations> DestinationsLocked();
  Status PurgeDeliveredLocked(const ReportId* only_id, std::optional<uint32_t> only_version);
  // Removes attachment files no row refers to (a crash during capture, a purge, a deleted draft), except
  // captures in progress.
  Status SweepAttachmentsLocked();
  // Inside a transaction: deletes the rows of attachments no unpurged version needs any more. Their files
  // go only after the commit (SweepAfterCommitLocked): removed before it, a rollback would keep rows
  // whose files are gone.
  Status DropUnusedAttachmentsLocked();
  void SweepAfterCommitLocked();
  Status FinishCapture(AttachmentCapture& capture, Result<AttachmentInfo>* out);
  void EndCapture(const std::string& file);
  Status FillAttachmentsLocked(const ReportId& id, uint32_t version, v1::ReportContent& content, bool with_keys);
  Status AttachmentManifestsLocked(const ReportId& id, uint32_t version, std::vector<v1::AttachmentManifest>* out);
  std::string AttachmentDir() const;
  friend class AttachmentCapture;
  Result<bool> DeleteAfterDeliveryLocked();
  Status MarkLocked(const std::string& destination, const ReportId& id, uint32_t version, OutboxState state,
                    std::string_view reason, int64_t next_attempt_ms);
  Status UpdateInFlightLocked(const std::vector<int64_t>& seqs, int64_t now);
  Result<std::vector<OutboxItem>> ClaimLocked(const std::string& destination, size_t max_items, size_t max_bytes);
  Status MarkDeliveredManyLocked(const std::string& destination, std::span<const OutboxOutcome* const> items,
                                 bool purge);
  // Inside the caller's transaction (`purge`: the store deletes content after delivery).
  Status MarkDeliveredLocked(const std::string& destination, const ReportId& id, uint32_t version,
                             std::span<const uint8_t> receipt, bool purge);
  Status MarkRetryLocked(const std::string& destination, const ReportId& id, uint32_t version, std::string_view reason);
  Status MarkRejectedLocked(const std::string& destination, const ReportId& id, uint32_t version,
                            std::string_view reason);
  int64_t Now() const { return clock_(); }

  std::mutex mu_;
  StoreLock lock_;  // shared, for the handle's lifetime (Open, Create)
  std::string dir_;
  db::Db db_;
  crypto::SigningKey device_;
  StoreOptions options_;
  Clock clock_;
  std::set<std::string> capturing_;  // file names of captures in progress (under mu_)
  bool sweep_pending_ = false;       // under mu_
  bool erase_pending_ = false;       // under mu_: erased rows whose old page images are still in the WAL
};


}  // namespace dala
