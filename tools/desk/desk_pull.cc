#include "desk/desk_pull.h"
#include "desk/export_file.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <set>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/fsutil.h"
#include "format/envelope.h"
#include "format/invite.h"
#include "format/export_request.h"
#include "format/log.h"
#include "format/manifest.h"
#include "format/organisation.h"
#include "protocol/http_api.h"

namespace dala::desk {
namespace {

constexpr char kMetaPrefix[] = "pull:";  // + the server key in hex: where the store remembers its addresses
constexpr uint64_t kMaxPages = 1u << 20;
constexpr uint64_t kMaxJoinedBytes = (uint64_t{2} << 30) - (64u << 20);  // an import reads < 2 GiB, with a margin

std::string Hex(std::span<const uint8_t> b) { return encoding::ToHex(b); }

// A server's words, shown to a person: printable ASCII only, at most 200 characters (it is untrusted).
std::string Shown(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (out.size() >= 200) break;
    if (c >= 0x20 && c < 0x7f) out += c;
  }
  return out.empty() ? std::string("(no reason given)") : out;
}

// The servers this desk pulled from before, with their addresses (a v1::Invite holding only urls,
// server_key and tls_pin: the same three things an invite says about a server).
Result<std::vector<PullTarget>> Remembered(db::Db& db) {
  std::vector<PullTarget> out;
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("SELECT value FROM meta WHERE key LIKE 'pull:%' ORDER BY key"));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    auto b = st.BlobView(0);
    v1::Invite inv;
    if (!inv.ParseFromArray(b.data(), static_cast<int>(b.size())) || inv.server_key().size() != 32 ||
        inv.urls_size() == 0)
      return Status(Code::kCorrupt, "the desk store's record of a server it pulls from is damaged");
    PullTarget t;
    std::memcpy(t.server.data(), inv.server_key().data(), 32);
    t.urls.assign(inv.urls().begin(), inv.urls().end());
    t.tls_pin = inv.tls_pin();
    out.push_back(std::move(t));
  }
  return out;
}

Status Remember(db::Db& db, const PullTarget& t) {
  v1::Invite inv;
  for (const auto& u : t.urls) inv.add_urls(u);
  inv.set_server_key(t.server.data(), 32);
  inv.set_tls_pin(t.tls_pin);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db.Prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)"));
  const std::string bytes = inv.SerializeAsString();
  return st.BindText(1, kMetaPrefix + Hex(t.server)).Bind(2, crypto::Bytes(bytes)).Run();
}

// What the store kept from `server` at its last import: where its log ended (the next pull starts there),
// the heads it holds time-stamps over (those below stamps_from), and the devices it holds an enrolment of.
struct Kept {
  uint64_t bytes = 0;  // of the kept export, which the import joins to what is fetched
  uint64_t log_size = 0;
  uint64_t stamps_from = 0;
  std::set<std::string> enrolled;
};

Result<Kept> KeptOf(const DeskStore& store, const crypto::PublicKey& server) {
  Kept k;
  const std::string kept = fs::Join(fs::Join(store.dir(), "exports"), Hex(server) + ".export");
  if (!fs::Exists(kept)) return k;
  // Read through, its entries and leaves skipped (counted only).
  auto ex = ReadExport(kept, ExportParts{false, false, true, true});
  if (!ex.ok()) {
    if (ex.status().code() != Code::kCorrupt) return ex.status();
    return Status(Code::kCorrupt, "the desk's kept export of this server is damaged");
  }
  k.bytes = ex->size;
  k.log_size = ex->log_from + ex->log_size;
  // Heads are stamped in the order of their sizes, one stamp each (a stamp two nodes store out of that
  // order may be missed: a later one then dates those leaves): the desk asks for those over larger heads.
  for (const auto& t : ex->timestamps) k.stamps_from = std::max(k.stamps_from, protocol::LogHeadSize(t.head()) + 1);
  for (const auto& e : ex->enrolments) k.enrolled.insert(e.device_key());
  return k;
}

class Puller {
 public:
  Puller(Organisation& org, DeskStore& store, sync::Transport& transport, const PullOptions& o, PullTarget target)
      : org_(org), store_(store), transport_(transport), options_(o), target_(std::move(target)),
        key_(PullKey(org)),
        range_(std::clamp<uint32_t>(o.range_bytes, 1, protocol::kMaxExportRange)) {}

