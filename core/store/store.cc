// Store lifecycle: create, open, migrations, credential change, wipe, recipients and policy.
#include "store/outbox_state.h"
#include "store/store.h"

#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/clock.h"
#include "base/fsutil.h"
#include "crypto/store_key_file.h"
#include "store/schema.h"
#include "base/failpoint.h"

namespace dala {

namespace {


constexpr char kMetaDeviceKey[] = "device_secret_key";
constexpr char kMetaCounter[] = "counter";
constexpr char kMetaDeleteAfterDelivery[] = "delete_after_delivery";
constexpr char kMetaCreated[] = "created_ms";

Status PutMeta(db::Db& db, const char* key, std::span<const uint8_t> value) {
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)"));
  st.BindText(1, key).Bind(2, value);
  return st.Run();
}

Status PutMetaInt(db::Db& db, const char* key, int64_t value) {
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)"));
  st.BindText(1, key).Bind(2, value);
  return st.Run();
}

}  // namespace

Store::Store(std::string dir, db::Db db, crypto::SigningKey device, const StoreOptions& options)
    : dir_(std::move(dir)), db_(std::move(db)), device_(std::move(device)), options_(options), clock_(SystemNowMs) {}

Store::~Store() = default;

void Store::set_clock(Clock clock) {
  std::lock_guard lock(mu_);
  clock_ = std::move(clock);
}


Result<std::unique_ptr<Store>> Store::Create(const std::string& dir, const Credential& cred,
                                             const StoreOptions& options) {
  if (!InitSodium()) return Status(Code::kInternal, "libsodium could not start");
  DALA_RETURN_IF_ERROR(ValidateCredential(cred));
  if (cred.has_passphrase()) DALA_RETURN_IF_ERROR(ValidateKdfParams(options.kdf));
  DALA_RETURN_IF_ERROR(ValidateFileNames(options.names));
  if (dir.empty()) return Status(Code::kInvalidArgument, "the store directory must not be empty");
  if (Status st = fs::EnsureDirectory(dir); !st.ok()) {
    if (st.code() == Code::kNotFound)
      return Status(Code::kNotFound, "cannot create the store: the parent of '" + dir + "' does not exist");
    return st;
  }
  StorePaths paths(dir, options.names);
  if (fs::Exists(paths.key())) return Status(Code::kExists, "'" + dir + "' already holds a Dala store");
  // The key file is written last and marks the store as existing: anything else here is left over from an
  // interrupted create or wipe, unreadable without its key, and safe to remove.
  for (const auto& f : paths.Files()) DALA_RETURN_IF_ERROR(fs::RemoveFile(f));
  DALA_RETURN_IF_ERROR(SweepWipes(dir, options.names));

  SecretBuffer db_key(32);
  randombytes_buf(db_key.data(), db_key.size());
  DALA_RETURN_IF_ERROR(CreateDatabase(paths.db(), db_key, options.delete_after_delivery));
  Failpoint("create.before_key");
  DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> keyfile, NewStoreKeyFile(db_key, cred, options.kdf));
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(paths.key(), keyfile));
  DALA_ASSIGN_OR_RETURN(StoreLock lock, StoreLock::Shared(dir));
  DALA_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenWithKey(dir, db_key, options));
  store->lock_ = std::move(lock);
  return store;
}

