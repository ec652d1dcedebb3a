#include "server/server_backup.h"

#include "server/server_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <vector>

#include "base/clock.h"
#include "base/db.h"
#include "base/encoding.h"
#include "base/fsutil.h"
#include "base/secret.h"
#include "crypto/crypto.h"
#include "format/manifest.h"

namespace dala::server {
namespace {

constexpr char kManifestName[] = "dala-backup.json";
constexpr char kFormat[] = "dala-server backup 1";
constexpr size_t kPiece = 1 << 20;

struct ArchiveWriter {
  archive* a = archive_write_new();
  ~ArchiveWriter() { archive_write_free(a); }
};
struct ArchiveReader {
  archive* a = archive_read_new();
  ~ArchiveReader() { archive_read_free(a); }
};
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Status ArchiveError(archive* a, const std::string& what) {
  const char* m = archive_error_string(a);
  return Status(Code::kIo, what + (m != nullptr ? std::string(": ") + m : std::string()));
}

Result<SecretBuffer> ReadKey(const std::string& path) {
  DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> raw, fs::ReadFile(path, 64));
  if (raw.size() != 32) {
    sodium_memzero(raw.data(), raw.size());
    return Status(Code::kInvalidArgument, "'" + path + "' is not a dala-server database key (32 bytes)");
  }
  SecretBuffer k(raw.data(), raw.size());
  sodium_memzero(raw.data(), raw.size());
  return k;
}

// One regular file into the archive: `size` bytes from `fd` (or from `bytes` when fd < 0).
Status AddEntry(archive* a, const std::string& name, uint64_t size, int fd, const uint8_t* bytes) {
  std::unique_ptr<archive_entry, void (*)(archive_entry*)> e(archive_entry_new(), archive_entry_free);
  archive_entry_set_pathname(e.get(), name.c_str());
  archive_entry_set_size(e.get(), static_cast<la_int64_t>(size));
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), 0600);
  archive_entry_set_mtime(e.get(), SystemNowMs() / 1000, 0);
  if (archive_write_header(a, e.get()) != ARCHIVE_OK) return ArchiveError(a, "cannot write the backup");
  if (fd < 0) {
    if (archive_write_data(a, bytes, size) != static_cast<la_ssize_t>(size)) return ArchiveError(a, "cannot write the backup");
    return Status::Ok();
  }
  std::vector<uint8_t> buf(kPiece);
  for (uint64_t done = 0; done < size;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kPiece, size - done));
    const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(done));
    if (n <= 0) return Status(Code::kCorrupt, name + " is shorter than recorded in the data directory");
    if (archive_write_data(a, buf.data(), static_cast<size_t>(n)) != n) return ArchiveError(a, "cannot write the backup");
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

Status AddFile(archive* a, const std::string& name, const std::string& path, uint64_t size) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) return fs::FromErrno(errno, "cannot read", path);
  return AddEntry(a, name, size, f.fd, nullptr);
}

bool IsHex(std::string_view s) {
  return s.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

// The names a backup may hold: nothing else is written, nothing outside the directory.
bool AttachmentName(std::string_view name) {
  const std::string_view prefix = std::string_view(kAttachmentDirName) == "attachments" ? "attachments/" : "";
  if (name.substr(0, prefix.size()) != prefix) return false;
  name.remove_prefix(prefix.size());
  return name.size() == 64 + 1 + 32 && name[64] == '-' && IsHex(name.substr(0, 64)) && IsHex(name.substr(65));
}

}  // namespace

