// Re-keying (issue 14, item 2): the whole database is copied under a new key while every attachment file
// that no signature binds is encrypted again under a new file key; the copy then names the new files, and
// the key file, wrapping the new key under the new credential, is the commit point (docs/storage-format.md,
// "Re-keying"). Nothing new is ever written under the old key.
#include <sodium.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>

#include "base/encoding.h"
#include "base/failpoint.h"
#include "base/fsutil.h"
#include "crypto/attachment_file.h"
#include "crypto/store_key_file.h"
#include "store/store.h"
#include "store/store_trash.h"

namespace dala {
namespace {

// Attachments no sealed version carries: their ciphertext is bound by no signature, so it may change.
// (A sealed version's content names its attachments' keys and ciphertext roots and is signed: those files
// stay as they are, their keys only in the re-keyed database.)
constexpr char kUnboundAttachments[] =
    "SELECT a.id, a.file, a.mime, a.key, a.size, a.plaintext_hash FROM attachments a WHERE NOT EXISTS "
    "(SELECT 1 FROM reports r WHERE r.id = a.report_id AND r.sealed = 1 AND r.version >= a.version)";

constexpr size_t kKey = crypto_secretstream_xchacha20poly1305_KEYBYTES;

// One attachment to encrypt again, and (once that is done) its new file and what to record for it. Its old
// and new file keys are slots of two locked buffers shared by all (Keys): one locked allocation per key
// would cost four memory mappings each, and a process has about 65,000.
struct Item {
  AttachmentId id{};
  std::string file, mime;
  attachment::Reader::Expect expect;
  std::string new_file;
  std::optional<attachment::Finished> finished;  // its key moved into Keys::fresh
};

struct Keys {
  SecretBuffer old, fresh;  // kKey bytes per item, in the items' order
  std::span<const uint8_t> Old(size_t i) const { return old.span().subspan(i * kKey, kKey); }
  std::span<const uint8_t> Fresh(size_t i) const { return fresh.span().subspan(i * kKey, kKey); }
};

Result<std::vector<Item>> UnboundAttachments(db::Db& db, uint64_t* total, Keys* keys) {
  size_t count = 0;
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt n, db.Prepare(std::string("SELECT count(*) FROM (") + kUnboundAttachments + ")"));
    DALA_ASSIGN_OR_RETURN(bool row, n.Step());
    if (row) count = static_cast<size_t>(n.Int(0));
  }
  keys->old = SecretBuffer(std::max<size_t>(count, 1) * kKey);
  keys->fresh = SecretBuffer(std::max<size_t>(count, 1) * kKey);
  std::vector<Item> items;
  items.reserve(count);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare(kUnboundAttachments));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    if (items.size() == count) return Status(Code::kInternal, "the store's attachments changed while they were listed");
    Item it;
    auto id = st.BlobView(0);
    if (id.size() != it.id.size()) return Status(Code::kCorrupt, "an attachment id in the store is damaged");
    std::memcpy(it.id.data(), id.data(), id.size());
    it.file = st.Text(1);
    it.mime = st.Text(2);
    auto k = st.BlobView(3);
    if (k.size() != kKey) return Status(Code::kCorrupt, "an attachment key is damaged");
    std::memcpy(keys->old.data() + items.size() * kKey, k.data(), kKey);
    it.expect.size = static_cast<uint64_t>(st.Int(4));
    auto h = st.BlobView(5);
    if (h.size() != it.expect.plaintext_hash.size()) return Status(Code::kCorrupt, "an attachment hash is damaged");
    std::memcpy(it.expect.plaintext_hash.data(), h.data(), h.size());
    it.expect.check_plaintext_hash = false;  // carried over (ReencryptOne)
    *total += it.expect.size;
    items.push_back(std::move(it));
  }
  return items;
}

