#include "desk/desk_query.h"

#include <algorithm>
#include <array>

#include "base/encoding.h"

namespace dala::desk {
namespace {

constexpr const char* kColumns =
    "r.rid, r.device, r.report_id, r.version, r.form, r.place, r.status, r.tags, r.excerpt, r.created_ms, "
    "r.sealed_ms, r.received_ms, r.verified, r.latitude, r.longitude";

ListRow ReadRow(const db::Stmt& st) {
  ListRow r;
  r.rid = st.Int(0);
  r.device = encoding::ToHex(st.BlobView(1));
  r.report_id = encoding::ToHex(st.BlobView(2));
  r.version = static_cast<uint32_t>(st.Int(3));
  r.form = st.Text(4);
  r.place = st.Text(5);
  r.status = st.Text(6);
  r.tags = st.Text(7);
  r.excerpt = st.Text(8);
  r.created_ms = st.Int(9);
  r.sealed_ms = st.Int(10);
  r.received_ms = st.Int(11);
  r.verified = st.Int(12) != 0;
  if (!st.IsNull(13)) r.latitude = st.Double(13);
  if (!st.IsNull(14)) r.longitude = st.Double(14);
  return r;
}

// FTS4 MATCH text from what a person typed: each word quoted (no operators, no syntax errors), all required.
std::string MatchText(const std::string& typed) {
  std::string out, word;
  auto flush = [&] {
    if (word.empty()) return;
    out += (out.empty() ? "\"" : " \"") + word + "\"";
    word.clear();
  };
  for (char c : typed) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == ' ' || u < 0x20 || u == 0x7f) flush();  // control characters separate words
    else word.push_back(c);
  }
  flush();
  return out;
}

// SQL LIKE pattern matching `s` anywhere, with its own % and _ escaped.
std::string Contains(const std::string& s) {
  std::string p = "%";
  for (char c : s) {
    if (c == '%' || c == '_' || c == '\\') p.push_back('\\');
    p.push_back(c);
  }
  return p + "%";
}

}  // namespace

bool IsCaseStatus(std::string_view s) {
  return std::any_of(std::begin(kCaseStatuses), std::end(kCaseStatuses), [&](const char* k) { return s == k; });
}

std::string ReportName(const ListRow& r) { return r.device + ":" + r.report_id; }

Result<ListPage> ListReports(db::Db& db, const ListQuery& q) {
  std::string where = " WHERE 1";
  std::vector<std::string> texts;  // bound in order
  auto text_param = [&](const std::string& clause, std::string value) {
    where += " AND " + clause;
    texts.push_back(std::move(value));
  };
  const std::string match = MatchText(q.text);
  if (!match.empty()) text_param("r.rid IN (SELECT docid FROM search WHERE search MATCH ?)", match);
  if (!q.form.empty()) text_param("r.form = ?", q.form);
  if (!q.place.empty()) text_param("r.place LIKE ? ESCAPE '\\'", Contains(q.place));
  if (!q.device.empty()) text_param("hex(r.device) LIKE ? ESCAPE '\\'", [&] {
      std::string up = q.device;
      for (auto& c : up) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return Contains(up).substr(1);  // a prefix
    }());
  if (!q.status.empty()) text_param("r.status = ?", q.status);
  if (!q.tag.empty()) text_param("(' ' || r.tags || ' ') LIKE ? ESCAPE '\\'", Contains(" " + q.tag + " "));
  if (q.verified == 0 || q.verified == 1) where += q.verified ? " AND r.verified = 1" : " AND r.verified = 0";
  if (q.from_ms > 0) where += " AND r.received_ms >= " + std::to_string(q.from_ms);
  if (q.to_ms > 0) where += " AND r.received_ms < " + std::to_string(q.to_ms);
  if (!q.rids.empty()) {
    where += " AND r.rid IN (";
    for (size_t i = 0; i < q.rids.size(); ++i) where += (i ? "," : "") + std::to_string(q.rids[i]);
    where += ")";
  }
  static const std::pair<const char*, const char*> kSorts[] = {
      {"received", "r.received_ms"}, {"sealed", "r.sealed_ms"}, {"created", "r.created_ms"},
      {"form", "r.form"},            {"place", "r.place"},      {"status", "r.status"}};
  std::string order = "r.received_ms";
  for (const auto& [name, column] : kSorts)
    if (q.sort == name) order = column;
  order += q.descending ? " DESC, r.rid DESC" : " ASC, r.rid ASC";

  auto bind = [&](db::Stmt& st) {
    for (size_t i = 0; i < texts.size(); ++i) st.BindText(static_cast<int>(i + 1), texts[i]);
  };
  ListPage page;
  {
    DALA_ASSIGN_OR_RETURN(auto count, db.Prepare("SELECT count(*) FROM reports r" + where));
    bind(count);
    DALA_ASSIGN_OR_RETURN(bool row, count.Step());
    page.total = row ? static_cast<uint64_t>(count.Int(0)) : 0;
  }
  std::string sql = std::string("SELECT ") + kColumns + " FROM reports r" + where + " ORDER BY " + order;
  if (q.per_page > 0)
    sql += " LIMIT " + std::to_string(std::min<uint32_t>(q.per_page, 500)) + " OFFSET " +
           std::to_string(static_cast<uint64_t>(q.page) * std::min<uint32_t>(q.per_page, 500));
  DALA_ASSIGN_OR_RETURN(auto st, db.Prepare(sql));
  bind(st);
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    page.rows.push_back(ReadRow(st));
  }
  return page;
}

