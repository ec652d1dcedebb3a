// The store's key file over its life: unlocking (with the upgrade of 0.1 key files and the duress open),
// credential changes, the duress passphrase, and replacing the database under a new key.
// Formats and the order of steps: docs/storage-format.md.
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

#include "base/failpoint.h"
#include "base/fsutil.h"
#include "crypto/attachment_file.h"
#include "crypto/store_key_file.h"
#include "store/store.h"
#include "store/store_trash.h"

namespace dala {
namespace {

Result<std::vector<uint8_t>> ReadKeyFile(const StorePaths& paths) {
  auto file = fs::ReadFile(paths.key(), 4096);
  if (file.ok()) return file;
  if (file.status().code() == Code::kNotFound)
    return Status(Code::kNotFound,
                  "no Dala store at '" + paths.dir() + "' (never created, or wiped); create one with init");
  if (file.status().code() == Code::kCorrupt)
    return Status(Code::kCorrupt, "the key file is damaged; restore it from a backup");
  return file.status();
}

// The credential a duress passphrase stands for: the same kind as the store's, with the same platform key.
Result<Credential> DuressCredential(const Credential& cred, const SecretBuffer& passphrase) {
  if (!cred.has_passphrase())
    return Status(Code::kInvalidArgument, "a duress passphrase needs a store protected by a passphrase");
  Credential d;
  d.kind = cred.kind;
  d.bytes = SecretBuffer(passphrase.data(), passphrase.size());
  if (cred.kind == CredentialKind::kPassphraseAndKey) d.key = SecretBuffer(cred.key.data(), cred.key.size());
  DALA_RETURN_IF_ERROR(ValidateCredential(d));
  return d;
}

// Removes a database file and its companions.
Status RemoveDatabase(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) DALA_RETURN_IF_ERROR(fs::RemoveFile(path + suffix));
  return Status::Ok();
}

}  // namespace

Result<Store::Unlocked> Store::Unlock(const StorePaths& paths, const Credential& cred, const StoreOptions& options) {
  if (!InitSodium()) return Status(Code::kInternal, "libsodium could not start");
  if (!fs::IsDirectory(paths.dir()))
    return Status(Code::kNotFound,
                  "no Dala store at '" + paths.dir() + "' (never created, or wiped); create one with init");
  DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> file, ReadKeyFile(paths));
  Unlocked out;
  // A 0.1 key file is rewritten under an exclusive flock on it: processes opening the store at once rewrite
  // it once (the others read the new file once the lock is theirs).
  struct LegacyLock {
    int fd = -1;
    ~LegacyLock() {
      if (fd >= 0) ::close(fd);
    }
  } legacy_lock;
  if (IsLegacyKeyFile(file)) {
    legacy_lock.fd = ::open(paths.key().c_str(), O_RDONLY | O_CLOEXEC);
    if (legacy_lock.fd < 0 || flock(legacy_lock.fd, LOCK_EX) != 0)
      return fs::FromErrno(errno, "cannot lock", paths.key());
    DALA_ASSIGN_OR_RETURN(file, ReadKeyFile(paths));
  }
  if (IsLegacyKeyFile(file)) {
    // Dala 0.1: unwrapped with the cost it records, rewritten in format 2 with the options' cost.
    if (cred.kind == CredentialKind::kPassphraseAndKey)
      return Status(Code::kWrongKey, "wrong passphrase or platform key (or a damaged key file)");
    DALA_ASSIGN_OR_RETURN(out.db_key, UnwrapSecret(KeyPurpose::kStoreDatabase, file, cred));
    DALA_ASSIGN_OR_RETURN(out.file, NewStoreKeyFile(out.db_key, cred, options.kdf));
    DALA_ASSIGN_OR_RETURN(OpenedStoreKey again, OpenStoreKeyFile(out.file, cred, options.kdf));
    out.kek = std::move(again.kek);
    DALA_RETURN_IF_ERROR(fs::ReplaceFileShreddingOld(paths.key(), out.file));
  } else {
    DALA_ASSIGN_OR_RETURN(OpenedStoreKey opened, OpenStoreKeyFile(file, cred, options.kdf));
    out.kek = std::move(opened.kek);
    if (opened.slot == KeySlot::kDuress) {
      // The duress passphrase: a new, empty database under a new key replaces the store. The key file
      // is the commit point: once it holds only the new key (under the duress passphrase's KEK, in slot
      // 0, slot 1 random again), the old database key exists nowhere in the file.
      out.db_key = SecretBuffer(32);
      randombytes_buf(out.db_key.data(), out.db_key.size());
      DALA_RETURN_IF_ERROR(RemoveDatabase(paths.db_next()));
      DALA_RETURN_IF_ERROR(CreateDatabase(paths.db_next(), out.db_key, options.delete_after_delivery));
      Failpoint("duress.before_key");
      out.file = ClearSlot(SealSlot(file, KeySlot::kStore, out.kek, out.db_key), KeySlot::kDuress);
      DALA_RETURN_IF_ERROR(fs::ReplaceFileShreddingOld(paths.key(), out.file));
      Failpoint("duress.key_replaced");
      // A duress open must take the time of any open, whatever the size of what it destroys. So the old
      // database and attachment files are neither overwritten nor freed here (both take time in proportion
      // to their size; their key is gone, which is what protects them): they are moved away, a rename each,
      // and removed on a thread of their own. Nor is either database opened again to find which one the key
      // file names (FinishReplacement's work after a crash): db_next was made whole and checkpointed above,
      // before the key file named it.
      Status moved;
      const std::string& d = options.names.database;
      std::string bin = trash::MoveAway(paths.dir(), d, {d, d + "-wal", d + "-shm", d + "-journal", options.names.media},
                                        &moved);
      DALA_RETURN_IF_ERROR(moved);
      Failpoint("duress.moved_away");
      DALA_RETURN_IF_ERROR(PromoteReplacement(paths, /*overwrite_old=*/false));
      if (!bin.empty())
        trash::RemoveInBackground(paths.dir(), {bin}, /*remove_dir=*/false, std::chrono::steady_clock::now());
      return out;
    } else {
      out.db_key = std::move(opened.secret);
      out.file = std::move(file);
    }
  }
  DALA_RETURN_IF_ERROR(FinishReplacement(paths, out.db_key, /*overwrite_old=*/true));
  return out;
}