// Encrypts one attachment again, a piece at a time, into a new randomly named file under a new file key.
// Its bytes are carried over unhashed: the old file's authentication (each piece's tag under its file key,
// which only the store's database holds, and the final tag at the recorded size) proves they are the bytes
// hashed when it was captured, and hashing them again would cost as much as decrypting them. The old file
// stays until the re-key commits: until then the store's own database still names it. Touches no database.
Status ReencryptOne(const std::string& media, Item& it, Keys& keys, size_t index, std::atomic<uint64_t>& done,
                    const std::atomic<bool>& stop, const std::function<void()>* report) {
  DALA_ASSIGN_OR_RETURN(auto reader, attachment::Reader::Open(fs::Join(media, it.file), keys.Old(index), it.expect));
  uint8_t name[16];
  randombytes_buf(name, sizeof name);
  std::string file = encoding::ToHex(std::span<const uint8_t>(name, sizeof name));
  DALA_ASSIGN_OR_RETURN(auto writer,
                        attachment::Writer::CreateCarryingOver(fs::Join(media, file), it.mime, it.expect.plaintext_hash));
  SecretBuffer buf(attachment::kPiece);
  for (;;) {
    if (stop) return Status::Ok();  // another part failed (its failure is the one returned); nothing finished
    DALA_ASSIGN_OR_RETURN(size_t n, reader->Read(std::span<uint8_t>(buf.data(), buf.size())));
    if (n == 0) break;  // every byte read and authenticated, at the recorded size
    DALA_RETURN_IF_ERROR(writer->Write(std::span<const uint8_t>(buf.data(), n)));
    Failpoint("rekey.piece");  // on a worker thread (tests make it run out of memory here)
    done += n;
    if (report) (*report)();
  }
  DALA_ASSIGN_OR_RETURN(attachment::Finished f, writer->Finish());
  if (f.size != it.expect.size || f.key.size() != kKey)
    return Status(Code::kInternal, "an attachment was encrypted again to another size");
  std::memcpy(keys.fresh.data() + index * kKey, f.key.data(), kKey);
  f.key = SecretBuffer();
  it.new_file = std::move(file);
  it.finished = std::move(f);
  return Status::Ok();
}

// Runs fn on any thread: running out of memory is its status; any other exception (a C++ caller's progress
// callback that throws) is kept in *thrown, to be thrown again on the calling thread once every thread has
// been joined (an exception leaving a thread would end the process).
Status Guarded(const std::function<Status()>& fn, std::mutex& mu, std::exception_ptr* thrown) {
  try {
    return fn();
  } catch (const std::bad_alloc&) {
    return Status(Code::kNoMemory, "out of memory while re-keying");
  } catch (...) {
    std::lock_guard guard(mu);
    if (!*thrown) *thrown = std::current_exception();
    return Status(Code::kInternal, "stopped by an exception");
  }
}

// Runs `copy_database` on a thread of its own while the attachments are encrypted again on up to 4 threads
// (this one among them; the copy's thread joins them when it is done): the two are independent and each is
// CPU-bound. Progress is reported on this thread only. Every thread started is joined before this returns;
// the first failure stops the rest and is returned.
Status CopyAndReencrypt(const std::function<Status()>& copy_database, std::vector<Item>& items, Keys& keys,
                        const std::string& media, uint64_t total, const RekeyProgressFn& progress) {
  std::atomic<size_t> next{0};
  std::atomic<uint64_t> done{0};
  std::atomic<bool> stop{false}, copied{false};
  std::atomic<int> running{0};
  std::mutex mu;
  Status first;
  std::exception_ptr thrown;
  auto fail = [&](Status st) {
    if (st.ok()) return;
    stop = true;
    std::lock_guard guard(mu);
    if (first.ok()) first = std::move(st);
  };
  bool copied_reported = false;
  const std::function<void()> report = [&] {
    if (!progress) return;
    if (copied && !copied_reported) {
      copied_reported = true;
      progress(RekeyPhase::kDatabase, 1, 1);
    }
    progress(RekeyPhase::kAttachments, done, total);
  };
  auto reencrypt = [&](const std::function<void()>* on_progress) {
    for (size_t i = next++; i < items.size() && !stop; i = next++)
      fail(Guarded([&] { return ReencryptOne(media, items[i], keys, i, done, stop, on_progress); }, mu, &thrown));
  };
  auto copy = [&] {
    Status st = Guarded(copy_database, mu, &thrown);
    if (st.ok()) copied = true;
    fail(std::move(st));
  };
  if (progress) {  // before any thread starts: what it throws leaves as it would from any call
    progress(RekeyPhase::kDatabase, 0, 1);
    progress(RekeyPhase::kAttachments, 0, total);
  }
  const size_t cores = std::max<unsigned>(1, std::thread::hardware_concurrency());
  const size_t threads = std::min<size_t>({cores, 4, items.size() + 1});
  std::vector<std::thread> helpers;
  bool copy_started = false;
  for (size_t t = 1; t < threads; ++t) {
    ++running;
    try {
      if (!copy_started) {
        helpers.emplace_back([&] {
          copy();
          reencrypt(nullptr);
          --running;
        });
        copy_started = true;
      } else {
        helpers.emplace_back([&] {
          reencrypt(nullptr);
          --running;
        });
      }
    } catch (const std::exception&) {  // no thread to be had (or no memory for one): fewer do it
      --running;
      break;
    }
  }
  if (!copy_started) copy();
  reencrypt(&report);
  while (progress && running > 0 && !stop) {  // the others' progress, until they end
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    fail(Guarded([&] { report(); return Status::Ok(); }, mu, &thrown));
  }
  for (auto& h : helpers) h.join();
  if (thrown) std::rethrow_exception(thrown);
  if (first.ok()) report();
  return first;
}

