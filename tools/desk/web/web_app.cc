#include "desk/web/web_app.h"

#include <sodium.h>

#include <chrono>
#include <ctime>

#include "base/clock.h"
#include "base/encoding.h"
#include "desk/desk_custody.h"
#include "desk/evidence.h"
#include "base/fsutil.h"
#include "desk/desk_table.h"
#include "desk/web/web_pages.h"
#include "format/report.h"

namespace dala::desk::web {
namespace {

constexpr const char* kCookie = "desk_session";
constexpr int64_t kIdleMs = 8 * 3600 * 1000;   // a session unused this long is locked
constexpr size_t kMaxNote = 20000, kMaxTag = 64, kMaxTags = 32;

std::string RandomToken() {
  uint8_t b[32];
  randombytes_buf(b, sizeof b);
  char out[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(out, sizeof out, b, sizeof b, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(b, sizeof b);
  return out;
}

bool SameSecret(const std::string& a, const std::string& b) {
  return a.size() == b.size() && !a.empty() && sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Param(const std::vector<std::pair<std::string, std::string>>& p, const char* name) {
  for (const auto& [k, v] : p)
    if (k == name) return v;
  return "";
}

// "YYYY-MM-DD" (UTC) to Unix ms; 0 when empty or malformed.
int64_t DateMs(const std::string& s) {
  int y = 0, m = 0, d = 0;
  if (s.size() != 10 || std::sscanf(s.c_str(), "%4d-%2d-%2d", &y, &m, &d) != 3 || m < 1 || m > 12 || d < 1 || d > 31)
    return 0;
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = m - 1;
  tm.tm_mday = d;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

ListQuery QueryFrom(const std::vector<std::pair<std::string, std::string>>& p) {
  ListQuery q;
  q.text = Param(p, "q");
  q.form = Param(p, "form");
  q.place = Param(p, "place");
  q.device = Param(p, "device");
  q.status = Param(p, "status");
  q.tag = Param(p, "tag");
  const std::string v = Param(p, "verified");
  q.verified = v == "yes" ? 1 : v == "no" ? 0 : -1;
  q.from_ms = DateMs(Param(p, "from"));
  if (int64_t to = DateMs(Param(p, "to")); to > 0) q.to_ms = to + 86400000;  // the whole day
  if (std::string s = Param(p, "sort"); !s.empty()) q.sort = s;
  q.descending = Param(p, "dir") != "asc";
  const std::string page = Param(p, "page");
  if (!page.empty() && page.size() < 7 && page.find_first_not_of("0123456789") == std::string::npos)
    q.page = static_cast<uint32_t>(std::stoul(page));
  return q;
}

Response Html(unsigned status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

Response Redirect(const std::string& to) {
  Response r;
  r.status = 303;
  r.headers.emplace_back("Location", to);
  return r;
}

Response Error(const Status& st) {
  const unsigned code = st.code() == Code::kNotFound ? 404 : st.code() == Code::kInvalidArgument ? 400 : 500;
  return Html(code, MessagePage(code == 404 ? "Not found" : code == 400 ? "Not accepted" : "Something failed",
                                st.message()));
}


// Tags as typed: words split at spaces and commas, each at most kMaxTag bytes of valid UTF-8 with no
// control characters, at most kMaxTags, joined by one space.
Result<std::string> NormaliseTags(const std::string& typed) {
  std::vector<std::string> tags;
  std::string word;
  auto flush = [&]() -> Status {
    if (word.empty()) return Status::Ok();
    if (word.size() > kMaxTag || !IsValidUtf8(word)) return Status(Code::kInvalidArgument, "a tag is too long or not text");
    for (unsigned char c : word)
      if (c < 0x20 || c == 0x7f) return Status(Code::kInvalidArgument, "a tag holds a control character");
    if (std::find(tags.begin(), tags.end(), word) == tags.end()) tags.push_back(word);
    word.clear();
    return Status::Ok();
  };
  for (char c : typed) {
    if (c == ' ' || c == ',' || c == '\t' || c == '\n' || c == '\r') DALA_RETURN_IF_ERROR(flush());
    else word.push_back(c);
  }
  DALA_RETURN_IF_ERROR(flush());
  if (tags.size() > kMaxTags) return Status(Code::kInvalidArgument, "at most 32 tags");
  std::string out;
  for (const auto& t : tags) out += (out.empty() ? "" : " ") + t;
  return out;
}

}  // namespace

std::string LoginUrl(const App& app, const std::string& origin) {
  return origin + app.base() + "login?token=" + app.login_token();
}

App::App(DeskStore& store, std::string origin, bool secure, std::unique_ptr<TileSource> tiles)
    : store_(store), origin_(std::move(origin)), secure_(secure), tiles_(std::move(tiles)), token_(RandomToken()),
      base_("/" + RandomToken().substr(0, 22) + "/") {}

Status App::Log(std::string_view action, std::string_view report, std::string_view detail) {
  db::Txn txn(store_.db());
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_RETURN_IF_ERROR(AppendCustody(store_.db(), store_.org(), action, report, detail, SystemNowMs()));
  return txn.Commit();
}

Response App::Handle(const Request& r) {
  Response out;
  {
    std::lock_guard lock(mu_);
    // Everything lives under the secret path; what is not under it does not exist.
    const bool under = r.path.size() > base_.size() && r.path.compare(0, base_.size(), base_) == 0;
    Request in = r;
    in.path = under ? "/" + r.path.substr(base_.size()) : "";
    if (r.path == "/favicon.ico") {
      out.status = 204;  // no icon (and no error in the browser's console)
    } else if (!under && r.path + "/" != base_) {
      out = Html(404, MessagePage("Not found", "There is nothing here. Open the address that dala desk serve printed."));
    } else if (!under) {
      out = Redirect(base_ + "reports");
    } else if (in.path == "/login") {
      out = Login(in);
    } else {
      // Every other request needs a session that the one-time token opened.
      std::string sid;
      const std::string prefix = std::string(kCookie) + "=";
      for (size_t at = 0; at < r.cookie.size();) {
        size_t end = r.cookie.find(';', at);
        std::string part = r.cookie.substr(at, end == std::string::npos ? std::string::npos : end - at);
        while (!part.empty() && part[0] == ' ') part.erase(0, 1);
        if (part.rfind(prefix, 0) == 0) sid = part.substr(prefix.size());
        if (end == std::string::npos) break;
        at = end + 1;
      }
      auto it = sid.empty() ? sessions_.end() : sessions_.find(sid);
      const int64_t now = SystemNowMs();
      if (it != sessions_.end() && now - it->second.last_ms > kIdleMs) {
        sessions_.erase(it);
        it = sessions_.end();
      }
      if (it == sessions_.end()) {
        out = Html(401, MessagePage("Locked", "Open the address that dala desk serve printed (each works once), or "
                                              "restart it for a new one."));
      } else {
        it->second.last_ms = now;
        const bool changes = r.method == "POST";
        if (changes && (!SameSecret(Param(r.form, "csrf"), it->second.csrf) ||
                        (!r.origin.empty() && r.origin != origin_))) {
          out = Html(403, MessagePage("Refused", "This request did not come from a page of this desk.", base_));
        } else if (changes && in.path == "/logout") {
          sessions_.erase(it);
          out = Html(200, MessagePage("Locked", "The desk is locked in this browser."));
          out.headers.emplace_back("Set-Cookie", std::string(kCookie) + "=; Path=" + base_ +
                                                     "; Max-Age=0; HttpOnly; SameSite=Strict");
        } else {
          out = Route(in, it->second, sid);
        }
      }
    }
  }
  // Every answer: nothing from outside, no scripts at all, no framing, no sniffing, no caching.
  if (!out.media)
    out.headers.emplace_back("Content-Security-Policy",
                             "default-src 'none'; style-src 'self'; img-src 'self'; media-src 'self'; "
                             "form-action 'self'; frame-ancestors 'none'; base-uri 'self'");
  out.headers.emplace_back("X-Content-Type-Options", "nosniff");
  out.headers.emplace_back("X-Frame-Options", "DENY");
  // same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on its own forms.
  out.headers.emplace_back("Referrer-Policy", "same-origin");
  out.headers.emplace_back("Cache-Control", "no-store");
  out.headers.emplace_back("Cross-Origin-Opener-Policy", "same-origin");
  out.headers.emplace_back("Cross-Origin-Resource-Policy", "same-origin");
  return out;
}

Response App::Login(const Request& r) {
  if (r.method != "GET" || token_used_ || !SameSecret(Param(r.query, "token"), token_))
    return Html(403, MessagePage("Refused", "This login address is wrong or was used already: each works once. "
                                            "Restart dala desk serve for a new one."));
  token_used_ = true;
  const std::string sid = RandomToken();
  sessions_[sid] = Session{RandomToken(), SystemNowMs(), {}};
  Response out = Redirect(base_ + "reports");
  // Scoped to the secret path: a browser sends it to no other server on this machine (cookies are not
  // separated by port), which would not know the path.
  out.headers.emplace_back("Set-Cookie", std::string(kCookie) + "=" + sid + "; Path=" + base_ +
                                             "; HttpOnly; SameSite=Strict" + (secure_ ? "; Secure" : ""));
  (void)Log("login", "", "a browser opened the desk with the one-time address");
  return out;
}

Response App::Route(const Request& r, Session& s, const std::string& sid) {
  (void)sid;
  const std::string& p = r.path;
  const bool get = r.method == "GET" || r.method == "HEAD";
  auto rid_of = [](const std::string& text, int64_t* rid) {
    if (text.empty() || text.size() > 15 || text.find_first_not_of("0123456789") != std::string::npos) return false;
    *rid = std::stoll(text);
    return true;
  };
  if (get && p == "/") return Redirect(base_ + "reports");
  if (get && p == "/static/desk.css") {
    Response css;
    css.content_type = "text/css; charset=utf-8";
    css.body = kDeskCss;
    return css;
  }
  if (get && p == "/reports") return Reports(r, s);
  if (get && p == "/overview") {
    auto o = LoadOverview(store_.db());
    if (!o.ok()) return Error(o.status());
    return Html(200, OverviewPage({s.csrf, "Overview", base_, tiles_.get()}, *o));
  }
  if (get && p == "/devices") {
    auto d = ListDevices(store_.db());
    if (!d.ok()) return Error(d.status());
    return Html(200, DevicesPage({s.csrf, "Devices", base_, tiles_.get()}, *d));
  }
  if (get && p == "/custody") {
    auto all = ReadCustody(store_.db());
    if (!all.ok()) return Error(all.status());
    return Html(200, CustodyPage({s.csrf, "Custody log", base_, tiles_.get()}, *all, VerifyCustody(*all, store_.org().root.public_key)));
  }
  if (r.method == "POST" && p == "/custody/export") return CustodyExport();
  if (r.method == "POST" && p == "/export") return Export(r);
  int64_t rid = 0;
  if (p.rfind("/report/", 0) == 0) {
    std::string rest = p.substr(8);
    const size_t slash = rest.find('/');
    if (!rid_of(rest.substr(0, slash), &rid)) return Error(Status(Code::kNotFound, "no such page"));
    const std::string action = slash == std::string::npos ? "" : rest.substr(slash);
    if (get && action.empty()) return Report(rid, s);
    if (r.method == "POST" && action == "/case") return Case(r, rid);
    if (r.method == "POST" && action == "/note") return Note(r, rid);
    if (r.method == "POST" && action == "/evidence") return Evidence(rid);
  }
  if (get && p.rfind("/tiles/", 0) == 0) return MapTile(p.substr(7));
  if (get && p.rfind("/media/", 0) == 0) {
    std::string rest = p.substr(7);
    const size_t slash = rest.find('/');
    if (slash != std::string::npos && rid_of(rest.substr(0, slash), &rid)) return Media(r, rid, rest.substr(slash + 1), s);
  }
  return Error(Status(Code::kNotFound, "no such page"));
}

// BASE/tiles/Z/X/Y: one of the organisation's own map tiles, only an image (PNG, JPEG, WebP) by its bytes.
Response App::MapTile(const std::string& zxy) {
  const Status none(Code::kNotFound, "no such tile");
  if (tiles_ == nullptr) return Error(none);
  int64_t n[3];
  size_t at = 0;
  for (int i = 0; i < 3; ++i) {
    const size_t end = i < 2 ? zxy.find('/', at) : zxy.size();
    if (end == std::string::npos) return Error(none);
    const std::string part = zxy.substr(at, end - at);
    if (part.empty() || part.size() > 8 || part.find_first_not_of("0123456789") != std::string::npos) return Error(none);
    n[i] = std::stoll(part);
    at = end + 1;
  }
  if (n[0] > kMaxZoom) return Error(none);
  auto tile = tiles_->Read(static_cast<int>(n[0]), n[1], n[2]);
  if (!tile.ok()) return Error(none);
  Response out;
  out.content_type = tile->content_type;
  out.body = std::move(tile->bytes);
  return out;
}

Response App::Reports(const Request& r, Session& s) {
  const auto start = std::chrono::steady_clock::now();
  ListQuery q = QueryFrom(r.query);
  auto page = ListReports(store_.db(), q);
  if (!page.ok()) return Error(page.status());
  auto forms = ListForms(store_.db());
  if (!forms.ok()) return Error(forms.status());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  Response out = Html(200, ReportsPage({s.csrf, "Reports", base_, tiles_.get()}, q, *page, *forms, ms));
  out.headers.emplace_back("Server-Timing", "db;dur=" + std::to_string(ms));
  return out;
}

Response App::Report(int64_t rid, Session& s) {
  auto d = LoadReport(store_.db(), rid);
  if (!d.ok()) return Error(d.status());
  const std::string name = ReportName(d->row);
  if (Status st = Log("view", name, "viewed version " + std::to_string(d->row.version)); !st.ok()) return Error(st);
  auto device = LoadDevice(store_.db(), d->row.device);
  auto custody = ReadCustody(store_.db(), name);
  if (!custody.ok()) return Error(custody.status());
  return Html(200, ReportPage({s.csrf, "Report " + d->row.report_id.substr(0, 8), base_, tiles_.get()}, *d, device.ok() ? &*device : nullptr,
                              *custody, encoding::ToHex(store_.org().root.public_key)));
}

std::shared_ptr<MediaReader> App::Reader(const AttachmentRow& a) {
  // By file and key: the same file name under another key (a device reusing an attachment id) is
  // another reader.
  const std::string cache_key = a.file + ":" + encoding::ToHex(a.key) + ":" + std::to_string(a.size);
  if (auto it = media_.find(cache_key); it != media_.end()) return it->second;
  auto opened = MediaReader::Open(store_.MediaPath(a.file), a.key, a.size);
  if (!opened.ok()) return nullptr;
  std::shared_ptr<MediaReader> reader = std::move(*opened);
  media_[cache_key] = reader;
  media_order_.push_back(cache_key);
  if (media_order_.size() > 16) {  // keep the last few (their piece states are in locked memory)
    media_.erase(media_order_.front());
    media_order_.erase(media_order_.begin());
  }
  return reader;
}

Response App::Media(const Request& r, int64_t rid, const std::string& att, Session& s) {
  auto a = LoadAttachment(store_.db(), rid, att);
  if (!a.ok()) return Error(a.status());
  if (!a->verified || a->file.empty()) return Error(Status(Code::kNotFound, "this attachment did not verify"));
  std::shared_ptr<MediaReader> reader = Reader(*a);
  if (!reader) return Error(Status(Code::kCorrupt, "the attachment's file cannot be read"));
  if (!s.media_logged[a->file]) {
    auto d = LoadReport(store_.db(), rid);
    if (d.ok() && Log("media", ReportName(d->row), "opened attachment " + att).ok()) s.media_logged[a->file] = true;
  }
  Response out;
  const uint64_t size = reader->size();
  // Served only as what cannot run: images and audio/video the browser plays; anything else (SVG, HTML,
  // PDF...) is a download of bytes.
  const bool inline_ok = (IsPassiveImage(a->mime) || IsPlayableMedia(a->mime)) && Param(r.query, "download").empty();
  out.content_type = inline_ok ? a->mime : "application/octet-stream";
  out.headers.emplace_back("Content-Disposition", std::string(inline_ok ? "inline" : "attachment") +
                                                      "; filename=\"" + att + MediaExtension(a->mime) + "\"");
  // Opened on its own, the browser shows it in a viewer page of its own making (inline styles, no script):
  // sandboxed, nothing else allowed.
  out.headers.emplace_back("Content-Security-Policy",
                           "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox");
  out.headers.emplace_back("Accept-Ranges", "bytes");
  out.media = reader;
  out.offset = 0;
  out.length = size;
  // One range, "bytes=A-B", "bytes=A-" or "bytes=-N"; several ranges: the whole file.
  if (r.range.rfind("bytes=", 0) == 0 && r.range.find(',') == std::string::npos) {
    const std::string spec = r.range.substr(6);
    const size_t dash = spec.find('-');
    auto number = [](const std::string& t, uint64_t* v) {
      if (t.empty() || t.size() > 19 || t.find_first_not_of("0123456789") != std::string::npos) return false;
      *v = std::stoull(t);
      return true;
    };
    uint64_t first = 0, last = 0;
    const std::string a_text = dash == std::string::npos ? spec : spec.substr(0, dash);
    const std::string b_text = dash == std::string::npos ? "" : spec.substr(dash + 1);
    bool ok = dash != std::string::npos;
    if (ok && a_text.empty()) {  // the last N bytes
      uint64_t n = 0;
      ok = number(b_text, &n) && n > 0;
      first = n >= size ? 0 : size - n;
      last = size == 0 ? 0 : size - 1;
    } else if (ok) {
      ok = number(a_text, &first);
      last = size == 0 ? 0 : size - 1;
      if (ok && !b_text.empty()) ok = number(b_text, &last) && last >= first;
      last = std::min(last, size == 0 ? 0 : size - 1);
    }
    if (ok && (first >= size)) {
      Response bad = Html(416, MessagePage("Out of range", "The range asked for lies past the end."));
      bad.headers.emplace_back("Content-Range", "bytes */" + std::to_string(size));
      return bad;
    }
    if (ok) {
      out.status = 206;
      out.offset = first;
      out.length = last - first + 1;
      out.headers.emplace_back("Content-Range", "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" +
                                                    std::to_string(size));
    }
  }
  return out;
}

Response App::Case(const Request& r, int64_t rid) {
  auto d = LoadReport(store_.db(), rid);
  if (!d.ok()) return Error(d.status());
  const std::string status = Param(r.form, "status");
  if (!IsCaseStatus(status)) return Error(Status(Code::kInvalidArgument, "not a case status"));
  auto tags = NormaliseTags(Param(r.form, "tags"));
  if (!tags.ok()) return Error(tags.status());
  const std::string name = ReportName(d->row);
  db::Db& db = store_.db();
  db::Txn txn(db);
  Status st = txn.Begin();
  if (st.ok()) {
    auto up = db.Prepare("UPDATE reports SET status = ?, tags = ? WHERE rid = ?");
    st = up.ok() ? up->BindText(1, status).BindText(2, *tags).Bind(3, rid).Run() : up.status();
  }
  const int64_t now = SystemNowMs();
  if (st.ok() && status != d->row.status)
    st = AppendCustody(db, store_.org(), "status", name, "case status " + d->row.status + " -> " + status, now);
  if (st.ok() && *tags != d->row.tags)
    st = AppendCustody(db, store_.org(), "tags", name, "tags set to: " + *tags, now);
  if (st.ok()) st = txn.Commit();
  if (!st.ok()) return Error(st);
  return Redirect(base_ + "report/" + std::to_string(rid));
}

Response App::Note(const Request& r, int64_t rid) {
  auto d = LoadReport(store_.db(), rid);
  if (!d.ok()) return Error(d.status());
  const std::string note = Param(r.form, "note");
  if (note.empty() || note.size() > kMaxNote || !IsValidUtf8(note))
    return Error(Status(Code::kInvalidArgument, "a note is 1 to 20,000 bytes of text"));
  db::Db& db = store_.db();
  db::Txn txn(db);
  Status st = txn.Begin();
  const int64_t now = SystemNowMs();
  if (st.ok()) {
    auto ins = db.Prepare("INSERT INTO notes(rid, time_ms, text) VALUES (?, ?, ?)");
    st = ins.ok() ? ins->Bind(1, rid).Bind(2, now).BindText(3, note).Run() : ins.status();
  }
  // The custody entry names the note by its hash: the log can be handed over without the note.
  if (st.ok())
    st = AppendCustody(db, store_.org(), "note", ReportName(d->row),
                       "added a note (BLAKE2b " + encoding::ToHex(crypto::Blake2b256(crypto::Bytes(note))) + ")", now);
  if (st.ok()) st = txn.Commit();
  if (!st.ok()) return Error(st);
  return Redirect(base_ + "report/" + std::to_string(rid));
}

Response App::Export(const Request& r) {
  const std::string format = Param(r.form, "format");
  if (format != "csv" && format != "jsonl") return Error(Status(Code::kInvalidArgument, "format must be csv or jsonl"));
  ListQuery q = QueryFrom(r.form);
  q.page = 0;
  uint64_t rows = 0;
  auto text = store_.ExportTableText(q, format == "csv" ? TableFormat::kCsv : TableFormat::kJsonLines, &rows);
  if (!text.ok()) return Error(text.status());
  Response out;
  out.content_type = format == "csv" ? "text/csv; charset=utf-8" : "application/x-ndjson; charset=utf-8";
  out.body = std::move(*text);
  out.headers.emplace_back("Content-Disposition", "attachment; filename=\"dala-reports-" +
                                                      IsoTime(SystemNowMs()).substr(0, 10) + "." + format + "\"");
  return out;
}

Response App::Evidence(int64_t rid) {
  auto d = LoadReport(store_.db(), rid);
  if (!d.ok()) return Error(d.status());
  // Written by libzip to a file in the desk's directory (0600), handed to the browser, then removed.
  uint8_t r[8];
  randombytes_buf(r, sizeof r);
  const std::string path = fs::Join(store_.dir(), ".evidence-" + encoding::ToHex(std::span<const uint8_t>(r, 8)) + ".zip");
  auto written = WriteEvidence(store_, {rid}, path);
  if (!written.ok()) return Error(written.status());
  auto bytes = fs::ReadFile(path, static_cast<size_t>(4) << 30);
  (void)fs::RemoveFile(path);
  if (!bytes.ok()) return Error(bytes.status());
  Response out;
  out.content_type = "application/zip";
  out.body.assign(bytes->begin(), bytes->end());
  out.headers.emplace_back("Content-Disposition", "attachment; filename=\"dala-evidence-" + d->row.report_id + ".zip\"");
  return out;
}

Response App::CustodyExport() {
  auto all = ReadCustody(store_.db());
  if (!all.ok()) return Error(all.status());
  if (Status st = Log("export", "", "custody log downloaded (" + std::to_string(all->size()) + " entries)"); !st.ok())
    return Error(st);
  auto with = ReadCustody(store_.db());
  if (!with.ok()) return Error(with.status());
  Response out;
  out.content_type = "application/x-ndjson; charset=utf-8";
  out.body = CustodyJsonLines(*with);
  out.headers.emplace_back("Content-Disposition", "attachment; filename=\"dala-custody.jsonl\"");
  return out;
}

}  // namespace dala::desk::web