namespace {

// Whether the database at `path` opens with `key` and is a whole store: its schema written and its device
// identity in it (an empty or half-written file, or one a crash rolled back to nothing, is not).
// `sqlcipher3`: the store's own database converts (a 0.1 store); the replacement never came from 0.1.
Result<bool> IsWholeStore(const std::string& path, const SecretBuffer& key, db::Db::Sqlcipher3 sqlcipher3) {
  if (!fs::Exists(path)) return false;
  auto db = db::Db::Open(path, key, /*create=*/false, sqlcipher3);
  if (!db.ok()) {
    if (db.status().code() == Code::kCorrupt || db.status().code() == Code::kWrongKey) return false;
    return db.status();
  }
  auto version = db->Prepare("PRAGMA user_version;");
  if (!version.ok()) return false;
  auto row = version->Step();
  if (!row.ok() || !*row || version->Int(0) < 1) return false;
  version = db::Stmt();
  auto device = db->Prepare("SELECT length(value) FROM meta WHERE key = 'device_secret_key'");
  if (!device.ok()) return false;
  row = device->Step();
  return row.ok() && *row && device->Int(0) == 64;
}

}  // namespace

// db_next exists after a duress open or a re-key was cut short. The key file decides: while the store's
// database still opens with the key it holds, the replacement never committed and db_next goes (whatever
// it holds: nothing, half a copy, or a whole one). Otherwise the key file holds db_next's key: once
// db_next is a whole store under it, it takes the database's place.
Status Store::FinishReplacement(const StorePaths& paths, const SecretBuffer& db_key, bool overwrite_old) {
  if (!fs::Exists(paths.db_next())) return Status::Ok();
  DALA_ASSIGN_OR_RETURN(bool old_opens, IsWholeStore(paths.db(), db_key, db::Db::Sqlcipher3::kConvert));
  if (old_opens) return RemoveDatabase(paths.db_next());
  DALA_ASSIGN_OR_RETURN(bool next_whole, IsWholeStore(paths.db_next(), db_key, db::Db::Sqlcipher3::kRefuse));
  if (!next_whole)
    return Status(Code::kCorrupt, "the store's database does not open with its key; restore it from a backup");
  // Its log was checkpointed into it before the key file changed; one left beside it (or the old
  // database's) would be applied to the wrong file.
  if (fs::Exists(paths.db_next() + "-wal") && attachment::FileSize(paths.db_next() + "-wal") > 0)
    return Status(Code::kCorrupt, "the new database's log was not written into it; restore the store from a backup");
  return PromoteReplacement(paths, overwrite_old);
}