Status Store::CreateDatabase(const std::string& path, const SecretBuffer& db_key, bool delete_after_delivery) {
  crypto::SigningKey device = crypto::GenerateSigningKey();
  // SQLite would create the file 0644; the -wal and -shm files take the database file's mode.
  DALA_RETURN_IF_ERROR(fs::CreatePrivateFile(path));
  Failpoint("create_database.empty_file");
  DALA_ASSIGN_OR_RETURN(db::Db db, db::Db::Open(path, db_key, /*create=*/true));
  // Nothing names this file yet (no key file, or a key file still holding another key): its schema and
  // first rows are written without a sync per step, and made durable once, by the checkpoint below. A crash
  // before that leaves a file that opens as no store, which creation and FinishReplacement both discard.
  DALA_RETURN_IF_ERROR(db.Exec("PRAGMA synchronous = OFF;"));
  DALA_RETURN_IF_ERROR(MigrateStoreSchema(db));
  db::Txn txn(db);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_RETURN_IF_ERROR(PutMeta(db, kMetaDeviceKey, device.secret_key.span()));
  DALA_RETURN_IF_ERROR(PutMetaInt(db, kMetaCounter, 0));
  DALA_RETURN_IF_ERROR(PutMetaInt(db, kMetaDeleteAfterDelivery, delete_after_delivery ? 1 : 0));
  DALA_RETURN_IF_ERROR(PutMetaInt(db, kMetaCreated, SystemNowMs()));
  DALA_RETURN_IF_ERROR(txn.Commit());
  DALA_RETURN_IF_ERROR(db.Exec("PRAGMA synchronous = FULL;"));  // the checkpoint syncs the log, then the file
  DALA_RETURN_IF_ERROR(db.CheckpointTruncate());  // whole in its file before anything names it
  // And synced, whatever the checkpoint found left to copy (an automatic one may have copied pages earlier,
  // unsynced).
  DALA_RETURN_IF_ERROR(fs::SyncFile(path));
  return db.CheckFileEncrypted();
}

Result<std::unique_ptr<Store>> Store::Open(const std::string& dir, const Credential& cred,
                                           const StoreOptions& options) {
  DALA_RETURN_IF_ERROR(ValidateCredential(cred));
  DALA_RETURN_IF_ERROR(ValidateFileNames(options.names));
  if (dir.empty()) return Status(Code::kInvalidArgument, "the store directory must not be empty");
  StoreLock lock;
  if (fs::IsDirectory(dir)) {
    DALA_ASSIGN_OR_RETURN(lock, StoreLock::Shared(dir));
  }
  DALA_ASSIGN_OR_RETURN(Unlocked unlocked, Unlock(StorePaths(dir, options.names), cred, options));
  DALA_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenWithKey(dir, unlocked.db_key, options));
  store->lock_ = std::move(lock);
  DALA_RETURN_IF_ERROR(SweepWipes(dir, options.names));
  return store;
}

Result<std::unique_ptr<Store>> Store::OpenWithKey(const std::string& dir, const SecretBuffer& db_key,
                                                  const StoreOptions& options) {
  StorePaths paths(dir, options.names);
  if (!fs::Exists(paths.db()))
    return Status(Code::kCorrupt, "the store's database file is missing; restore it from a backup");
  DALA_ASSIGN_OR_RETURN(db::Db db, db::Db::Open(paths.db(), db_key, /*create=*/false, db::Db::Sqlcipher3::kConvert));
  DALA_RETURN_IF_ERROR(db.CheckFileEncrypted());
  DALA_RETURN_IF_ERROR(MigrateStoreSchema(db));

  std::optional<crypto::SigningKey> device;
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("SELECT value FROM meta WHERE key = ?"));
    st.BindText(1, kMetaDeviceKey);
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status(Code::kCorrupt, "the store has no device identity; it is damaged");
    DALA_ASSIGN_OR_RETURN(device, crypto::SigningKeyFromSecret(st.BlobView(0)));
  }
  // Anything in flight when a previous process died is pending again.
  DALA_RETURN_IF_ERROR(db.Exec("UPDATE outbox SET state = " DALA_OUTBOX_PENDING " WHERE state = " DALA_OUTBOX_IN_FLIGHT ";"));
  (void)fs::RemoveFile(paths.key_tmp());
  std::unique_ptr<Store> store(new Store(dir, std::move(db), std::move(*device), options));
  {
    // Attachment files without a row: a capture cut short by a crash, or a removal interrupted after commit.
    std::lock_guard lock(store->mu_);
    DALA_RETURN_IF_ERROR(store->SweepAttachmentsLocked());
  }
  return store;
}

Status Store::SetDeleteAfterDelivery(bool enabled) {
  std::lock_guard lock(mu_);
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_RETURN_IF_ERROR(PutMetaInt(db_, kMetaDeleteAfterDelivery, enabled ? 1 : 0));
  if (enabled) DALA_RETURN_IF_ERROR(PurgeDeliveredLocked(nullptr, std::nullopt));
  DALA_RETURN_IF_ERROR(txn.Commit());
  SweepAfterCommitLocked();
  return Status::Ok();
}

