#include "desk/desk_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <sodium.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <set>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/fsutil.h"
#include "crypto/chunk_tree.h"
#include "desk/desk_custody.h"
#include "desk/export_file.h"
#include "desk/export_merge.h"
#include "format/organisation.h"
#include "format/report.h"

namespace dala::desk {
namespace {

constexpr char kStoreContext[9] = "dalades1";  // the desk store's database key, from the master secret

// One row per report version; one per report (its latest version, denormalised for the list, and the case
// work); the attachments of each version; search over the latest content; the custody log.
constexpr const char* kSchema[] = {
    R"(CREATE TABLE meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
       CREATE TABLE imports(id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, server_key BLOB NOT NULL,
         export_hash BLOB NOT NULL, log_size INTEGER NOT NULL, added INTEGER NOT NULL, held INTEGER NOT NULL);
       CREATE TABLE versions(id INTEGER PRIMARY KEY, envelope_hash BLOB NOT NULL UNIQUE, device BLOB NOT NULL,
         report_id BLOB NOT NULL, version INTEGER NOT NULL, content_hash BLOB NOT NULL, verified INTEGER NOT NULL,
         problems TEXT NOT NULL, server_key BLOB, sequence INTEGER, received_ms INTEGER, leaf_index INTEGER,
         detail TEXT NOT NULL, content BLOB NOT NULL, envelope BLOB NOT NULL, receipt BLOB NOT NULL, import_id INTEGER NOT NULL,
         UNIQUE(device, report_id, version));
       CREATE TABLE attachments(version_id INTEGER NOT NULL, attachment_id BLOB NOT NULL, mime TEXT NOT NULL,
         size INTEGER NOT NULL, verified INTEGER NOT NULL, file_key BLOB NOT NULL, file TEXT NOT NULL,
         plaintext_hash BLOB NOT NULL, PRIMARY KEY(version_id, attachment_id)) WITHOUT ROWID;
       CREATE TABLE reports(rid INTEGER PRIMARY KEY, device BLOB NOT NULL, report_id BLOB NOT NULL,
         latest INTEGER NOT NULL, version INTEGER NOT NULL, form TEXT NOT NULL, place TEXT NOT NULL,
         created_ms INTEGER NOT NULL, sealed_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL,
         verified INTEGER NOT NULL, latitude REAL, longitude REAL, excerpt TEXT NOT NULL,
         status TEXT NOT NULL DEFAULT 'new', tags TEXT NOT NULL DEFAULT '', UNIQUE(device, report_id));
       CREATE INDEX reports_received ON reports(received_ms);
       CREATE INDEX reports_sealed ON reports(sealed_ms);
       CREATE INDEX reports_created ON reports(created_ms);
       CREATE INDEX reports_form ON reports(form, received_ms);
       CREATE INDEX reports_status ON reports(status, received_ms);
       CREATE INDEX reports_place ON reports(place);
       CREATE VIRTUAL TABLE search USING fts4(content, tokenize=unicode61);
       CREATE TABLE devices(device BLOB PRIMARY KEY, enrolled_ms INTEGER NOT NULL, server_key BLOB NOT NULL,
         invite_key BLOB NOT NULL, invite_issued_ms INTEGER NOT NULL, invite_expires_ms INTEGER NOT NULL,
         invite_uses INTEGER NOT NULL) WITHOUT ROWID;
       CREATE TABLE notes(id INTEGER PRIMARY KEY, rid INTEGER NOT NULL, time_ms INTEGER NOT NULL, text TEXT NOT NULL);
       CREATE INDEX notes_rid ON notes(rid);
       CREATE TABLE custody(seq INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, action TEXT NOT NULL,
         report TEXT NOT NULL, detail TEXT NOT NULL, prev BLOB NOT NULL, hash BLOB NOT NULL, signature BLOB NOT NULL);
       CREATE INDEX custody_report ON custody(report);)",
};

std::string Hex(std::string_view bytes) { return encoding::ToHex(crypto::Bytes(bytes)); }

std::string Excerpt(const std::string& narrative) {
  constexpr size_t kMax = 200;
  if (narrative.size() <= kMax) return narrative;
  size_t cut = kMax;
  while (cut > 0 && (static_cast<uint8_t>(narrative[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 sequence
  return narrative.substr(0, cut) + "…";
}

// The geo point a report is drawn at: its capture location, else its first geo field.
const v1::GeoPoint* GeoOf(const v1::ReportContent& c) {
  if (c.has_capture() && c.capture().has_location()) return &c.capture().location();
  for (const auto& f : c.fields())
    if (f.value().has_geo()) return &f.value().geo();
  return nullptr;
}


// Copies an encrypted attachment into the store: into a temporary file, checked against the root the
// device signed (the file may have changed since it was verified), synced, then renamed into place. A
// file already there that is not exactly that is replaced.
Status CopyChecked(const std::string& from, const std::string& to, std::string_view root, uint32_t chunk_size,
                   bool* created) {
  *created = false;
  if (root.size() != 32 || chunk_size == 0) return Status(Code::kVerify, "an attachment's manifest is malformed");
  if (fs::Exists(to)) {
    auto have = FileRoot(to, chunk_size);
    if (have.ok() && std::string_view(reinterpret_cast<const char*>(have->data()), 32) == root) return Status::Ok();
  }
  uint8_t r[8];
  randombytes_buf(r, sizeof r);
  const std::string tmp = to.substr(0, to.rfind('/') + 1) + ".tmp-" + encoding::ToHex(r);
  Status st = fs::CopyFile(from, tmp);
  if (st.ok()) {
    auto got = FileRoot(tmp, chunk_size);
    if (!got.ok()) st = got.status();
    else if (std::string_view(reinterpret_cast<const char*>(got->data()), 32) != root)
      st = Status(Code::kVerify, "an attachment file changed while it was imported");
  }
  if (st.ok() && std::rename(tmp.c_str(), to.c_str()) != 0) st = fs::FromErrno(errno, "could not rename", to);
  if (!st.ok()) {
    (void)fs::RemoveFile(tmp);
    return st;
  }
  *created = true;
  return Status::Ok();
}

}  // namespace

Result<DirLock> DirLock::Take(const std::string& dir, const char* name) {
  const std::string path = fs::Join(dir, name);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fs::FromErrno(errno, "could not open", path);
  while (::flock(fd, LOCK_EX) != 0) {
    if (errno != EINTR) {
      const int err = errno;
      ::close(fd);
      return fs::FromErrno(err, "could not lock", path);
    }
  }
  return DirLock(fd);
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);
}

Result<crypto::Hash> FileRoot(const std::string& path, uint32_t chunk_size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fs::FromErrno(errno, "could not open", path);
  attachment::ChunkTree tree(chunk_size);
  std::vector<uint8_t> buf(1u << 20);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return fs::FromErrno(err, "could not read", path);
    }
    if (n == 0) break;
    tree.Update(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  return tree.Finish();
}

std::string SearchText(const v1::ReportContent& c) {
  std::string text = c.form() + "\n" + c.narrative();
  for (const auto& f : c.fields()) {
    const auto& v = f.value();
    if (v.has_text()) text += "\n" + v.text();
    if (v.has_people())
      for (const auto& p : v.people().people()) text += "\n" + p.name() + " " + p.role();
  }
  return text;
}

std::string PlaceOf(const v1::ReportContent& c) {
  for (const auto& f : c.fields())
    if (f.key() == "place" && f.value().has_text()) return f.value().text();
  return "";
}

DeskStore::~DeskStore() = default;

std::string DeskStore::MediaPath(const std::string& file) const { return fs::Join(fs::Join(dir_, "media"), file); }

Result<std::unique_ptr<DeskStore>> DeskStore::Open(const Organisation& org, const std::string& dir) {
  if (dir.empty()) return Status(Code::kInvalidArgument, "the desk's data directory is not given");
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(dir));
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(fs::Join(dir, "media")));
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(fs::Join(dir, "exports")));
  DALA_ASSIGN_OR_RETURN(DirLock opening, DirLock::Take(dir, "open.lock"));
  std::unique_ptr<DeskStore> s(new DeskStore(org, dir));
  const std::string path = fs::Join(dir, "desk.db");
  SecretBuffer key = crypto::DeriveSubkey(org.master, kStoreContext, 0);
  auto db = db::Db::Open(path, key, !fs::Exists(path));
  if (!db.ok()) {
    if (db.status().code() == Code::kWrongKey || db.status().code() == Code::kCorrupt)
      return Status(Code::kWrongKey, "the desk store in " + dir + " was made with another organisation's key");
    return db.status();
  }
  s->db_ = std::move(*db);
  (void)::chmod(path.c_str(), 0600);
  // An import holds the write lock while it verifies: the web desk's custody entries wait for it.
  DALA_RETURN_IF_ERROR(s->db_.Exec("PRAGMA busy_timeout = 120000;"));
  DALA_RETURN_IF_ERROR(db::Migrate(s->db_, kSchema, "the desk store was written by a newer dala"));
  // The organisation it belongs to, written once.
  DALA_ASSIGN_OR_RETURN(auto st, s->db_.Prepare("SELECT value FROM meta WHERE key = 'organisation'"));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) {
    DALA_ASSIGN_OR_RETURN(auto ins, s->db_.Prepare("INSERT INTO meta(key, value) VALUES ('organisation', ?)"));
    DALA_RETURN_IF_ERROR(ins.Bind(1, org.root.public_key).Run());
  } else if (!std::equal(org.root.public_key.begin(), org.root.public_key.end(), st.BlobView(0).begin(),
                         st.BlobView(0).end())) {
    return Status(Code::kWrongKey, "the desk store in " + dir + " belongs to another organisation");
  }
  return s;
}

