// Store: the report list, whole or a page at a time, newest first.
#include <cstring>

#include "base/encoding.h"
#include "store/outbox_state.h"
#include "store/store.h"

namespace dala {

std::string ReportCursor::Encode() const {
  uint8_t raw[8 + 16];
  const uint64_t t = static_cast<uint64_t>(created_ms);
  for (int i = 0; i < 8; ++i) raw[i] = static_cast<uint8_t>(t >> (56 - 8 * i));
  std::memcpy(raw + 8, id.data(), id.size());
  return encoding::ToHex(raw);
}

Result<ReportCursor> ReportCursor::Decode(std::string_view text) {
  uint8_t raw[8 + 16];
  if (!encoding::FromHex(text, raw))
    return Status(Code::kInvalidArgument, "a list cursor is the 48 hex digits a page returned");
  uint64_t t = 0;
  for (int i = 0; i < 8; ++i) t = (t << 8) | raw[i];
  ReportCursor c;
  c.created_ms = static_cast<int64_t>(t);
  std::memcpy(c.id.data(), raw + 8, c.id.size());
  return c;
}

Result<std::vector<ReportInfo>> Store::List() {
  DALA_ASSIGN_OR_RETURN(ReportPage all, ListPage(ReportQuery{}));
  return std::move(all.items);
}

Result<ReportPage> Store::ListPage(const ReportQuery& q) {
  if (q.limit > ReportQuery::kMaxPage)
    return Status(Code::kInvalidArgument, "a page holds at most " + std::to_string(ReportQuery::kMaxPage) + " reports");
  if (q.states >= (1u << (static_cast<int>(ReportState::kRejected) + 1)))
    return Status(Code::kInvalidArgument, "a state filter names only the five report states");
  std::string form_name, form;  // form: "name/version" as stored ("detention/01" is "detention/1")
  const bool one_version = q.form.find('/') != std::string::npos;
  if (!q.form.empty()) {
    uint32_t form_version = 0;
    DALA_RETURN_IF_ERROR(ParseForm(one_version ? q.form : q.form + "/1", &form_name, &form_version));
    form = form_name + "/" + std::to_string(form_version);
  }
  // Rows come in index order ((created_ms, id) backwards) and stop as soon as the page is full: the first
  // page costs the same with 100 reports or 100,000. The state is derived per row, as everywhere else.
  std::string sql =
      "SELECT r.id, r.version, r.sealed, r.form, r.created_ms, r.updated_ms, "
      " (SELECT count(*) FROM outbox o WHERE o.report_id = r.id AND o.version = r.version), "
      " (SELECT count(*) FROM outbox o WHERE o.report_id = r.id AND o.version = r.version AND o.state = " DALA_OUTBOX_DELIVERED "), "
      " (SELECT count(*) FROM outbox o WHERE o.report_id = r.id AND o.version = r.version AND o.state = " DALA_OUTBOX_REJECTED ") "
      "FROM reports r WHERE r.version = (SELECT max(version) FROM reports x WHERE x.id = r.id)";
  if (q.after) sql += " AND (r.created_ms, r.id) < (?1, ?2)";
  if (!q.form.empty()) sql += one_version ? " AND r.form = ?3" : " AND r.form > ?3 AND r.form < ?4";
  sql += " ORDER BY r.created_ms DESC, r.id DESC";
  // Without a state filter every row is on the page: the page and one more to know whether another follows.
  // (A state filter passes over the rows in other states: such a page costs what it reads.)
  if (q.limit != 0 && q.states == 0) sql += " LIMIT ?5";
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(sql));
  if (q.after) st.Bind(1, q.after->created_ms).Bind(2, q.after->id);
  if (q.limit != 0 && q.states == 0) st.Bind(5, static_cast<int64_t>(q.limit) + 1);
  if (!q.form.empty()) {
    if (one_version) {
      st.BindText(3, form);
    } else {
      st.BindText(3, form_name + "/");  // "name/" < "name/1" ... < "name0": every version, no other name
      st.BindText(4, form_name + "0");
    }
  }
  ReportPage page;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ReportInfo info;
    info.state = DeriveState(st.Int(2) != 0, st.Int(6), st.Int(7), st.Int(8));
    if (q.states != 0 && (q.states & (1u << static_cast<int>(info.state))) == 0) continue;
    auto idv = st.BlobView(0);
    if (idv.size() != info.id.size()) return Status(Code::kCorrupt, "a report id in the store is damaged");
    std::memcpy(info.id.data(), idv.data(), idv.size());
    info.created_ms = st.Int(4);
    if (q.limit != 0 && page.items.size() == q.limit) {  // one more matches: there is a next page
      const ReportInfo& last = page.items.back();
      page.next = ReportCursor{last.created_ms, last.id};
      break;
    }
    info.version = static_cast<uint32_t>(st.Int(1));
    info.form = st.Text(3);
    info.updated_ms = st.Int(5);
    page.items.push_back(std::move(info));
  }
  return page;
}

}  // namespace dala
