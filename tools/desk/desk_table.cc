#include "desk/desk_table.h"

#include <ctime>
#include <map>
#include <set>

#include "base/fsutil.h"
#include "crypto/crypto.h"
#include "format/report.h"

namespace dala::desk {
namespace {

std::string Decimal6(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", v);
  return buf;
}

// A field's value as one cell of text.
std::string CellText(const v1::FieldValue& v) {
  switch (v.value_case()) {
    case v1::FieldValue::kText: return v.text();
    case v1::FieldValue::kInteger: return std::to_string(v.integer());
    case v1::FieldValue::kDecimal: return v.decimal();
    case v1::FieldValue::kBoolean: return v.boolean() ? "true" : "false";
    case v1::FieldValue::kTimestampMs: return IsoTime(v.timestamp_ms());
    case v1::FieldValue::kGeo: return Decimal6(v.geo().latitude()) + "," + Decimal6(v.geo().longitude());
    case v1::FieldValue::kPeople: {
      std::string s;
      for (int i = 0; i < v.people().people_size(); ++i) {
        const auto& p = v.people().people(i);
        s += (i ? "; " : "") + p.name() + (p.role().empty() ? "" : " (" + p.role() + ")");
      }
      return s;
    }
    case v1::FieldValue::VALUE_NOT_SET: return "";
  }
  return "";
}

// A field's value as JSON, typed.
std::string JsonValue(const v1::FieldValue& v) {
  switch (v.value_case()) {
    case v1::FieldValue::kText: return JsonEscape(v.text());
    case v1::FieldValue::kInteger: return std::to_string(v.integer());
    case v1::FieldValue::kDecimal: return JsonEscape(v.decimal());
    case v1::FieldValue::kBoolean: return v.boolean() ? "true" : "false";
    case v1::FieldValue::kTimestampMs: return JsonEscape(IsoTime(v.timestamp_ms()));
    case v1::FieldValue::kGeo:
      return "{\"latitude\":" + Decimal6(v.geo().latitude()) + ",\"longitude\":" + Decimal6(v.geo().longitude()) + "}";
    case v1::FieldValue::kPeople: {
      std::string s = "[";
      for (int i = 0; i < v.people().people_size(); ++i)
        s += std::string(i ? "," : "") + "{\"name\":" + JsonEscape(v.people().people(i).name()) +
             ",\"role\":" + JsonEscape(v.people().people(i).role()) + "}";
      return s + "]";
    }
    case v1::FieldValue::VALUE_NOT_SET: return "null";
  }
  return "null";
}

// RFC 4180 quoting; a cell a spreadsheet would take for a formula (= + - @, tab, CR) gets a leading apostrophe.
std::string Csv(const std::string& s) {
  std::string cell = s;
  if (!cell.empty() && (cell[0] == '=' || cell[0] == '+' || cell[0] == '-' || cell[0] == '@' || cell[0] == '\t' ||
                        cell[0] == '\r'))
    cell = "'" + cell;
  std::string out = "\"";
  for (char c : cell) {
    if (c == '"') out += "\"\"";
    else out.push_back(c);
  }
  return out + "\"";
}

struct Latest {
  ListRow row;
  v1::ReportContent content;
};

Result<std::vector<Latest>> Select(db::Db& db, ListQuery q) {
  q.per_page = 0;
  q.page = 0;
  DALA_ASSIGN_OR_RETURN(ListPage page, ListReports(db, q));
  std::vector<Latest> out;
  DALA_ASSIGN_OR_RETURN(auto st, db.Prepare("SELECT v.content FROM versions v, reports r WHERE r.rid = ? AND v.id = r.latest"));
  for (auto& row : page.rows) {
    st.Bind(1, row.rid);
    DALA_ASSIGN_OR_RETURN(bool got, st.Step());
    Latest l{std::move(row), {}};
    if (!got || !l.content.ParseFromArray(st.BlobView(0).data(), static_cast<int>(st.BlobView(0).size())))
      return Status(Code::kCorrupt, "a stored report version does not parse");
    st.Reset();
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace

Result<std::string> TableText(db::Db& db, const ListQuery& q, TableFormat format, uint64_t* rows) {
  DALA_ASSIGN_OR_RETURN(std::vector<Latest> all, Select(db, q));
  if (rows != nullptr) *rows = all.size();
  std::string out;
  if (format == TableFormat::kJsonLines) {
    for (const auto& l : all) {
      const auto& c = l.content;
      out += "{\"id\":" + JsonEscape(l.row.report_id) + ",\"device\":" + JsonEscape(l.row.device) +
             ",\"version\":" + std::to_string(l.row.version) + ",\"form\":" + JsonEscape(l.row.form) +
             ",\"created\":" + JsonEscape(IsoTime(c.created_ms())) + ",\"sealed\":" + JsonEscape(IsoTime(c.sealed_ms())) +
             ",\"received\":" + JsonEscape(IsoTime(l.row.received_ms)) +
             ",\"verified\":" + (l.row.verified ? "true" : "false") + ",\"status\":" + JsonEscape(l.row.status) +
             ",\"tags\":" + JsonEscape(l.row.tags) + ",\"place\":" + JsonEscape(l.row.place) + ",\"location\":" +
             (l.row.latitude ? "{\"latitude\":" + Decimal6(*l.row.latitude) + ",\"longitude\":" +
                                   Decimal6(*l.row.longitude) + "}"
                             : std::string("null")) +
             ",\"narrative\":" + JsonEscape(c.narrative()) + ",\"fields\":{";
      for (int i = 0; i < c.fields_size(); ++i)
        out += std::string(i ? "," : "") + JsonEscape(c.fields(i).key()) + ":" + JsonValue(c.fields(i).value());
      out += "},\"attachments\":" + std::to_string(c.attachments_size()) + "}\n";
    }
    return out;
  }
  std::set<std::string> keys;  // a column per field key, sorted
  for (const auto& l : all)
    for (const auto& f : l.content.fields()) keys.insert(f.key());
  out = "\xEF\xBB\xBF";
  const char* fixed[] = {"id", "device", "version", "form", "created", "sealed", "received", "verified", "status",
                         "tags", "place", "latitude", "longitude", "narrative", "attachments"};
  bool first = true;
  for (const char* h : fixed) {
    out += (first ? "" : ",") + Csv(h);
    first = false;
  }
  for (const auto& k : keys) out += "," + Csv("field:" + k);
  out += "\r\n";
  for (const auto& l : all) {
    const auto& c = l.content;
    std::map<std::string, std::string> values;
    for (const auto& f : c.fields()) values[f.key()] = CellText(f.value());
    const std::string cells[] = {l.row.report_id, l.row.device, std::to_string(l.row.version), l.row.form,
                                 IsoTime(c.created_ms()), IsoTime(c.sealed_ms()), IsoTime(l.row.received_ms),
                                 l.row.verified ? "true" : "false", l.row.status, l.row.tags, l.row.place,
                                 l.row.latitude ? Decimal6(*l.row.latitude) : "",
                                 l.row.longitude ? Decimal6(*l.row.longitude) : "", c.narrative(),
                                 std::to_string(c.attachments_size())};
    first = true;
    for (const auto& cell : cells) {
      out += (first ? "" : ",") + Csv(cell);
      first = false;
    }
    for (const auto& k : keys) out += "," + Csv(values.count(k) ? values[k] : "");
    out += "\r\n";
  }
  return out;
}

Result<uint64_t> WriteTable(db::Db& db, const ListQuery& q, TableFormat format, const std::string& path) {
  uint64_t rows = 0;
  DALA_ASSIGN_OR_RETURN(std::string text, TableText(db, q, format, &rows));
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(path, crypto::Bytes(text)));
  return rows;
}

}  // namespace dala::desk
