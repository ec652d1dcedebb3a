// Re-keying (issue 14, item 2): every attachment file that no signature binds is encrypted again under a
// new file key, then the whole database is copied under a new database key, and the key file, wrapping
// the new key under the new credential, is the commit point (docs/storage-format.md, "Re-keying").
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

constexpr char kMetaKeyEpoch[] = "key_epoch";
constexpr char kMetaRekeyTarget[] = "rekey_target";

Result<int64_t> MetaInt(db::Db& db, const char* key, int64_t fallback) {
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("SELECT value FROM meta WHERE key = ?"));
  st.BindText(1, key);
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? st.Int(0) : fallback;
}

Status SetMetaInt(db::Db& db, const char* key, int64_t value) {
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)"));
  st.BindText(1, key).Bind(2, value);
  return st.Run();
}

// Attachments no sealed version carries: their ciphertext is bound by no signature, so it may change.
// (A sealed version's content names its attachments' keys and ciphertext roots and is signed: those files
// stay as they are, their keys only in the re-keyed database.)
constexpr char kUnboundAttachments[] =
    "FROM attachments a WHERE a.key_epoch < ? AND NOT EXISTS (SELECT 1 FROM reports r WHERE r.id = a.report_id "
    "AND r.sealed = 1 AND r.version >= a.version)";

}  // namespace

Status Store::RekeyAttachments(int64_t target, const RekeyProgressFn& progress) {
  struct Item {
    AttachmentId id{};
    std::string file, mime;
    SecretBuffer key;
    attachment::Reader::Expect expect;
  };
  std::vector<Item> items;
  uint64_t total = 0, done = 0;
  {
    std::lock_guard lock(mu_);
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(std::string("SELECT a.id, a.file, a.mime, a.key, a.size, "
                                                               "a.plaintext_hash ") + kUnboundAttachments));
    st.Bind(1, target);
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
      total += it.expect.size;
      items.push_back(std::move(it));
    }
  }
  if (progress) progress(RekeyPhase::kAttachments, 0, total);
  for (auto& it : items) {
    // Decrypted and encrypted again a piece at a time, into a new file with a new key; the row moves to it
    // in one transaction, then the old file goes. Killed anywhere, the row names one
    // complete file (the other is swept at the next open), and a later re-key goes on from here.
    const std::string old_path = fs::Join(AttachmentDir(), it.file);
    DALA_ASSIGN_OR_RETURN(auto reader, attachment::Reader::Open(old_path, it.key.span(), it.expect));
    uint8_t name[16];
    randombytes_buf(name, sizeof name);
    std::string file = encoding::ToHex(std::span<const uint8_t>(name, sizeof name));
    DALA_ASSIGN_OR_RETURN(auto writer, attachment::Writer::Create(fs::Join(AttachmentDir(), file), it.mime));
    {
      std::lock_guard lock(mu_);
      capturing_.insert(file);
    }
    struct Uncapture {
      Store& s;
      std::string f;
      ~Uncapture() { s.EndCapture(f); }
    } uncapture{*this, file};
    SecretBuffer buf(attachment::kPiece);
    for (;;) {
      DALA_ASSIGN_OR_RETURN(size_t n, reader->Read(std::span<uint8_t>(buf.data(), buf.size())));
      if (n == 0) break;
      DALA_RETURN_IF_ERROR(writer->Write(std::span<const uint8_t>(buf.data(), n)));
      done += n;
      if (progress) progress(RekeyPhase::kAttachments, done, total);
    }
    DALA_ASSIGN_OR_RETURN(attachment::Finished f, writer->Finish());
    if (f.size != it.expect.size || f.plaintext_hash != it.expect.plaintext_hash)
      return Status(Code::kCorrupt, "an attachment read back differently while it was re-encrypted");
    {
      std::lock_guard lock(mu_);
      DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
          "UPDATE attachments SET file = ?, key = ?, ciphertext_size = ?, chunk_size = ?, ciphertext_hash = ?, "
          "chunk_hashes = ?, key_epoch = ? WHERE id = ?"));
      st.BindText(1, file).Bind(2, f.key.span()).Bind(3, static_cast<int64_t>(f.ciphertext_size));
      st.Bind(4, static_cast<int64_t>(attachment::kUploadChunk)).Bind(5, f.root).Bind(6, crypto::Bytes(f.chunk_hashes));
      st.Bind(7, target).Bind(8, it.id);
      DALA_RETURN_IF_ERROR(st.Run());
    }
    Failpoint("rekey.attachment_moved");
    // The old file goes; its bytes are not overwritten: its key was only in the database, which is
    // re-keyed (and whose old bytes are overwritten) below. Overwriting every file again cost a third
    // of the re-key's time (measured with dala_rekey_bench) for no key that survives.
    DALA_RETURN_IF_ERROR(fs::RemoveFile(old_path));
  }
  return Status::Ok();
}

