// Re-keying (issue 14, item 2): the whole database is copied under a new key; in the copy, every
// attachment file that no signature binds is encrypted again under a new file key; then the key file,
// wrapping the new key under the new credential, is the commit point (docs/storage-format.md,
// "Re-keying"). Nothing new is ever written under the old key.
#include <sodium.h>

#include <cstring>

#include "base/encoding.h"
#include "base/failpoint.h"
#include "base/fsutil.h"
#include "crypto/attachment_file.h"
#include "crypto/store_key_file.h"
#include "store/store.h"

namespace dala {
namespace {

// Attachments no sealed version carries: their ciphertext is bound by no signature, so it may change.
// (A sealed version's content names its attachments' keys and ciphertext roots and is signed: those files
// stay as they are, their keys only in the re-keyed database.)
constexpr char kUnboundAttachments[] =
    "SELECT a.id, a.file, a.mime, a.key, a.size, a.plaintext_hash FROM attachments a WHERE NOT EXISTS "
    "(SELECT 1 FROM reports r WHERE r.id = a.report_id AND r.sealed = 1 AND r.version >= a.version)";

struct Item {
  AttachmentId id{};
  std::string file, mime;
  SecretBuffer key;
  attachment::Reader::Expect expect;
};

Result<std::vector<Item>> UnboundAttachments(db::Db& db, uint64_t* total) {
  std::vector<Item> items;
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare(kUnboundAttachments));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    Item it;
    auto id = st.BlobView(0);
    if (id.size() != it.id.size()) return Status(Code::kCorrupt, "an attachment id in the store is damaged");
    std::memcpy(it.id.data(), id.data(), id.size());
    it.file = st.Text(1);
    it.mime = st.Text(2);
    auto k = st.BlobView(3);
    it.key = SecretBuffer(k.data(), k.size());
    it.expect.size = static_cast<uint64_t>(st.Int(4));
    auto h = st.BlobView(5);
    if (h.size() != it.expect.plaintext_hash.size()) return Status(Code::kCorrupt, "an attachment hash is damaged");
    std::memcpy(it.expect.plaintext_hash.data(), h.data(), h.size());
    it.expect.check_plaintext_hash = false;  // the writer hashes the same bytes; compared below
    *total += it.expect.size;
    items.push_back(std::move(it));
  }
  return items;
}

// Encrypts one attachment again, a piece at a time, into a new randomly named file under a new key, and
// points its row in the copy (under the new database key) at it. The old file stays until the re-key
// commits: until then the store's own database still names it.
Status ReencryptOne(db::Db& copy, const std::string& media, Item& it, uint64_t* done, uint64_t total,
                    const RekeyProgressFn& progress) {
  DALA_ASSIGN_OR_RETURN(auto reader, attachment::Reader::Open(fs::Join(media, it.file), it.key.span(), it.expect));
  uint8_t name[16];
  randombytes_buf(name, sizeof name);
  const std::string file = encoding::ToHex(std::span<const uint8_t>(name, sizeof name));
  DALA_ASSIGN_OR_RETURN(auto writer, attachment::Writer::Create(fs::Join(media, file), it.mime));
  SecretBuffer buf(attachment::kPiece);
  for (;;) {
    DALA_ASSIGN_OR_RETURN(size_t n, reader->Read(std::span<uint8_t>(buf.data(), buf.size())));
    if (n == 0) break;
    DALA_RETURN_IF_ERROR(writer->Write(std::span<const uint8_t>(buf.data(), n)));
    *done += n;
    if (progress) progress(RekeyPhase::kAttachments, *done, total);
  }
  DALA_ASSIGN_OR_RETURN(attachment::Finished f, writer->Finish());
  if (f.size != it.expect.size || f.plaintext_hash != it.expect.plaintext_hash)
    return Status(Code::kCorrupt, "an attachment read back differently while it was re-encrypted");
  DALA_ASSIGN_OR_RETURN(db::Stmt st, copy.Prepare(
      "UPDATE attachments SET file = ?, key = ?, ciphertext_size = ?, chunk_size = ?, ciphertext_hash = ?, "
      "chunk_hashes = ? WHERE id = ?"));
  st.BindText(1, file).Bind(2, f.key.span()).Bind(3, static_cast<int64_t>(f.ciphertext_size));
  st.Bind(4, static_cast<int64_t>(attachment::kUploadChunk)).Bind(5, f.root).Bind(6, crypto::Bytes(f.chunk_hashes));
  st.Bind(7, it.id);
  DALA_RETURN_IF_ERROR(st.Run());
  Failpoint("rekey.attachment_reencrypted");
  return Status::Ok();
}

}  // namespace