Status Store::PromoteReplacement(const StorePaths& paths, bool overwrite_old) {
  DALA_RETURN_IF_ERROR(fs::RemoveFile(paths.db() + "-wal"));
  DALA_RETURN_IF_ERROR(fs::RemoveFile(paths.db() + "-shm"));
  DALA_RETURN_IF_ERROR(fs::RemoveFile(paths.db() + "-journal"));
  // The old database's own bytes are overwritten before it goes (its key is gone already; on flash and
  // copy-on-write file systems old blocks may survive, which is why the key is what counts).
  if (overwrite_old) DALA_RETURN_IF_ERROR(fs::OverwriteFile(paths.db()));
  Failpoint("replace.before_rename");
  if (::rename(paths.db_next().c_str(), paths.db().c_str()) != 0)
    return fs::FromErrno(errno, "replace", paths.db());
  DALA_RETURN_IF_ERROR(RemoveDatabase(paths.db_next()));
  return fs::SyncDirectory(paths.dir());
  // The old attachment files (no row of the new database names them) are swept when the store opens.
}

Status Store::ChangeCredential(const std::string& dir, const Credential& old_cred, const Credential& new_cred,
                               const StoreOptions& options) {
  DALA_RETURN_IF_ERROR(ValidateCredential(old_cred));
  DALA_RETURN_IF_ERROR(ValidateCredential(new_cred));
  if (new_cred.has_passphrase()) DALA_RETURN_IF_ERROR(ValidateKdfParams(options.kdf));
  DALA_RETURN_IF_ERROR(ValidateFileNames(options.names));
  StorePaths paths(dir, options.names);
  DALA_ASSIGN_OR_RETURN(Unlocked unlocked, Unlock(paths, old_cred, options));
  // The same salt: a duress passphrase (slot 1) keeps working when the kind of credential stays.
  DALA_ASSIGN_OR_RETURN(SecretBuffer kek, DeriveStoreKek(new_cred, StoreKeySalt(unlocked.file), options.kdf));
  std::vector<uint8_t> file = SealSlot(unlocked.file, KeySlot::kStore, kek, unlocked.db_key);
  auto check = OpenStoreKeyFileWithKek(unlocked.file, std::move(kek));
  if (check.ok() && check->slot == KeySlot::kDuress)
    return Status(Code::kInvalidArgument, "that passphrase cannot protect this store; choose another");
  return fs::ReplaceFileShreddingOld(paths.key(), file);
}

Status Store::SetDuress(const std::string& dir, const Credential& cred, const SecretBuffer& duress_passphrase,
                        const StoreOptions& options) {
  DALA_RETURN_IF_ERROR(ValidateCredential(cred));
  DALA_RETURN_IF_ERROR(ValidateFileNames(options.names));
  DALA_ASSIGN_OR_RETURN(Credential duress, DuressCredential(cred, duress_passphrase));
  StorePaths paths(dir, options.names);
  DALA_ASSIGN_OR_RETURN(Unlocked unlocked, Unlock(paths, cred, options));
  DALA_ASSIGN_OR_RETURN(SecretBuffer kek, DeriveStoreKek(duress, StoreKeySalt(unlocked.file), options.kdf));
  SecretBuffer filler(32);
  randombytes_buf(filler.data(), filler.size());
  std::vector<uint8_t> file = SealSlot(unlocked.file, KeySlot::kDuress, kek, filler);
  auto same = OpenStoreKeyFileWithKek(unlocked.file, std::move(kek));
  if (same.ok() && same->slot == KeySlot::kStore)
    return Status(Code::kInvalidArgument, "the duress passphrase must differ from the store's passphrase");
  return fs::ReplaceFileShreddingOld(paths.key(), file);
}

Status Store::ClearDuress(const std::string& dir, const Credential& cred, const StoreOptions& options) {
  DALA_RETURN_IF_ERROR(ValidateCredential(cred));
  DALA_RETURN_IF_ERROR(ValidateFileNames(options.names));
  StorePaths paths(dir, options.names);
  DALA_ASSIGN_OR_RETURN(Unlocked unlocked, Unlock(paths, cred, options));
  return fs::ReplaceFileShreddingOld(paths.key(), ClearSlot(unlocked.file, KeySlot::kDuress));
}

}  // namespace dala