Result<bool> Store::DeleteAfterDeliveryLocked() {
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("SELECT value FROM meta WHERE key = ?"));
  st.BindText(1, kMetaDeleteAfterDelivery);
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  return row && st.Int(0) != 0;
}

Status Store::Check() {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("PRAGMA quick_check;"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row || st.Text(0) != "ok")
    return {Code::kCorrupt, "the store database is damaged; export what still reads and restore from a backup"};
  st = db::Stmt();
  // Every commit waits for the disk (only a batch's claim does not, and puts it back: NextBatch).
  DALA_ASSIGN_OR_RETURN(db::Stmt sync, db_.Prepare("PRAGMA synchronous;"));
  DALA_ASSIGN_OR_RETURN(row, sync.Step());
  if (!row || sync.Int(0) != 2) return {Code::kInternal, "the store's commits are not synced to disk"};
  return Status::Ok();
}

Status Store::SetRecipients(const std::string& destination, const std::vector<crypto::PublicKey>& keys) {
  std::lock_guard lock(mu_);
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_RETURN_IF_ERROR(SetRecipientsLocked(destination, keys));
  return txn.Commit();
}

Status Store::SetRecipientsLocked(const std::string& destination, const std::vector<crypto::PublicKey>& keys,
                                  bool seal_existing) {
  DALA_RETURN_IF_ERROR(ValidateText("the destination name", destination, 128, false));
  std::vector<crypto::PublicKey> unique;
  for (const auto& k : keys) {
    if (!crypto::IsUsableBoxPublicKey(k))
      return {Code::kInvalidArgument, "a recipient public key is not a usable X25519 key"};
    if (std::find(unique.begin(), unique.end(), k) == unique.end()) unique.push_back(k);
  }
  int64_t now = Now();
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt del, db_.Prepare("DELETE FROM recipients WHERE destination = ?"));
    del.BindText(1, destination);
    DALA_RETURN_IF_ERROR(del.Run());
    DALA_ASSIGN_OR_RETURN(db::Stmt ins,
                          db_.Prepare("INSERT OR IGNORE INTO recipients(destination, public_key) VALUES(?, ?)"));
    for (const auto& k : unique) {
      ins.BindText(1, destination).Bind(2, k);
      DALA_RETURN_IF_ERROR(ins.Run());
      ins.Reset();
    }
  }
  if (unique.empty() || !seal_existing) return Status::Ok();
  // Seal every sealed version not yet queued for this destination.
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT r.id, r.version, r.priority, r.body FROM reports r WHERE r.sealed = 1 AND r.purged = 0 AND "
      "NOT EXISTS (SELECT 1 FROM outbox o WHERE o.destination = ? AND o.report_id = r.id AND "
      "o.version = r.version) ORDER BY r.seq"));
  st.BindText(1, destination);
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ReportId id{};
    auto idv = st.BlobView(0);
    if (idv.size() != id.size()) return Status(Code::kCorrupt, "a report id in the store is damaged");
    std::memcpy(id.data(), idv.data(), id.size());
    DALA_RETURN_IF_ERROR(EnqueueLocked(destination, unique, id, static_cast<uint32_t>(st.Int(1)),
                                       static_cast<int32_t>(st.Int(2)), st.BlobView(3), now));
  }
  return Status::Ok();
}

Result<Store::Destinations> Store::DestinationsLocked() {
  Destinations out;
  // A destination joined with a 0.1 invite (a server row without an organisation key) gets nothing new:
  // nothing is ever sent there.
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT r.destination, r.public_key FROM recipients r LEFT JOIN servers s ON s.destination = r.destination "
      "WHERE s.destination IS NULL OR length(s.organisation_key) = 32 ORDER BY r.destination"));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    std::string dest = st.Text(0);
    auto pk = st.BlobView(1);
    if (pk.size() != 32) return Status(Code::kCorrupt, "a recipient key in the store is damaged");
    if (out.empty() || out.back().first != dest) out.emplace_back(dest, std::vector<crypto::PublicKey>{});
    crypto::PublicKey k;
    std::memcpy(k.data(), pk.data(), 32);
    out.back().second.push_back(k);
  }
  return out;
}

}  // namespace dala