Result<ReportDetail> LoadReport(db::Db& db, int64_t rid) {
  ReportDetail d;
  {
    DALA_ASSIGN_OR_RETURN(auto st, db.Prepare(std::string("SELECT ") + kColumns + ", r.latest FROM reports r WHERE r.rid = ?"));
    st.Bind(1, rid);
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return Status(Code::kNotFound, "no such report");
    d.row = ReadRow(st);
  }
  DALA_ASSIGN_OR_RETURN(auto v, db.Prepare(
      "SELECT v.id, v.version, v.verified, v.problems, v.detail, v.content, v.received_ms, v.sequence, v.leaf_index, "
      "v.server_key, v.envelope, v.receipt FROM versions v, reports r WHERE r.rid = ? AND v.device = r.device "
      "AND v.report_id = r.report_id ORDER BY v.version"));
  v.Bind(1, rid);
  int64_t latest_id = 0;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, v.Step());
    if (!row) break;
    VersionRow x;
    x.id = v.Int(0);
    x.version = static_cast<uint32_t>(v.Int(1));
    x.verified = v.Int(2) != 0;
    x.problems_json = v.Text(3);
    x.detail_json = v.Text(4);
    auto content = v.BlobView(5);
    if (!x.content.ParseFromArray(content.data(), static_cast<int>(content.size())))
      return Status(Code::kCorrupt, "a stored report version does not parse");
    x.received_ms = v.IsNull(6) ? 0 : v.Int(6);
    x.sequence = v.IsNull(7) ? 0 : static_cast<uint64_t>(v.Int(7));
    x.leaf_index = v.IsNull(8) ? -1 : v.Int(8);
    x.server_key = v.IsNull(9) ? std::string() : encoding::ToHex(v.BlobView(9));
    x.envelope = v.Blob(10);
    x.receipt = v.Blob(11);
    if (x.version == d.row.version) latest_id = x.id;
    d.versions.push_back(std::move(x));
  }
  DALA_ASSIGN_OR_RETURN(auto att, db.Prepare("SELECT attachment_id, mime, file, size, verified, file_key, plaintext_hash "
                                             "FROM attachments WHERE version_id = ? ORDER BY attachment_id"));
  att.Bind(1, latest_id);
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, att.Step());
    if (!row) break;
    AttachmentRow x;
    x.id = encoding::ToHex(att.BlobView(0));
    x.mime = att.Text(1);
    x.file = att.Text(2);
    x.size = static_cast<uint64_t>(att.Int(3));
    x.verified = att.Int(4) != 0;
    x.key = att.Blob(5);
    x.plaintext_hash = att.Blob(6);
    d.attachments.push_back(std::move(x));
  }
  DALA_ASSIGN_OR_RETURN(auto n, db.Prepare("SELECT time_ms, text FROM notes WHERE rid = ? ORDER BY id"));
  n.Bind(1, rid);
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, n.Step());
    if (!row) break;
    d.notes.push_back({n.Int(0), n.Text(1)});
  }
  return d;
}

Result<AttachmentRow> LoadAttachment(db::Db& db, int64_t rid, const std::string& attachment_hex) {
  DALA_ASSIGN_OR_RETURN(ReportDetail d, LoadReport(db, rid));
  for (auto& a : d.attachments)
    if (a.id == attachment_hex) return std::move(a);
  return Status(Code::kNotFound, "no such attachment");
}