Result<ImportResult> DeskStore::Import(const std::string& export_path, OpenOptions options, bool keep_failed) {
  DALA_ASSIGN_OR_RETURN(DirLock lock, DirLock::Take(dir_, "import.lock"));
  // Copies an interrupted import left, swept under the import lock: at open they could be those of an
  // import running in another process.
  if (auto names = fs::ListFiles(fs::Join(dir_, "media")); names.ok())
    for (const auto& n : *names)
      if (n.rfind(".tmp-", 0) == 0) (void)fs::RemoveFile(MediaPath(n));
  ImportResult result;
  const std::string exports_dir = fs::Join(dir_, "exports");
  DALA_ASSIGN_OR_RETURN(auto earlier, fs::ListFiles(exports_dir));
  for (const auto& name : earlier)
    if (name.size() > 7 && name.substr(name.size() - 7) == ".export")
      options.earlier_exports.push_back(fs::Join(exports_dir, name));

  // The bytes every check is made on are the store's own copy, made first (only this import, under its lock,
  // writes it) and put in place once the import has committed. An incremental export (dala-server export
  // --since N) is joined to this server's kept export into that copy: the joined, full export is what every
  // check runs on and what is kept (docs/protocol.md, "Incremental exports"). The earlier reports'
  // attachments are found in the store's media, checked when imported. Neither export is held in memory.
  const std::string kept_next = fs::Join(exports_dir, "importing.next");
  struct RemoveOnExit {
    std::string path;
    ~RemoveOnExit() { (void)fs::RemoveFile(path); }
  } kept_next_file{kept_next};
  (void)fs::RemoveFile(kept_next);  // an interrupted import's
  std::string joined_note;
  crypto::Hash export_hash{};
  {
    auto kind = ReadExport(export_path, ExportParts{false, false, false, false});
    if (!kind.ok() && kind.status().code() == Code::kCorrupt)
      return Status(Code::kCorrupt, "'" + export_path + "' is not a dala-server export");
    if (!kind.ok()) return kind.status();  // unreadable, or larger than an export may be: nothing copied
    if (kind->log_from != 0) {
      const std::string kept = fs::Join(exports_dir, Hex(kind->server_key) + ".export");
      if (!fs::Exists(kept))
        return Status(Code::kNotFound, "'" + export_path + "' is an incremental export (the server's log from position " +
                                           std::to_string(kind->log_from) + " on), and this desk holds no earlier "
                                           "export of that server to join it to: import a full export first");
      DALA_ASSIGN_OR_RETURN(const Joined joined, JoinIncremental(kept, export_path, kept_next));
      export_hash = joined.joined;
      options.media_dirs = {export_path + ".media", fs::Join(dir_, "media")};
      joined_note = " (the incremental export " + encoding::ToHex(joined.incremental) + " from log position " +
                    std::to_string(kind->log_from) + " joined to the kept export)";
    } else {
      DALA_ASSIGN_OR_RETURN(export_hash, CopyExport(export_path, kept_next));
    }
  }

  // A full export's attachments held already (imported from another server, or pulled: dala desk pull
  // downloads only what the store lacks) are found in the store's media, checked as any other.
  if (options.media_dirs.empty()) options.media_dirs = {fs::Join(dir_, "media")};

  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  const int64_t now = SystemNowMs();
  DALA_ASSIGN_OR_RETURN(auto next_import, db_.Prepare("SELECT COALESCE(MAX(id), 0) + 1 FROM imports"));
  DALA_ASSIGN_OR_RETURN(bool has, next_import.Step());
  const int64_t import_id = has ? next_import.Int(0) : 1;
  next_import.Reset();

  std::vector<std::string> copied;  // media files this import created: removed again if it is refused
  uint64_t unopened = 0;            // entries that did not open with the organisation's keys
  options.summary_sink = [&](const std::string& s) { result.summary_json = s; };
  options.sink = [&](const OpenedEntry& e) -> Status {
    if (e.report == nullptr || e.device.size() != 32 || e.report_id.size() != 16) {
      ++unopened;  // refused below, --keep-failed or not: nothing of it could be kept
      return Status::Ok();
    }
    const crypto::Hash envelope_hash = crypto::Blake2b256(crypto::Bytes(e.envelope));
    // Held already: the same bytes, or the same version from another server of the organisation (the same
    // signed content sealed again). Other content for a version the store holds is refused.
    DALA_ASSIGN_OR_RETURN(auto held, db_.Prepare("SELECT envelope_hash, content_hash FROM versions "
                                                 "WHERE device = ? AND report_id = ? AND version = ?"));
    held.Bind(1, crypto::Bytes(e.device)).Bind(2, crypto::Bytes(e.report_id)).Bind(3, static_cast<int64_t>(e.version));
    DALA_ASSIGN_OR_RETURN(bool known, held.Step());
    if (known) {
      auto ch = held.BlobView(1);
      if (!std::equal(ch.begin(), ch.end(), e.report->content_hash.begin(), e.report->content_hash.end()))
        result.problems.push_back("report " + Hex(e.report_id) + " version " + std::to_string(e.version) +
                                  " is other signed content than the version the desk holds");
      ++result.held;
      return Status::Ok();
    }
    const v1::ReportContent& c = e.report->content;
    if (e.enrolment != nullptr && e.invite != nullptr) {  // how the device came to the organisation
      DALA_ASSIGN_OR_RETURN(auto dev, db_.Prepare(
          "INSERT OR IGNORE INTO devices(device, enrolled_ms, server_key, invite_key, invite_issued_ms, "
          "invite_expires_ms, invite_uses) VALUES (?, ?, ?, ?, ?, ?, ?)"));
      DALA_RETURN_IF_ERROR(dev.Bind(1, crypto::Bytes(e.device))
                               .Bind(2, e.enrolment->enrolled_ms())
                               .Bind(3, crypto::Bytes(e.invite->server_key()))
                               .Bind(4, crypto::Bytes(e.invite->enrol_key()))
                               .Bind(5, e.invite->issued_ms())
                               .Bind(6, e.invite->expires_ms())
                               .Bind(7, static_cast<int64_t>(e.invite->uses()))
                               .Run());
    }
    std::string problems = "[";
    for (size_t i = 0; i < e.problems->size(); ++i) problems += (i ? "," : "") + JsonEscape((*e.problems)[i]);
    problems += "]";
    DALA_ASSIGN_OR_RETURN(auto ins, db_.Prepare(
        "INSERT INTO versions(envelope_hash, device, report_id, version, content_hash, verified, problems, server_key, "
        "sequence, received_ms, leaf_index, detail, envelope, receipt, import_id, content) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    ins.Bind(1, envelope_hash)
        .Bind(2, crypto::Bytes(e.device))
        .Bind(3, crypto::Bytes(e.report_id))
        .Bind(4, static_cast<int64_t>(e.version))
        .Bind(5, e.report->content_hash)
        .Bind(6, e.verified ? 1 : 0)
        .BindText(7, problems);
    if (e.receipt_ok)
      ins.Bind(8, crypto::Bytes(e.server_key)).Bind(9, static_cast<int64_t>(e.sequence)).Bind(10, e.received_ms);
    else
      ins.BindNull(8).BindNull(9).BindNull(10);
    if (e.leaf_index >= 0) ins.Bind(11, e.leaf_index); else ins.BindNull(11);
    ins.BindText(12, e.json).Bind(13, crypto::Bytes(e.envelope)).Bind(14, crypto::Bytes(e.receipt)).Bind(15, import_id);
    ins.Bind(16, crypto::Bytes(c.SerializeAsString()));
    DALA_RETURN_IF_ERROR(ins.Run());
    const int64_t version_id = db_.LastInsertRowId();
    ++result.added;

    for (const auto& a : e.attachments) {
      const std::string file = Hex(e.device) + "-" + Hex(a.id);
      const std::string to = MediaPath(file);
      if (a.verified) {
        bool created = false;
        DALA_RETURN_IF_ERROR(CopyChecked(a.source, to, a.ciphertext_root, a.chunk_size, &created));
        if (created) copied.push_back(to);
      }
      DALA_ASSIGN_OR_RETURN(auto att, db_.Prepare(
          "INSERT OR REPLACE INTO attachments(version_id, attachment_id, mime, size, verified, file_key, file, "
          "plaintext_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
      DALA_RETURN_IF_ERROR(att.Bind(1, version_id)
                               .Bind(2, crypto::Bytes(a.id))
                               .BindText(3, a.mime)
                               .Bind(4, static_cast<int64_t>(a.size))
                               .Bind(5, a.verified ? 1 : 0)
                               .Bind(6, crypto::Bytes(a.key))
                               .BindText(7, a.verified ? file : std::string())
                               .Bind(8, crypto::Bytes(a.plaintext_hash))
                               .Run());
    }

    // The report's row follows its newest version.
    DALA_ASSIGN_OR_RETURN(auto cur, db_.Prepare("SELECT rid, version FROM reports WHERE device = ? AND report_id = ?"));
    cur.Bind(1, crypto::Bytes(e.device)).Bind(2, crypto::Bytes(e.report_id));
    DALA_ASSIGN_OR_RETURN(bool exists, cur.Step());
    const int64_t rid = exists ? cur.Int(0) : 0;
    if (exists && cur.Int(1) > static_cast<int64_t>(e.version)) return Status::Ok();
    cur.Reset();
    const v1::GeoPoint* geo = GeoOf(c);
    DALA_ASSIGN_OR_RETURN(auto up, db_.Prepare(
        exists ? "UPDATE reports SET latest = ?, version = ?, form = ?, place = ?, created_ms = ?, sealed_ms = ?, "
                 "received_ms = ?, verified = ?, latitude = ?, longitude = ?, excerpt = ? WHERE rid = ?"
               : "INSERT INTO reports(latest, version, form, place, created_ms, sealed_ms, received_ms, verified, "
                 "latitude, longitude, excerpt, device, report_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    up.Bind(1, version_id)
        .Bind(2, static_cast<int64_t>(e.version))
        .BindText(3, e.report->form())
        .BindText(4, PlaceOf(c))
        .Bind(5, c.created_ms())
        .Bind(6, c.sealed_ms())
        .Bind(7, e.receipt_ok ? e.received_ms : c.sealed_ms())
        .Bind(8, e.verified ? 1 : 0);
    if (geo != nullptr) up.BindDouble(9, geo->latitude()).BindDouble(10, geo->longitude());
    else up.BindNull(9).BindNull(10);
    up.BindText(11, Excerpt(c.narrative()));
    if (exists) up.Bind(12, rid); else up.Bind(12, crypto::Bytes(e.device)).Bind(13, crypto::Bytes(e.report_id));
    DALA_RETURN_IF_ERROR(up.Run());
    int64_t the_rid = rid;
    if (!exists) the_rid = db_.LastInsertRowId();
    ++result.reports_changed;
    DALA_ASSIGN_OR_RETURN(auto del, db_.Prepare("DELETE FROM search WHERE docid = ?"));
    DALA_RETURN_IF_ERROR(del.Bind(1, the_rid).Run());
    DALA_ASSIGN_OR_RETURN(auto idx, db_.Prepare("INSERT INTO search(docid, content) VALUES (?, ?)"));
    return idx.Bind(1, the_rid).BindText(2, SearchText(c)).Run();
  };

  auto undo_copies = [&] {
    for (const auto& f : copied) (void)fs::RemoveFile(f);
  };
  options.source_path = export_path;
  auto opened = OpenExport(org_, kept_next, std::string(), options);
  if (!opened.ok()) {
    undo_copies();
    return opened.status();
  }
  result.summary = *opened;
  const Summary& s = result.summary;
  auto problem = [&](uint64_t n, const std::string& what) {
    if (n > 0) result.problems.push_back(std::to_string(n) + " " + what);
  };
  problem(s.duplicates, "duplicated entries");
  problem(s.reordered, "entries out of the server's order");
  problem(s.unknown_fields, "places holding fields this desk does not know");
  problem(s.missing, "report versions the server received that the export lacks or holds as other bytes");
  problem(s.phone_receipts_invalid, "phone receipts no authorised server key signed");
  problem(s.log_problems, "problems with the server's log (or its log does not extend the desk's last import)");
  problem(s.timestamp_problems, "time-stamps that did not verify");
  if (!keep_failed) problem(s.failed, "report versions that failed a check (--keep-failed keeps them, marked)");
  problem(unopened, "entries that do not open with this organisation's keys (nothing of them can be kept)");
  if (!protocol::FindServer(org_.statement, crypto::Bytes(s.server_key)))
    result.problems.insert(result.problems.begin(),
                           "the export is of a server this organisation never authorised (another organisation's?)");
  if (!result.problems.empty()) {
    undo_copies();
    return result;  // the transaction rolls back
  }
  const std::string server_hex = Hex(s.server_key);
  if (Status synced = fs::SyncDirectory(fs::Join(dir_, "media")); !synced.ok()) {
    undo_copies();
    return synced;
  }
  DALA_ASSIGN_OR_RETURN(auto imp, db_.Prepare("INSERT INTO imports(id, time_ms, server_key, export_hash, log_size, "
                                              "added, held) VALUES (?, ?, ?, ?, ?, ?, ?)"));
  DALA_RETURN_IF_ERROR(imp.Bind(1, import_id)
                           .Bind(2, now)
                           .Bind(3, crypto::Bytes(s.server_key))
                           .Bind(4, export_hash)
                           .Bind(5, static_cast<int64_t>(s.log_size))
                           .Bind(6, static_cast<int64_t>(result.added))
                           .Bind(7, static_cast<int64_t>(result.held))
                           .Run());
  DALA_RETURN_IF_ERROR(AppendCustody(db_, org_, "import", "",
                                     "export " + encoding::ToHex(export_hash) + " of server " + server_hex + ": " +
                                         std::to_string(result.added) + " report versions added, " +
                                         std::to_string(result.held) + " held already" + joined_note,
                                     now));
  Status committed = txn.Commit();
  if (!committed.ok()) {
    undo_copies();
    return committed;
  }
  result.imported = true;
  // Then the export is kept (ciphertext only, the very bytes checked), so that the next import from its
  // server must extend its log. Kept only after the commit: a kept export that lags behind the store is
  // harmless (the next import is held against an older log), one ahead of it would not be.
  const std::string kept_path = fs::Join(exports_dir, server_hex + ".export");
  Status kept = ::rename(kept_next.c_str(), kept_path.c_str()) == 0 ? fs::SyncDirectory(exports_dir)
                                                                     : fs::FromErrno(errno, "could not write", kept_path);
  if (!kept.ok())
    result.problems.push_back("imported, but the export could not be kept for the next import's check: " + kept.message());
  return result;
}

Result<std::vector<int64_t>> DeskStore::FindReports(const std::vector<std::string>& ids) {
  std::vector<int64_t> out;
  DALA_ASSIGN_OR_RETURN(auto st, db_.Prepare("SELECT rid FROM reports WHERE report_id = ?"));
  for (const auto& id : ids) {
    std::array<uint8_t, 16> bytes{};
    if (id.size() != 32 || !encoding::FromHex(id, bytes))
      return Status(Code::kInvalidArgument, "'" + id + "' is not a report id (32 hexadecimal digits)");
    st.Bind(1, bytes);
    bool any = false;
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      out.push_back(st.Int(0));
      any = true;
    }
    st.Reset();
    if (!any) return Status(Code::kNotFound, "the desk holds no report " + id);
  }
  return out;
}

Result<std::string> DeskStore::ExportTableText(const ListQuery& q, TableFormat format, uint64_t* rows,
                                               const std::function<Status(const std::string&)>& deliver) {
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  ListQuery all = q;
  all.per_page = 0;
  DALA_ASSIGN_OR_RETURN(ListPage page, ListReports(db_, all));
  DALA_ASSIGN_OR_RETURN(std::string text, TableText(db_, q, format, rows));
  const char* what = format == TableFormat::kCsv ? "CSV" : "JSON Lines";
  const int64_t now = SystemNowMs();
  for (const auto& r : page.rows)
    DALA_RETURN_IF_ERROR(AppendCustody(db_, org_, "export", ReportName(r),
                                       std::string("exported as ") + what + " (version " + std::to_string(r.version) + ")", now));
  DALA_RETURN_IF_ERROR(AppendCustody(db_, org_, "export", "",
                                     std::string(what) + " of " + std::to_string(page.rows.size()) + " reports", now));
  if (deliver) DALA_RETURN_IF_ERROR(deliver(text));
  DALA_RETURN_IF_ERROR(txn.Commit());
  return text;
}

Result<uint64_t> DeskStore::ExportTable(const ListQuery& q, TableFormat format, const std::string& path) {
  uint64_t rows = 0;
  bool written = false;
  auto text = ExportTableText(q, format, &rows, [&](const std::string& t) {
    written = true;
    return fs::WriteFileAtomic(path, crypto::Bytes(t));
  });
  if (!text.ok()) {
    if (written) (void)fs::RemoveFile(path);  // no export without its custody entry
    return text.status();
  }
  return rows;
}

}  // namespace dala::desk