  Status Run(PullResult& out) {
    out.server = target_.server;
    DALA_ASSIGN_OR_RETURN(Kept kept, KeptOf(store_, target_.server));
    out.log_from = kept.log_size;
    const std::string stage = fs::Join(store_.dir(), "pull");
    const std::string export_path = fs::Join(stage, Hex(target_.server) + ".export");
    const std::string media = export_path + ".media";
    struct RemoveOnExit {
      std::string path;
      ~RemoveOnExit() { (void)fs::RemoveFile(path); }
    } staged{export_path};
    // The pages go to the staged file as they come (one page in memory at a time), then the file is read
    // through for what it names.
    DALA_RETURN_IF_ERROR(FetchPages(kept, export_path, &out));
    DALA_ASSIGN_OR_RETURN(ExportFile all, ReadExport(export_path, ExportParts{true, false, true, false}));
    out.log_size = all.log_from + all.log_size;
    // Attachments only of devices enrolled through an invite of this organisation: a server cannot make the
    // desk download for devices that are none of the organisation's.
    std::set<std::string> enrolled = std::move(kept.enrolled);
    for (const auto& e : all.enrolments)
      if (protocol::CheckSignedInvite(e.invite(), &org_.root.public_key).ok()) enrolled.insert(e.device_key());
    DALA_RETURN_IF_ERROR(FetchMedia(all, enrolled, media, &out));
    DALA_ASSIGN_OR_RETURN(out.import, store_.Import(export_path, options_.open, false));
    if (!out.import.imported) return Status::Ok();  // downloads kept: each is checked again before it is used
    DALA_RETURN_IF_ERROR(Remember(store_.db(), target_));
    // In the store now (the export kept in DATA/exports, the media in DATA/media).
    if (auto names = fs::ListFiles(media); names.ok())
      for (const auto& n : *names) (void)fs::RemoveFile(fs::Join(media, n));
    (void)::rmdir(media.c_str());
    return Status::Ok();
  }

 private:
  // One signed request, to the first address that answers at all.
  Result<sync::HttpResponse> Send(v1::ExportRequest req, bool with_statement = false) {
    req.set_server_key(target_.server.data(), 32);
    req.set_time_ms(SystemNowMs());
    uint8_t nonce[16];
    randombytes_buf(nonce, sizeof nonce);
    req.set_nonce(nonce, sizeof nonce);
    if (with_statement) req.set_statement(org_.signed_statement);  // the server learns it with the first page
    sync::HttpRequest h;
    h.path = protocol::kPathExport;
    h.body = protocol::SignExportRequest(key_, std::move(req));
    Status last(Code::kIo, "no address to reach the server at");
    for (const auto& url : target_.urls) {
      auto r = transport_.Post(url, h, options_.timeout_ms, target_.tls_pin);
      if (r.ok()) {
        url_ = url;
        return r;
      }
      last = r.status();
    }
    return last;
  }

  Status Refused(const sync::HttpResponse& r) const {
    return Status(r.status == 403 ? Code::kPermission : Code::kIo,
                  "the server at " + url_ + " answered " + std::to_string(r.status) + ": " + Shown(r.body));
  }