Result<BackupSummary> Backup(const std::string& dir, const std::string& out, bool include_key) {
  if (!InitSodium()) return Status(Code::kInternal, "libsodium could not start");
  BackupSummary sum;
  auto key = ReadKey(fs::Join(dir, kServerKeyFile));
  if (!key.ok()) {
    if (key.status().code() == Code::kNotFound)
      return Status(Code::kNotFound, "no dala-server data in '" + dir + "'");
    return key.status();
  }
  if (fs::Exists(fs::Join(dir, kDatabaseUrlFile)))
    return Status(Code::kInvalidArgument,
                  "this data directory keeps its data in PostgreSQL: back up the database with pg_dump or "
                  "pg_basebackup, and keep a copy of this directory (server.key, database.url) apart "
                  "(docs/operations.md, \"Backups and restore\")");
  DALA_ASSIGN_OR_RETURN(std::string attachments_dir, AttachmentsLocation(dir));
  if (IsS3(attachments_dir))
    return Status(Code::kInvalidArgument,
                  "this data directory keeps its attachments in an S3 bucket, which a backup file cannot hold: "
                  "back up the bucket with the store's own tools (versioning, replication) "
                  "(docs/operations.md, \"Backups and restore\")");
  const std::string snapshot = out + ".db-tmp";
  struct Remove {
    std::string path;
    ~Remove() {
      for (const char* end : {"", "-wal", "-shm", "-journal"}) (void)fs::RemoveFile(path + end);
    }
  } remove_snapshot{snapshot}, remove_partial{out + ".tmp"};
  for (const char* end : {"", "-wal", "-shm", "-journal"}) (void)fs::RemoveFile(snapshot + end);
  DALA_RETURN_IF_ERROR(fs::CreatePrivateFile(snapshot));  // 0600, and ours alone (O_EXCL)
  {
    DALA_ASSIGN_OR_RETURN(db::Db live, OpenServerDatabase(fs::Join(dir, kServerDbFile), *key));
    DALA_RETURN_IF_ERROR(live.BackupTo(snapshot, *key));
  }
  // What the snapshot holds, read from it (not from the live database, which has moved on).
  struct Attachment {
    std::string name;
    uint64_t size;
  };
  std::vector<Attachment> attachments;
  {
    DALA_ASSIGN_OR_RETURN(db::Db copy, OpenServerDatabase(snapshot, *key));
    DALA_ASSIGN_OR_RETURN(db::Stmt m, copy.Prepare("SELECT value FROM meta WHERE key = 'signing_key'"));
    DALA_ASSIGN_OR_RETURN(bool row, m.Step());
    if (!row) return Status(Code::kCorrupt, "the server database has no signing key");
    DALA_ASSIGN_OR_RETURN(crypto::SigningKey signing, crypto::SigningKeyFromSecret(m.BlobView(0)));
    sum.server_key = encoding::ToHex(signing.public_key);
    m = db::Stmt();
    DALA_ASSIGN_OR_RETURN(db::Stmt c, copy.Prepare("SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM log)"));
    DALA_ASSIGN_OR_RETURN(bool counted, c.Step());
    if (counted) {
      sum.reports = static_cast<uint64_t>(c.Int(0));
      sum.log_size = static_cast<uint64_t>(c.Int(1));
    }
    c = db::Stmt();
    DALA_ASSIGN_OR_RETURN(db::Stmt a, copy.Prepare(
        "SELECT device_key, attachment_id, size FROM attachments WHERE complete = 1 ORDER BY device_key, attachment_id"));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool more, a.Step());
      if (!more) break;
      attachments.push_back({attachment::FileName(a.BlobView(0), a.BlobView(1)), static_cast<uint64_t>(a.Int(2))});
      sum.attachment_bytes += static_cast<uint64_t>(a.Int(2));
    }
  }
  sum.attachments = attachments.size();
  sum.key_included = include_key;
  struct stat sb;
  if (::stat(snapshot.c_str(), &sb) != 0) return fs::FromErrno(errno, "cannot read", snapshot);
  const auto database_bytes = static_cast<uint64_t>(sb.st_size);

  const std::string partial = out + ".tmp";
  (void)fs::RemoveFile(partial);
  Fd f{::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
  if (f.fd < 0) return fs::FromErrno(errno, "cannot create", partial);
  {
    ArchiveWriter w;
    if (archive_write_set_format_pax_restricted(w.a) != ARCHIVE_OK || archive_write_open_fd(w.a, f.fd) != ARCHIVE_OK)
      return ArchiveError(w.a, "cannot start the backup");
    const std::string manifest = nlohmann::json{{"format", kFormat},
                                                {"created", IsoTime(SystemNowMs())},
                                                {"server_key", sum.server_key},
                                                {"reports", sum.reports},
                                                {"log_size", sum.log_size},
                                                {"database_bytes", database_bytes},
                                                {"attachments", sum.attachments},
                                                {"attachment_bytes", sum.attachment_bytes},
                                                {"key_included", include_key}}
                                     .dump(2) + "\n";
    DALA_RETURN_IF_ERROR(AddEntry(w.a, kManifestName, manifest.size(), -1,
                                  reinterpret_cast<const uint8_t*>(manifest.data())));
    DALA_RETURN_IF_ERROR(AddFile(w.a, kServerDbFile, snapshot, database_bytes));
    if (include_key) DALA_RETURN_IF_ERROR(AddEntry(w.a, kServerKeyFile, key->size(), -1, key->data()));
    // Complete attachments never change: each is copied as it is, while uploads go on beside them.
    for (const auto& at : attachments)
      DALA_RETURN_IF_ERROR(AddFile(w.a, std::string(kAttachmentDirName) + "/" + at.name,
                                   fs::Join(attachments_dir, at.name), at.size));
    if (archive_write_close(w.a) != ARCHIVE_OK) return ArchiveError(w.a, "cannot finish the backup");
  }
  if (::fsync(f.fd) != 0) return fs::FromErrno(errno, "cannot sync", partial);
  if (::rename(partial.c_str(), out.c_str()) != 0) return fs::FromErrno(errno, "cannot rename the backup to", out);
  const auto parent = std::filesystem::path(out).parent_path().string();
  DALA_RETURN_IF_ERROR(fs::SyncDirectory(parent.empty() ? "." : parent));
  return sum;
}