Status Store::Rekey(const std::string& dir, const Credential& old_cred, const Credential& new_cred,
                    const StoreOptions& options, const RekeyProgressFn& progress) {
  DALA_RETURN_IF_ERROR(ValidateCredential(old_cred));
  DALA_RETURN_IF_ERROR(ValidateCredential(new_cred));
  if (new_cred.has_passphrase()) DALA_RETURN_IF_ERROR(ValidateKdfParams(options.kdf));
  DALA_RETURN_IF_ERROR(ValidateFileNames(options.names));
  StorePaths paths(dir, options.names);
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
  {
    DALA_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenWithKey(dir, unlocked.db_key, options));
    int64_t target = 0;
    {
      std::lock_guard lock(store->mu_);
      DALA_ASSIGN_OR_RETURN(int64_t epoch, MetaInt(store->db_, kMetaKeyEpoch, 0));
      DALA_ASSIGN_OR_RETURN(target, MetaInt(store->db_, kMetaRekeyTarget, epoch + 1));
      DALA_RETURN_IF_ERROR(SetMetaInt(store->db_, kMetaRekeyTarget, target));
    }
    DALA_RETURN_IF_ERROR(store->RekeyAttachments(target, progress));
    if (progress) progress(RekeyPhase::kDatabase, 0, 1);
    std::lock_guard lock(store->mu_);
    DALA_RETURN_IF_ERROR(fs::RemoveFile(paths.db_next()));
    DALA_RETURN_IF_ERROR(fs::RemoveFile(paths.db_next() + "-journal"));
    DALA_RETURN_IF_ERROR(fs::CreatePrivateFile(paths.db_next()));
    DALA_RETURN_IF_ERROR(store->db_.ExportTo(paths.db_next(), new_key));
    Failpoint("rekey.exported");
  }
  {
    // The copy finishes the re-key's bookkeeping under its own key, then is made durable.
    DALA_ASSIGN_OR_RETURN(db::Db next, db::Db::Open(paths.db_next(), new_key, /*create=*/false));
    DALA_ASSIGN_OR_RETURN(int64_t target, MetaInt(next, kMetaRekeyTarget, 0));
    DALA_RETURN_IF_ERROR(SetMetaInt(next, kMetaKeyEpoch, target));
    DALA_RETURN_IF_ERROR(next.Exec("DELETE FROM meta WHERE key = 'rekey_target';"));
  }  // closed: its log is checkpointed into it and removed
  DALA_RETURN_IF_ERROR(fs::SyncFile(paths.db_next()));
  // The commit point: from here the key file holds only the new key.
  DALA_RETURN_IF_ERROR(
      fs::ReplaceFileShreddingOld(paths.key(), SealSlot(unlocked.file, KeySlot::kStore, kek, new_key)));
  Failpoint("rekey.key_replaced");
  DALA_RETURN_IF_ERROR(FinishReplacement(paths, new_key));
  if (progress) progress(RekeyPhase::kDatabase, 1, 1);
  return Status::Ok();
}

}  // namespace dala