  // Every page from where the kept export ended up to the newest head the server signed, joined into one
  // incremental export (at most 2 GiB: what an import reads) at `path`, synced: the first page whole, the
  // reports, enrolments, leaves and time-stamps of the next ones after it (as protobuf joins messages).
  Status FetchPages(const Kept& kept, const std::string& path, PullResult* out) {
    DALA_RETURN_IF_ERROR(fs::EnsureDirectory(fs::Join(store_.dir(), "pull")));
    (void)fs::RemoveFile(path);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return fs::FromErrno(errno, "create", path);
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    auto append = [&](const std::string& b) {
      return fs::WriteAll(fd, reinterpret_cast<const uint8_t*>(b.data()), b.size(), path);
    };
    uint64_t from = kept.log_size, size = 0, bytes = 0;
    for (uint64_t page = 0; page < kMaxPages; ++page) {
      v1::ExportRequest req;
      req.mutable_page()->set_log_from(from);
      req.mutable_page()->set_log_size(size);
      req.mutable_page()->set_stamps_from(kept.stamps_from);
      DALA_ASSIGN_OR_RETURN(sync::HttpResponse r, Send(std::move(req), page == 0));
      if (r.status != 200) return Refused(r);
      bytes += r.body.size();
      if (kept.bytes + bytes > kMaxJoinedBytes)
        return Status(Code::kTooLarge, "the server at " + url_ + " sent more in one pull than an import reads "
                                       "(2 GiB with the export kept from it)");
      v1::Export ex;
      if (!ex.ParseFromString(r.body))
        return Status(Code::kCorrupt, "the server at " + url_ + " answered with something that is not an export");
      if (ex.server_key() != std::string_view(reinterpret_cast<const char*>(target_.server.data()), 32))
        return Status(Code::kVerify, "the server at " + url_ + " answered with another server's export");
      if (ex.log_from() != from)
        return Status(Code::kCorrupt, "the server at " + url_ + " answered with another part of its log than asked");
      ++out->pages;
      const uint64_t leaves = static_cast<uint64_t>(ex.log_size());
      if (page == 0) {
        size = protocol::LogHeadSize(ex.log_head());  // checked with everything else at import
        DALA_RETURN_IF_ERROR(append(ex.SerializeAsString()));
      } else {
        if (leaves == 0) return Status(Code::kCorrupt, "the server at " + url_ + " answered with an empty page");
        std::string more;
        for (const auto& l : ex.log()) AppendBytesField(5, l, &more);
        for (const auto& rep : ex.reports()) AppendBytesField(2, rep.SerializeAsString(), &more);
        for (const auto& e : ex.enrolments()) AppendBytesField(3, e.SerializeAsString(), &more);
        for (const auto& t : ex.timestamps()) AppendBytesField(7, t.SerializeAsString(), &more);
        DALA_RETURN_IF_ERROR(append(more));
      }
      from += leaves;
      if (from >= size) return ::fsync(fd) == 0 ? Status::Ok() : fs::FromErrno(errno, "sync", path);
    }
    return Status(Code::kCorrupt, "the server at " + url_ + " answered with too many pages");
  }

  // The attachment files of every fetched report of an enrolled device that the store does not hold, into
  // `media`.
  Status FetchMedia(const ExportFile& all, const std::set<std::string>& enrolled, const std::string& media,
                    PullResult* out) {
    DALA_ASSIGN_OR_RETURN(EntryReader reader, EntryReader::Open(all.path));
    std::string entry;
    for (const auto& place : all.entries) {
      std::string_view envelope_bytes, receipt_bytes;
      DALA_RETURN_IF_ERROR(reader.Read(place, &entry));
      envelope::Header h;
      if (!SplitEntry(entry, &envelope_bytes, &receipt_bytes) ||
          !envelope::Verify(crypto::Bytes(envelope_bytes), &h).ok())
        continue;  // the import says why
      if (!enrolled.count(std::string(reinterpret_cast<const char*>(h.device_key.data()), h.device_key.size())))
        continue;  // likewise
      for (const auto& m : h.attachments) {
        const std::string name = attachment::FileName(h.device_key, crypto::Bytes(m.attachment_id()));
        if (fs::Exists(store_.MediaPath(name))) continue;
        if (const std::string staged = fs::Join(media, name); fs::Exists(staged)) {
          // Fetched by an earlier pull whose import did not happen: kept if it is the file the device
          // signed, else fetched again.
          auto root = FileRoot(staged, m.chunk_size());
          if (root.ok() && std::string_view(reinterpret_cast<const char*>(root->data()), 32) == m.root()) continue;
          (void)fs::RemoveFile(staged);
        }
        DALA_RETURN_IF_ERROR(fs::EnsureDirectory(media));
        DALA_ASSIGN_OR_RETURN(bool got, Download(h.device_key, m, fs::Join(media, name), out));
        if (got) ++out->media_files;
      }
    }
    return Status::Ok();
  }