namespace {

// Where a restore is built before it is moved into place: a new directory beside the target (the same file
// system, so that one rename moves it), removed whole unless moved.
struct WorkDir {
  std::string path;
  bool moved = false;
  ~WorkDir() {
    if (moved || path.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

Result<std::string> MakeWorkDir(const std::filesystem::path& target) {
  uint8_t r[6];
  randombytes_buf(r, sizeof r);
  const std::string path =
      (target.parent_path() / ("." + target.filename().string() + ".restore-" + encoding::ToHex(r))).string();
  if (::mkdir(path.c_str(), 0700) != 0) return fs::FromErrno(errno, "cannot create", path);
  return path;
}

// The budget a backup's manifest declares, checked before anything is written, and the free space for it.
struct Declared {
  uint64_t database_bytes = 0, attachments = 0, attachment_bytes = 0;
};

Result<Declared> ReadDeclared(const nlohmann::json& m, const std::string& from) {
  Declared d;
  auto number = [&](const char* field, uint64_t* to) {
    auto it = m.find(field);
    if (it == m.end() || !it->is_number_unsigned()) return false;
    *to = it->get<uint64_t>();
    return true;
  };
  uint64_t ignored = 0;
  auto text = [&](const char* field) { return m.contains(field) && m[field].is_string(); };
  // Every field read later is checked here for its type (nlohmann's value() throws on a wrong one).
  if (!m.is_object() || !text("format") || m["format"] != kFormat || !text("server_key") || !text("created") ||
      !number("reports", &ignored) || !number("log_size", &ignored) || !number("database_bytes", &d.database_bytes) ||
      !number("attachments", &d.attachments) || !number("attachment_bytes", &d.attachment_bytes) ||
      d.database_bytes == 0 || d.database_bytes > (uint64_t{1} << 50) || d.attachment_bytes > (uint64_t{1} << 50))
    return Status(Code::kCorrupt, "'" + from + "' is not a dala-server backup (its manifest, the first entry, is "
                                  "missing or damaged)");
  return d;
}

Status CheckFreeSpace(const std::string& dir, const Declared& d) {
  struct statvfs v;
  if (::statvfs(dir.c_str(), &v) != 0) return fs::FromErrno(errno, "cannot read the free space of", dir);
  const uint64_t free_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  const uint64_t need = d.database_bytes + d.attachment_bytes + (uint64_t{64} << 20);  // and room to open it
  if (need > free_bytes)
    return Status(Code::kNoSpace, "restoring this backup needs " + std::to_string(need >> 20) + " MiB; '" + dir +
                                      "' has " + std::to_string(free_bytes >> 20) + " MiB free");
  return Status::Ok();
}

// Refuses a database whose log was emptied while it holds reports: opening it would rebuild a log that forks
// from the one phones and desks hold.
Status CheckLogKept(const std::string& db_path, const SecretBuffer& key) {
  auto db = OpenServerDatabase(db_path, key);
  if (!db.ok()) {
    if (db.status().code() == Code::kWrongKey)
      return Status(Code::kWrongKey, "the key does not open this backup's database (the wrong server.key, or a "
                                     "damaged database)");
    if (db.status().code() == Code::kState) return db.status();  // dala-server 0.1's: what to do
    return Status(Code::kCorrupt, "this backup's database is damaged (" + db.status().message() + ")");
  }
  auto st = db->Prepare("SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM log)");
  if (!st.ok()) return Status(Code::kCorrupt, "this backup's database is damaged (" + st.status().message() + ")");
  DALA_ASSIGN_OR_RETURN(bool row, st->Step());
  if (row && st->Int(0) > 0 && st->Int(1) == 0)
    return Status(Code::kCorrupt, "this backup's database holds reports but no log: restoring it would start a "
                                  "log that forks from the one phones and desks hold");
  return Status::Ok();
}

// Reads the archive into `work`: the manifest first, then only the entries it allows, none larger than
// it declares (so that a hostile backup cannot fill the disk), with the filters a backup may have been
// compressed with (gzip, bzip2, xz, zstd) and no other.
Status Extract(const std::string& from, const std::string& work, const std::optional<SecretBuffer>& given,
               nlohmann::json* manifest, bool* have_key) {
  ArchiveReader r;
  archive_read_support_format_tar(r.a);
  for (int (*f)(archive*) : {archive_read_support_filter_gzip, archive_read_support_filter_bzip2,
                             archive_read_support_filter_xz, archive_read_support_filter_zstd})
    if (f(r.a) == ARCHIVE_FATAL) return ArchiveError(r.a, "cannot start reading");
  if (archive_read_open_filename(r.a, from.c_str(), 1 << 16) != ARCHIVE_OK)
    return ArchiveError(r.a, "cannot read '" + from + "'");
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(fs::Join(work, kAttachmentDirName)));
  std::set<std::string> seen;
  std::vector<uint8_t> buf(kPiece);
  Declared d;
  uint64_t attachments = 0, attachment_bytes = 0;
  bool have_db = false;
  for (;;) {
    archive_entry* e = nullptr;
    const int rc = archive_read_next_header(r.a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc != ARCHIVE_OK) return ArchiveError(r.a, "'" + from + "' is not a whole dala-server backup");
    const char* raw_name = archive_entry_pathname(e);
    const std::string name = raw_name != nullptr ? raw_name : "";
    const bool known = name == kManifestName || name == kServerDbFile || name == kServerKeyFile || AttachmentName(name);
    if (!known || archive_entry_filetype(e) != AE_IFREG || !archive_entry_size_is_set(e) ||
        archive_entry_size(e) < 0 || !seen.insert(name).second)
      return Status(Code::kCorrupt, "'" + from + "' holds an entry a dala-server backup does not ('" +
                                        name.substr(0, 80) + "')");
    if (archive_entry_sparse_count(e) > 0)
      return Status(Code::kCorrupt, "'" + from + "' holds a sparse entry ('" + name + "'): a dala-server backup has none");
    if (seen.size() == 1 && name != kManifestName)
      return Status(Code::kCorrupt, "'" + from + "' is not a dala-server backup (its manifest, the first entry, is "
                                    "missing)");
    const auto size = static_cast<uint64_t>(archive_entry_size(e));
    if ((name == kServerKeyFile && size != 32) || (name == kManifestName && size > (64u << 10)))
      return Status(Code::kCorrupt, "'" + from + "' holds a damaged " + name);
    if (name == kManifestName || name == kServerKeyFile) {
      SecretBuffer bytes(static_cast<size_t>(size));
      if (archive_read_data(r.a, bytes.data(), bytes.size()) != static_cast<la_ssize_t>(size))
        return ArchiveError(r.a, "'" + from + "' is cut short");
      if (name == kManifestName) {
        *manifest = nlohmann::json::parse(bytes.data(), bytes.data() + bytes.size(), nullptr, false);
        DALA_ASSIGN_OR_RETURN(d, ReadDeclared(*manifest, from));
        DALA_RETURN_IF_ERROR(CheckFreeSpace(work, d));
      } else {
        *have_key = true;
        if (given && sodium_memcmp(given->data(), bytes.data(), 32) != 0)
          return Status(Code::kWrongKey, "the key given is not the key this backup holds");
        DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(fs::Join(work, kServerKeyFile), bytes.span()));
      }
      continue;
    }
    if (name == kServerDbFile) {
      if (size != d.database_bytes)
        return Status(Code::kCorrupt, "'" + from + "' holds a database of another size than its manifest declares");
      have_db = true;
    } else {
      attachment_bytes += size;
      if (++attachments > d.attachments || attachment_bytes > d.attachment_bytes)
        return Status(Code::kCorrupt, "'" + from + "' holds more attachments than its manifest declares");
    }
    const std::string path = fs::Join(work, name);
    Fd f{::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)};
    if (f.fd < 0) return fs::FromErrno(errno, "cannot create", path);
    uint64_t done = 0;
    for (;;) {
      const la_ssize_t n = archive_read_data(r.a, buf.data(), buf.size());
      if (n < 0) return ArchiveError(r.a, "'" + from + "' is damaged");
      if (n == 0) break;
      if (static_cast<uint64_t>(n) > size - done) return Status(Code::kCorrupt, "'" + from + "' is damaged");
      DALA_RETURN_IF_ERROR(fs::WriteAll(f.fd, buf.data(), static_cast<size_t>(n), path));
      done += static_cast<uint64_t>(n);
    }
    if (done != size) return Status(Code::kCorrupt, "'" + from + "' is cut short");
    if (::fdatasync(f.fd) != 0) return fs::FromErrno(errno, "cannot sync", path);
  }
  if (seen.empty() || !have_db)
    return Status(Code::kCorrupt, "'" + from + "' is not a dala-server backup (no manifest or no database)");
  if (attachments != d.attachments || attachment_bytes != d.attachment_bytes)
    return Status(Code::kCorrupt, "'" + from + "' holds " + std::to_string(attachments) + " attachments (" +
                                      std::to_string(attachment_bytes) + " bytes); its manifest declares " +
                                      std::to_string(d.attachments) + " (" + std::to_string(d.attachment_bytes) +
                                      " bytes): it is cut or altered");
  return Status::Ok();
}

// Moves the checked work directory to `target` (missing or empty): one rename where it can; where the
// target cannot be removed (a mount point), entry by entry with the key last, so that a stop midway
// leaves no directory that opens as data.
Status MoveIntoPlace(WorkDir& work, const std::string& target) {
  if (fs::Exists(target) && ::rmdir(target.c_str()) != 0 && errno != ENOENT) {
    for (const char* name : {kAttachmentDirName, kServerDbFile, kServerKeyFile}) {
      const std::string a = fs::Join(work.path, name), b = fs::Join(target, name);
      if (::rename(a.c_str(), b.c_str()) != 0) return fs::FromErrno(errno, "cannot move the restored data to", b);
    }
    DALA_RETURN_IF_ERROR(fs::SyncDirectory(target));
    return Status::Ok();  // the work directory, empty now, is removed by its owner
  }
  if (::rename(work.path.c_str(), target.c_str()) != 0)
    return fs::FromErrno(errno, "cannot move the restored data to", target);
  work.moved = true;
  const auto parent = std::filesystem::path(target).parent_path().string();
  return fs::SyncDirectory(parent.empty() ? "." : parent);
}

}  // namespace