namespace {

DeviceRow ReadDevice(const db::Stmt& st) {
  DeviceRow d;
  d.device = encoding::ToHex(st.BlobView(0));
  d.enrolled_ms = st.IsNull(1) ? 0 : st.Int(1);
  d.server_key = st.IsNull(2) ? "" : encoding::ToHex(st.BlobView(2));
  d.invite_key = st.IsNull(3) ? "" : encoding::ToHex(st.BlobView(3));
  d.invite_issued_ms = st.IsNull(4) ? 0 : st.Int(4);
  d.invite_expires_ms = st.IsNull(5) ? 0 : st.Int(5);
  d.invite_uses = st.IsNull(6) ? 0 : static_cast<uint32_t>(st.Int(6));
  d.reports = static_cast<uint64_t>(st.Int(7));
  d.last_received_ms = st.IsNull(8) ? 0 : st.Int(8);
  return d;
}

constexpr const char* kDeviceSelect =
    "SELECT k.device, d.enrolled_ms, d.server_key, d.invite_key, d.invite_issued_ms, d.invite_expires_ms, "
    "d.invite_uses, (SELECT count(*) FROM reports r WHERE r.device = k.device), "
    "(SELECT max(received_ms) FROM reports r WHERE r.device = k.device) "
    "FROM (SELECT device FROM devices UNION SELECT device FROM reports) k LEFT JOIN devices d ON d.device = k.device";

Result<std::vector<Count>> Counts(db::Db& db, const std::string& sql) {
  DALA_ASSIGN_OR_RETURN(auto st, db.Prepare(sql));
  std::vector<Count> out;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back({st.Text(0), static_cast<uint64_t>(st.Int(1))});
  }
  return out;
}

Result<uint64_t> One(db::Db& db, const char* sql) {
  DALA_ASSIGN_OR_RETURN(auto st, db.Prepare(sql));
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  return row ? static_cast<uint64_t>(st.Int(0)) : 0;
}

}  // namespace

Result<std::vector<DeviceRow>> ListDevices(db::Db& db) {
  DALA_ASSIGN_OR_RETURN(auto st, db.Prepare(std::string(kDeviceSelect) + " ORDER BY 9 DESC"));
  std::vector<DeviceRow> out;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(ReadDevice(st));
  }
  return out;
}

Result<DeviceRow> LoadDevice(db::Db& db, const std::string& device_hex) {
  // By the key itself (a scan of every report's device by hex took most of a report page's time).
  std::array<uint8_t, 32> key{};
  if (device_hex.size() != 64 || !encoding::FromHex(device_hex, key)) return Status(Code::kNotFound, "no such device");
  DALA_ASSIGN_OR_RETURN(auto st, db.Prepare(
      "SELECT k.device, d.enrolled_ms, d.server_key, d.invite_key, d.invite_issued_ms, d.invite_expires_ms, "
      "d.invite_uses, (SELECT count(*) FROM reports r WHERE r.device = k.device), "
      "(SELECT max(received_ms) FROM reports r WHERE r.device = k.device) "
      "FROM (SELECT ? AS device) k LEFT JOIN devices d ON d.device = k.device"));
  st.Bind(1, key);
  DALA_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return Status(Code::kNotFound, "no such device");
  return ReadDevice(st);
}

Result<Overview> LoadOverview(db::Db& db) {
  Overview o;
  DALA_ASSIGN_OR_RETURN(o.reports, One(db, "SELECT count(*) FROM reports"));
  DALA_ASSIGN_OR_RETURN(o.versions, One(db, "SELECT count(*) FROM versions"));
  DALA_ASSIGN_OR_RETURN(o.verified, One(db, "SELECT count(*) FROM reports WHERE verified = 1"));
  DALA_ASSIGN_OR_RETURN(o.devices, One(db, "SELECT count(DISTINCT device) FROM reports"));
  DALA_ASSIGN_OR_RETURN(o.attachments, One(db, "SELECT count(*) FROM attachments"));
  DALA_ASSIGN_OR_RETURN(o.by_month, Counts(db, "SELECT strftime('%Y-%m', received_ms / 1000, 'unixepoch') m, count(*) "
                                               "FROM reports GROUP BY m ORDER BY m"));
  DALA_ASSIGN_OR_RETURN(o.by_place, Counts(db, "SELECT place, count(*) c FROM reports WHERE place != '' GROUP BY place "
                                               "ORDER BY c DESC, place LIMIT 20"));
  DALA_ASSIGN_OR_RETURN(o.by_form, Counts(db, "SELECT form, count(*) c FROM reports GROUP BY form ORDER BY c DESC, form"));
  DALA_ASSIGN_OR_RETURN(auto st, db.Prepare(std::string("SELECT ") + kColumns +
                                            " FROM reports r WHERE r.latitude IS NOT NULL LIMIT 20000"));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    o.points.push_back(ReadRow(st));
  }
  return o;
}

Result<std::vector<std::string>> ListForms(db::Db& db) {
  DALA_ASSIGN_OR_RETURN(std::vector<Count> forms, Counts(db, "SELECT form, count(*) FROM reports GROUP BY form ORDER BY form"));
  std::vector<std::string> out;
  for (auto& c : forms) out.push_back(std::move(c.key));
  return out;
}

}  // namespace dala::desk