  // One attachment file, range by range, appended to NAME.part (kept between pulls: the next one resumes
  // there) and renamed when whole. Its bytes are checked against the signed manifest at import. False: the
  // server does not hold it whole (an upload not finished); the import then says it is missing.
  Result<bool> Download(std::span<const uint8_t> device, const v1::AttachmentManifest& m, const std::string& to,
                        PullResult* out) {
    const std::string part = to + ".part";
    int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return fs::FromErrno(errno, "could not create", part);
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat sb{};
    if (::fstat(fd, &sb) != 0) return fs::FromErrno(errno, "could not read", part);
    uint64_t offset = static_cast<uint64_t>(sb.st_size);
    if (offset > m.size()) {  // not this attachment's beginning: start again
      if (::ftruncate(fd, 0) != 0) return fs::FromErrno(errno, "could not write", part);
      offset = 0;
    }
    while (offset < m.size()) {
      v1::ExportRequest req;
      auto* a = req.mutable_attachment();
      a->set_device_key(device.data(), device.size());
      a->set_attachment_id(m.attachment_id());
      a->set_offset(offset);
      const uint32_t asked = static_cast<uint32_t>(std::min<uint64_t>(range_, m.size() - offset));
      a->set_length(asked);
      DALA_ASSIGN_OR_RETURN(sync::HttpResponse r, Send(std::move(req)));
      if (r.status == 404) return false;
      if (r.status != 200) return Refused(r);
      if (r.body.empty() || r.body.size() > asked)
        return Status(Code::kCorrupt, "the server at " + url_ + " answered with the wrong number of attachment bytes");
      DALA_RETURN_IF_ERROR(fs::WriteAll(fd, reinterpret_cast<const uint8_t*>(r.body.data()), r.body.size(), part));
      offset += r.body.size();
      out->media_bytes += r.body.size();
    }
    if (::fsync(fd) != 0) return fs::FromErrno(errno, "could not write", part);
    if (std::rename(part.c_str(), to.c_str()) != 0) return fs::FromErrno(errno, "could not rename", part);
    return true;
  }

  Organisation& org_;
  DeskStore& store_;
  sync::Transport& transport_;
  const PullOptions& options_;
  PullTarget target_;
  crypto::SigningKey key_;
  uint32_t range_;
  std::string url_;
};

}  // namespace

Result<std::vector<PullResult>> Pull(Organisation& org, DeskStore& store, const PullOptions& options,
                                     sync::Transport& transport) {
  std::vector<PullTarget> targets;
  if (!options.target.urls.empty()) {
    for (const auto& u : options.target.urls) DALA_RETURN_IF_ERROR(protocol::CheckServerUrl(u));
    if (!options.target.tls_pin.empty() && options.target.tls_pin.size() != 32)
      return Status(Code::kInvalidArgument, "a TLS pin is 32 bytes");
    PullTarget t = options.target;
    if (t.server == crypto::PublicKey{}) {
      // The one server the organisation authorises (and has not revoked).
      int found = 0;
      for (const auto& s : org.statement.servers())
        if (s.revoked_ms() == 0 && s.server_key().size() == 32) {
          std::memcpy(t.server.data(), s.server_key().data(), 32);
          ++found;
        }
      if (found != 1)
        return Status(Code::kInvalidArgument, "the organisation authorises " + std::to_string(found) +
                                                  " servers: name the one at this address (its key)");
    } else if (!protocol::FindServer(org.statement, t.server)) {
      return Status(Code::kInvalidArgument, "the organisation never authorised that server key");
    }
    targets.push_back(std::move(t));
  } else {
    DALA_ASSIGN_OR_RETURN(targets, Remembered(store.db()));
    if (targets.empty())
      return Status(Code::kInvalidArgument, "this desk has not pulled from any server yet: give the server's address");
  }
  // The statement must list this desk's pull key; the first request carries the statement, so the server
  // learns it then.
  DALA_ASSIGN_OR_RETURN(bool listed, ListDesk(org, PullKey(org).public_key, SystemNowMs()));
  const std::string stage = fs::Join(store.dir(), "pull");
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(stage));
  DALA_ASSIGN_OR_RETURN(DirLock lock, DirLock::Take(stage, "pull.lock"));  // a second pull waits
  std::vector<PullResult> out;
  for (auto& t : targets) {
    // One server's failure (unreachable, refusing) is that server's result; the others are still pulled.
    PullResult r;
    r.listed_desk = listed;
    listed = false;
    auto done = Puller(org, store, transport, options, std::move(t)).Run(r);
    if (!done.ok()) r.error = done;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace dala::desk