Result<RestoreSummary> Restore(const std::string& from, const std::string& dir, const std::string& key_file) {
  if (!InitSodium()) return Status(Code::kInternal, "libsodium could not start");
  std::error_code ec;
  if (fs::Exists(dir) && (!fs::IsDirectory(dir) || !std::filesystem::is_empty(dir, ec)))
    return Status(Code::kExists, "'" + dir + "' is not empty: restore into a new directory");
  std::optional<SecretBuffer> given;
  if (!key_file.empty()) {
    DALA_ASSIGN_OR_RETURN(SecretBuffer k, ReadKey(key_file));
    given.emplace(std::move(k));
  }
  std::filesystem::path target = std::filesystem::absolute(dir, ec).lexically_normal();
  if (ec || !target.has_parent_path()) return Status(Code::kInvalidArgument, "'" + dir + "' is not a directory path");
  if (target.filename().empty()) target = target.parent_path();  // a trailing slash
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(target.parent_path().string()));
  // Built in a directory beside `dir` and moved into place once checked whole: a failure, or a stop midway,
  // leaves `dir` as it was.
  WorkDir work;
  DALA_ASSIGN_OR_RETURN(work.path, MakeWorkDir(target));

  RestoreSummary out;
  nlohmann::json manifest;
  bool have_key = false;
  DALA_RETURN_IF_ERROR(Extract(from, work.path, given, &manifest, &have_key));
  if (!have_key) {
    if (!given)
      return Status(Code::kInvalidArgument, "this backup holds no database key: give --key FILE, a copy of the "
                                            "server.key of the data directory it was taken from");
    DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(fs::Join(work.path, kServerKeyFile), given->span()));
  }
  out.key_from_backup = have_key;
  DALA_RETURN_IF_ERROR(fs::SyncDirectory(fs::Join(work.path, kAttachmentDirName)));
  DALA_RETURN_IF_ERROR(fs::SyncDirectory(work.path));
  {
    DALA_ASSIGN_OR_RETURN(SecretBuffer key, ReadKey(fs::Join(work.path, kServerKeyFile)));
    DALA_RETURN_IF_ERROR(CheckLogKept(fs::Join(work.path, kServerDbFile), key));
  }
  {
    auto core = ServerCore::Open(work.path);
    if (!core.ok()) return core.status();
    DALA_ASSIGN_OR_RETURN(out.audit, (*core)->Audit());
    const AuditReport& a = out.audit;
    auto expect = [&](const char* field, uint64_t have) {
      if (manifest.value(field, uint64_t{0}) != have)
        out.audit.problems.push_back(std::string("the backup's manifest says ") + field + " " +
                                     std::to_string(manifest.value(field, uint64_t{0})) +
                                     ", the restored data holds " + std::to_string(have));
    };
    expect("reports", a.reports);
    expect("log_size", a.log_size);
    // With Extract's count of the files, this also says that no file is one the database does not record.
    expect("attachments", a.attachments);
    expect("attachment_bytes", a.attachment_bytes);
    if (manifest.value("server_key", "") != encoding::ToHex((*core)->server_key()))
      out.audit.problems.push_back("the backup's manifest names another server key than its database holds");
  }
  out.created = manifest.value("created", "");
  if (!out.audit.problems.empty()) return out;  // reported; nothing is moved into place
  DALA_RETURN_IF_ERROR(MoveIntoPlace(work, target.string()));
  return out;
}

}  // namespace dala::server