// Points each attachment's row in the copy (under the new database key) at its new file, in one transaction.
Status RecordNewFiles(db::Db& copy, const std::vector<Item>& items, const Keys& keys) {
  db::Txn txn(copy);
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_ASSIGN_OR_RETURN(db::Stmt st, copy.Prepare(
      "UPDATE attachments SET file = ?, key = ?, ciphertext_size = ?, chunk_size = ?, ciphertext_hash = ?, "
      "chunk_hashes = ? WHERE id = ?"));
  for (size_t i = 0; i < items.size(); ++i) {
    const Item& it = items[i];
    const attachment::Finished& f = *it.finished;
    st.BindText(1, it.new_file).Bind(2, keys.Fresh(i)).Bind(3, static_cast<int64_t>(f.ciphertext_size));
    st.Bind(4, static_cast<int64_t>(attachment::kUploadChunk)).Bind(5, f.root).Bind(6, crypto::Bytes(f.chunk_hashes));
    st.Bind(7, it.id);
    DALA_RETURN_IF_ERROR(st.Run());
    st.Reset();
    if (copy.Changes() != 1) return Status(Code::kCorrupt, "an attachment's row is missing from the store's copy");
    Failpoint("rekey.attachment_reencrypted");
  }
  return txn.Commit();
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
  std::vector<Item> items;
  Keys keys;
  auto copy_and_reencrypt = [&]() -> Status {
    // Opened as any store (migrations, sweeps), then copied whole under the new key while the drafts'
    // attachments are encrypted again.
    DALA_ASSIGN_OR_RETURN(std::unique_ptr<Store> store, OpenWithKey(dir, unlocked.db_key, options));
    uint64_t total = 0;
    {
      std::lock_guard guard(store->mu_);
      DALA_ASSIGN_OR_RETURN(items, UnboundAttachments(store->db_, &total, &keys));
    }
    auto copy_database = [&]() -> Status {
      std::lock_guard guard(store->mu_);
      DALA_RETURN_IF_ERROR(fs::CreatePrivateFile(paths.db_next()));
      Failpoint("rekey.copy_started");
      return store->db_.ExportTo(paths.db_next(), new_key);
    };
    DALA_RETURN_IF_ERROR(CopyAndReencrypt(copy_database, items, keys, paths.media(), total, progress));
    store.reset();
    {
      DALA_ASSIGN_OR_RETURN(db::Db copy, db::Db::Open(paths.db_next(), new_key, /*create=*/false));
      DALA_RETURN_IF_ERROR(RecordNewFiles(copy, items, keys));
      DALA_RETURN_IF_ERROR(copy.CheckpointTruncate());  // whole in its file before the key file names it
    }
    return fs::SyncFile(paths.db_next());
  };
  // On failure the store is as it was; the copy and the new files (no row of the store names them) go.
  auto undo = [&] {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) (void)fs::RemoveFile(paths.db_next() + suffix);
    for (const Item& it : items)
      if (!it.new_file.empty()) (void)fs::RemoveFile(fs::Join(paths.media(), it.new_file));
  };
  Status st;
  try {
    st = copy_and_reencrypt();
  } catch (...) {  // a C++ caller's progress callback threw (CopyAndReencrypt throws it again here)
    undo();
    throw;
  }
  if (!st.ok()) {
    undo();
    return st;
  }
  Failpoint("rekey.copied");
  // The commit point: from here the key file holds only the new key.
  DALA_RETURN_IF_ERROR(
      fs::ReplaceFileShreddingOld(paths.key(), SealSlot(unlocked.file, KeySlot::kStore, kek, new_key)));
  Failpoint("rekey.key_replaced");
  DALA_RETURN_IF_ERROR(FinishReplacement(paths, new_key, /*overwrite_old=*/true));
  // Re-keyed. The old attachment files, which no row names now and whose keys went with the old database,
  // are moved aside and freed on a thread of their own (freeing 1 GiB took 0.28 s here), or removed here if
  // they cannot be moved. What is left of them when the process ends goes at the next open (its sweeps).
  std::vector<std::string> old_files;
  old_files.reserve(items.size());
  for (const Item& it : items) old_files.push_back(it.file);
  Status moved;
  std::string bin = trash::MoveAway(paths.dir(), options.names.database, old_files, &moved, options.names.media);
  if (!bin.empty())
    trash::RemoveInBackground(paths.dir(), {bin}, /*remove_dir=*/false, std::chrono::steady_clock::now());
  else  // not moved (the media directory is a link the app made, say): removed where they are
    for (const auto& f : old_files) (void)fs::RemoveFile(fs::Join(paths.media(), f));
  return Status::Ok();
}

}  // namespace dala