Status Store::Rekey(const std::string& dir, const Credential& old_cred, const Credential& new_cred,
                    const StoreOptions& options, const RekeyProgressFn& progress) {
  DALA_RETURN_IF_ERROR(ValidateCredential(old_cred));
  DALA_RETURN_IF_ERROR(ValidateCredential(new_cred));
  if (new_cred.has_passphrase()) DALA_RETURN_IF_ERROR(ValidateKdfParams(options.kdf));
  DALA_RETURN_IF_ERROR(ValidateFileNames(options.names));
  StorePaths paths(dir, options.names);
  // No handle may write while the copy is made: what it wrote after the copy would be lost.
  DALA_ASSIGN_OR_RETURN(StoreLock lock, StoreLock::Exclusive(dir));
  DALA_ASSIGN_OR_RETURN(Unlocked unlocked, Unlock(paths, old_cred, options));
  // The new key file is made first (the same salt: a duress passphrase stays valid), so that a new
  // passphrase that is the duress one is refused before anything changes.
  DALA_ASSIGN_OR_RETURN(SecretBuffer kek, DeriveStoreKek(new_cred, StoreKeySalt(unlocked.file), options.kdf));
  {
    SecretBuffer check_kek(kek.data(), kek.size());
    auto check = OpenStoreKeyFileWithKek(unlocked.file, std::move(check_kek));
    if (check.ok() && check->slot == KeySlot::kDuress)
      return Status(Code::kInvalidArgument, "that passphrase cannot protect this store; choose another");
  }
  SecretBuffer new_key(32);
  randombytes_buf(new_key.data(), new_key.size());
  Status st = [&]() -> Status {
    if (progress) progress(RekeyPhase::kDatabase, 0, 1);
    {
      // Opened as any store (migrations, sweeps), then copied whole under the new key.
      DALA_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenWithKey(dir, unlocked.db_key, options));
      std::lock_guard guard(store->mu_);
      DALA_RETURN_IF_ERROR(fs::CreatePrivateFile(paths.db_next()));
      Failpoint("rekey.copy_started");
      DALA_RETURN_IF_ERROR(store->db_.ExportTo(paths.db_next(), new_key));
    }
    if (progress) progress(RekeyPhase::kDatabase, 1, 1);
    {
      DALA_ASSIGN_OR_RETURN(db::Db copy, db::Db::Open(paths.db_next(), new_key, /*create=*/false));
      uint64_t total = 0, done = 0;
      DALA_ASSIGN_OR_RETURN(std::vector<Item> items, UnboundAttachments(copy, &total));
      if (progress) progress(RekeyPhase::kAttachments, 0, total);
      for (auto& it : items) DALA_RETURN_IF_ERROR(ReencryptOne(copy, paths.media(), it, &done, total, progress));
      DALA_RETURN_IF_ERROR(copy.CheckpointTruncate());  // whole in its file before the key file names it
    }
    return fs::SyncFile(paths.db_next());
  }();
  if (!st.ok()) {
    // The store is as it was; the copy and the new files (no row of the store names them) go.
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) (void)fs::RemoveFile(paths.db_next() + suffix);
    return st;
  }
  Failpoint("rekey.copied");
  // The commit point: from here the key file holds only the new key.
  DALA_RETURN_IF_ERROR(
      fs::ReplaceFileShreddingOld(paths.key(), SealSlot(unlocked.file, KeySlot::kStore, kek, new_key)));
  Failpoint("rekey.key_replaced");
  DALA_RETURN_IF_ERROR(FinishReplacement(paths, new_key, /*overwrite_old=*/true));
  // The old attachment files, which no row names now, go (as at any open).
  DALA_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenWithKey(dir, new_key, options));
  return Status::Ok();
}

}  // namespace dala
