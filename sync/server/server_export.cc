// dala-server's exports: to a file (dala-server export), and page by page to a desk the organisation lists
// (POST /v2/export, docs/protocol.md, "Pulling exports").
#include <algorithm>
#include <cstdlib>
#include <optional>

#include <google/protobuf/io/coded_stream.h>

#include "format/envelope.h"
#include "format/export_request.h"
#include "format/log.h"
#include "format/manifest.h"
#include "format/receipt.h"
#include "format/organisation.h"
#include "server/server_internal.h"

namespace dala::server {

namespace {

// What signing a stored receipt adds to it: the signature field (tag, length, 64 bytes).
constexpr size_t kReceiptSignatureBytes = 66;

// A length-delimited field of `n` bytes as a page holds it: its tag (one byte: every field number here is
// under 16), its length, its bytes.
size_t Field(size_t n) { return 1 + google::protobuf::io::CodedOutputStream::VarintSize64(n) + n; }

HttpResult Plain(int status, std::string text) { return {status, "text/plain", std::move(text) + "\n"}; }

}  // namespace

// The log's leaves [from, to), in order, as rows (idx, leaf).
Result<sql::Stmt> ServerCore::LeavesFrom(uint64_t from, uint64_t to) {
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare("SELECT idx, leaf FROM log WHERE idx >= ? AND idx < ? ORDER BY idx"));
  st.Bind(1, static_cast<int64_t>(from)).Bind(2, static_cast<int64_t>(to));
  return st;
}

Result<v1::Export> ServerCore::BuildExport(const ExportSlice& slice, uint64_t* end) {
  DALA_ASSIGN_OR_RETURN(v1::Export ex, ReadExport(slice, end));
  // Receipts are stored unsigned (the log proves them to phones); an export carries each signed, as the
  // desk checks it (docs/protocol.md, "Receipts are proven by the log"). Outside the lock: pushes go on.
  // The stored receipt's bytes are kept as they are, the signature added. One that is damaged, or names
  // another key, goes out as stored: the desk fails that entry alone (its check 4), as for any other.
  for (auto& r : *ex.mutable_reports()) {
    v1::SignedReceipt sr;
    v1::Receipt fields;
    if (!sr.ParseFromString(r.receipt()) || !fields.ParseFromString(sr.receipt()) || !sr.signature().empty() ||
        fields.server_key() != std::string_view(reinterpret_cast<const char*>(signing_.public_key.data()), 32))
      continue;  // (stored signed: before receipts were proven by the log)
    sr.set_signature(protocol::ReceiptSignature(signing_, fields));
    r.set_receipt(sr.SerializeAsString());
  }
  return ex;
}

Result<v1::Export> ServerCore::ReadExport(const ExportSlice& slice, uint64_t* end) {
  v1::Export ex;
  std::lock_guard lock(mu_);
  // One snapshot for every read below: a push another process commits meanwhile is all in or all out.
  sql::Txn snapshot(*db_);
  DALA_RETURN_IF_ERROR(snapshot.Begin(sql::TxnKind::kRead));
  if (!slice.desk_key.empty()) {
    // Checked again here, on the statement the database holds: another node may have installed a newer one
    // that no longer lists this desk.
    DALA_RETURN_IF_ERROR(RefreshStatementLocked());
    std::lock_guard st(statement_mu_);
    if (!protocol::ListsDesk(statement_parsed_, B(slice.desk_key)))
      return Status(Code::kPermission, "the organisation does not list this desk key");
  }
  DALA_RETURN_IF_ERROR(log_.Load());
  const uint64_t size = slice.size != 0 ? slice.size : log_.size();
  if (size > log_.size() || slice.from > size)
    return Status(Code::kInvalidArgument, "the log holds " + std::to_string(log_.size()) +
                                              " leaves: there is no export from position " +
                                              std::to_string(slice.from) + " to " + std::to_string(size));
  ex.set_log_from(slice.from);
  ex.set_server_key(signing_.public_key.data(), 32);
  ex.set_statement(StatementFor(0));
  if (slice.budget == 0) {
    // To a file (dala-server export): every enrolment, every report (those from before the log too).
    DALA_ASSIGN_OR_RETURN(sql::Stmt en, db_->Prepare(
        "SELECT device_key, invite, proof, enrolled_ms FROM devices WHERE invite IS NOT NULL ORDER BY enrolled_ms"));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, en.Step());
      if (!row) break;
      auto* e = ex.add_enrolments();
      auto k = en.BlobView(0), i = en.BlobView(1), p = en.BlobView(2);
      e->set_device_key(reinterpret_cast<const char*>(k.data()), k.size());
      e->set_invite(reinterpret_cast<const char*>(i.data()), i.size());
      e->set_proof(reinterpret_cast<const char*>(p.data()), p.size());
      e->set_enrolled_ms(en.Int(3));
    }
    en = sql::Stmt();
    DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare(
        slice.from == 0 ? "SELECT envelope, receipt FROM reports ORDER BY seq"
                        : "SELECT envelope, receipt FROM reports WHERE leaf >= ? ORDER BY seq"));
    if (slice.from != 0) st.Bind(1, static_cast<int64_t>(slice.from));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      auto* r = ex.add_reports();
      auto e = st.BlobView(0), rc = st.BlobView(1);
      r->set_envelope(reinterpret_cast<const char*>(e.data()), e.size());
      r->set_receipt(reinterpret_cast<const char*>(rc.data()), rc.size());
    }
    st = sql::Stmt();
    DALA_ASSIGN_OR_RETURN(sql::Stmt leaves, LeavesFrom(slice.from, size));
    for (uint64_t i = slice.from; i < size; ++i) {
      DALA_ASSIGN_OR_RETURN(bool row, leaves.Step());
      if (!row || static_cast<uint64_t>(leaves.Int(0)) != i)
        return Status(Code::kInternal, "the log's leaves are fewer than its size");
      auto b = leaves.BlobView(1);
      ex.add_log(reinterpret_cast<const char*>(b.data()), b.size());
    }
    if (end != nullptr) *end = size;
  } else {
    // A page for a desk: the leaves from `from` on, each with what it records (a report, a device's
    // enrolment, the time-stamp over the head it completes), until the page's bytes reach the budget. Pages
    // are bounded whatever the log holds, and each record is on exactly one page.
    // The leaves and their reports are read a window of leaves at a time, each read starting where the
    // window does (the log by its key, the reports by their leaf's index): a page costs what it holds,
    // wherever it is in the log, on SQLite and on PostgreSQL (which fetches a query's rows all at once), and
    // the lock is held only that long.
    constexpr uint64_t kWindow = 1024;
    sql::Stmt leaves, st;
    bool have_report = false;
    uint64_t window_end = slice.from;
    DALA_ASSIGN_OR_RETURN(sql::Stmt ts, db_->Prepare(
        "SELECT t.size, h.signed, t.token FROM log_timestamps t JOIN log_heads h ON h.size = t.size "
        "WHERE t.size > ? AND t.size <= ? ORDER BY t.size"));
    ts.Bind(1, static_cast<int64_t>(slice.from)).Bind(2, static_cast<int64_t>(size));
    DALA_ASSIGN_OR_RETURN(bool have_stamp, ts.Step());
    DALA_ASSIGN_OR_RETURN(sql::Stmt dev, db_->Prepare(
        "SELECT invite, proof, enrolled_ms FROM devices WHERE device_key = ? AND invite IS NOT NULL"));
    size_t bytes = 0;
    uint64_t i = slice.from;
    while (i < size) {
      if (i == window_end) {
        window_end = std::min(size, i + kWindow);
        leaves = sql::Stmt();
        st = sql::Stmt();
        DALA_ASSIGN_OR_RETURN(leaves, LeavesFrom(i, window_end));
        DALA_ASSIGN_OR_RETURN(st, db_->Prepare(
            "SELECT envelope, receipt, leaf FROM reports WHERE leaf >= ? AND leaf < ? ORDER BY leaf"));
        st.Bind(1, static_cast<int64_t>(i)).Bind(2, static_cast<int64_t>(window_end));
        DALA_ASSIGN_OR_RETURN(have_report, st.Step());
      }
      DALA_ASSIGN_OR_RETURN(bool row, leaves.Step());
      if (!row || static_cast<uint64_t>(leaves.Int(0)) != i)
        return Status(Code::kInternal, "the log's leaves are fewer than its size");
      auto lb = leaves.BlobView(1);
      const std::string& leaf = *ex.add_log() = std::string(reinterpret_cast<const char*>(lb.data()), lb.size());
      bytes += Field(leaf.size());
      for (; have_report && static_cast<uint64_t>(st.Int(2)) == i;) {
        auto* r = ex.add_reports();
        auto e = st.BlobView(0), rc = st.BlobView(1);
        r->set_envelope(reinterpret_cast<const char*>(e.data()), e.size());
        r->set_receipt(reinterpret_cast<const char*>(rc.data()), rc.size());
        bytes += Field(Field(e.size()) + Field(rc.size() + kReceiptSignatureBytes));  // signed once read (BuildExport)
        DALA_ASSIGN_OR_RETURN(have_report, st.Step());
      }
      // An enrolment leaf (0x02 || device key || ...) is the device's enrolment if its bytes are its leaf.
      if (leaf.size() > 33 && leaf[0] == 0x02) {
        const std::string device = leaf.substr(1, 32);
        dev.Reset();
        dev.Bind(1, B(device));
        DALA_ASSIGN_OR_RETURN(bool found, dev.Step());
        if (found) {
          v1::Enrolment e;
          auto inv = dev.BlobView(0), pr = dev.BlobView(1);
          e.set_device_key(device);
          e.set_invite(reinterpret_cast<const char*>(inv.data()), inv.size());
          e.set_proof(reinterpret_cast<const char*>(pr.data()), pr.size());
          e.set_enrolled_ms(dev.Int(2));
          if (protocol::EnrolmentLeaf(e.device_key(), e.invite(), e.proof(), e.enrolled_ms()) == leaf) {
            bytes += Field(e.ByteSizeLong());
            *ex.add_enrolments() = std::move(e);
          }
        }
      }
      ++i;
      for (; have_stamp && static_cast<uint64_t>(ts.Int(0)) == i;) {  // the head of i leaves, stamped
        auto* t = ex.add_timestamps();
        auto hb = ts.BlobView(1), tb = ts.BlobView(2);
        t->set_head(reinterpret_cast<const char*>(hb.data()), hb.size());
        t->set_token(reinterpret_cast<const char*>(tb.data()), tb.size());
        bytes += Field(Field(hb.size()) + Field(tb.size()));
        DALA_ASSIGN_OR_RETURN(have_stamp, ts.Step());
      }
      if (bytes >= slice.budget) break;
    }
    if (end != nullptr) *end = i;
  }
  DALA_ASSIGN_OR_RETURN(std::string head, NewestHeadLocked(size));
  if (head.empty() && slice.size != 0) return Status(Code::kNotFound, "no head of that size was signed");
  ex.set_log_head(std::move(head));
  if (slice.first) {
    // The heads a time-stamping authority stamped, with their tokens (oldest first). To a file: all of them,
    // in incremental exports too (a stamp can come late, after an export covered its head; the desk keeps
    // each once, by its bytes). To a desk: on its first page, those over heads it holds the leaves of but not
    // the stamp (at least `stamps_from` leaves, at most `from`); the others come with the leaves above.
    DALA_ASSIGN_OR_RETURN(sql::Stmt ts, db_->Prepare(
        "SELECT h.signed, t.token FROM log_timestamps t JOIN log_heads h ON h.size = t.size "
        "WHERE t.size >= ? AND t.size <= ? ORDER BY t.size"));
    ts.Bind(1, static_cast<int64_t>(slice.budget == 0 ? 0 : slice.stamps_from))
        .Bind(2, static_cast<int64_t>(slice.budget == 0 ? size : slice.from));
    for (;;) {
      DALA_ASSIGN_OR_RETURN(bool row, ts.Step());
      if (!row) break;
      auto* t = ex.add_timestamps();
      auto hb = ts.BlobView(0), tb = ts.BlobView(1);
      t->set_head(reinterpret_cast<const char*>(hb.data()), hb.size());
      t->set_token(reinterpret_cast<const char*>(tb.data()), tb.size());
    }
  }
  return ex;
}

Result<uint64_t> ServerCore::Export(const std::string& path, uint64_t since, uint64_t* log_size) {
  ExportSlice slice;
  slice.from = since;
  DALA_ASSIGN_OR_RETURN(v1::Export ex, BuildExport(slice, log_size));
  // Attachments beside the export (hard links where the file system allows, else streamed copies).
  const std::string media = path + ".media";
  for (const auto& r : ex.reports()) {
    envelope::Header h;
    if (!envelope::Verify(B(r.envelope()), &h).ok() || h.attachments.empty()) continue;
    DALA_RETURN_IF_ERROR(fs::EnsureDirectory(media));
    for (const auto& m : h.attachments) {
      std::string name = attachment::FileName(h.device_key, B(m.attachment_id()));
      std::string to = fs::Join(media, name);
      if (fs::Exists(to)) continue;
      DALA_RETURN_IF_ERROR(attachments_->CopyTo(name, m.size(), to));
    }
  }
  std::string bytes = ex.SerializeAsString();
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(path, crypto::Bytes(bytes)));
  return static_cast<uint64_t>(ex.reports_size());
}

Result<bool> ServerCore::RecordExportNonce(const std::string& key, int64_t now, int64_t forget_ms) {
  // Each statement on its own, outside a writing transaction: on PostgreSQL that would take the lock every
  // node's pushes take, for each page and range a desk asks for. The primary key alone decides which of two
  // nodes recording the same request at once gets it; the count is a bound, not an exact figure.
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(sql::Stmt old, db_->Prepare("DELETE FROM export_nonces WHERE forget_ms < ?"));
  old.Bind(1, now);
  DALA_RETURN_IF_ERROR(old.Run());
  old = sql::Stmt();
  DALA_ASSIGN_OR_RETURN(sql::Stmt count, db_->Prepare("SELECT count(*) FROM export_nonces"));
  DALA_ASSIGN_OR_RETURN(bool row, count.Step());
  if (row && static_cast<uint64_t>(count.Int(0)) >= limits_.max_export_nonces)
    return Status(Code::kBusy, "too many export requests held");
  count = sql::Stmt();
  DALA_ASSIGN_OR_RETURN(sql::Stmt put, db_->Prepare(
      "INSERT INTO export_nonces(nonce, forget_ms) VALUES(?, ?) ON CONFLICT DO NOTHING"));
  put.Bind(1, B(key)).Bind(2, forget_ms);
  DALA_RETURN_IF_ERROR(put.Run());
  return db_->Changes() == 1;
}

bool ServerCore::DeskListed(std::string_view desk_key) {
  {
    std::lock_guard st(statement_mu_);
    if (protocol::ListsDesk(statement_parsed_, crypto::Bytes(desk_key))) return true;
  }
  // Not in the statement this node holds: another node may have installed a newer one that lists it. Read
  // again at most once a second, so that requests of keys no statement lists cannot keep the lock busy.
  const int64_t now = clock_();
  int64_t last = desk_refresh_ms_.load();
  if (now - last < 1000 || !desk_refresh_ms_.compare_exchange_strong(last, now)) return false;
  std::lock_guard lock(mu_);
  sql::Txn snapshot(*db_);
  if (!snapshot.Begin(sql::TxnKind::kRead).ok() || !RefreshStatementLocked().ok()) return false;
  std::lock_guard st(statement_mu_);
  return protocol::ListsDesk(statement_parsed_, crypto::Bytes(desk_key));
}

// POST /v2/export. Every refusal is a short plain answer: a desk's own tool reads it, and nothing in it helps
// anyone else (no report, no key, no size). The checks run cheapest first, and nothing is written (no
// nonce kept, no statement installed) for a request that is not a listed desk's, fresh and for this server.
HttpResult ServerCore::HandleExport(std::string_view body) {
  const int64_t now = clock_();
  if (body.size() > limits_.max_body_bytes) return Plain(413, "too large");
  auto req = protocol::VerifyExportRequest(crypto::Bytes(body));
  if (!req.ok()) return Plain(req.status().code() == Code::kVerify ? 403 : 400, req.status().message());
  if (req->server_key() != std::string_view(reinterpret_cast<const char*>(signing_.public_key.data()), 32))
    return Plain(403, "this request was signed for another server");
  // Compared without overflow, whatever time the request claims.
  if (req->time_ms() < now - protocol::kExportRequestSkewMs || req->time_ms() > now + protocol::kExportRequestSkewMs)
    return Plain(403, "the desk's clock is more than 5 minutes from the server's: set it right and try again");
  // A newer statement the desk brings, signed by the root and listing that very desk, is installed: the
  // first pull of a desk the organisation just listed works at once. Anything else it carries changes nothing
  // (an older statement costs no lock).
  if (!req->statement().empty()) {
    auto carried = protocol::VerifyStatement(B(req->statement()), organisation_);
    if (!carried.ok()) return Plain(403, "the statement is not this organisation's");
    bool newer = false;
    {
      std::lock_guard st(statement_mu_);
      newer = carried->version() > statement_version_;
    }
    if (newer && protocol::ListsDesk(*carried, B(req->desk_key()))) {
      Status st = SetStatement(req->statement());
      if (!st.ok() && st.code() != Code::kState) return Plain(503, "the statement could not be kept: try again later");
    }
  }
  if (!DeskListed(req->desk_key())) return Plain(403, "the organisation does not list this desk key");
  {
    // A request seen before, by any node on this database, is refused: whoever copied one off the wire cannot
    // fetch with it (within the time window; after it, its time refuses it). Only a listed desk's requests
    // get here, so no one else can fill the table.
    // Kept until the request's time is out of every node's window: past the later of its time and this
    // node's, by the window and a minute for the nodes' clocks to differ.
    const int64_t forget_ms = std::max(now, req->time_ms()) + protocol::kExportRequestSkewMs + 60 * 1000;
    auto fresh = RecordExportNonce(req->desk_key() + req->nonce(), now, forget_ms);
    if (!fresh.ok())
      return Plain(503, fresh.status().code() == Code::kBusy ? "busy: try again in a few minutes"
                                                                    : "the request could not be recorded: try again later");
    if (!*fresh) return Plain(403, "this request was sent before");
  }
  if (req->has_page()) {
    ExportSlice slice;
    slice.desk_key = req->desk_key();
    slice.from = req->page().log_from();
    slice.size = req->page().log_size();
    slice.first = slice.size == 0;
    slice.stamps_from = req->page().stamps_from();
    slice.budget = limits_.export_page_bytes;
    auto ex = BuildExport(slice, nullptr);
    if (!ex.ok()) {
      const Code c = ex.status().code();
      return Plain(c == Code::kPermission ? 403 : c == Code::kInvalidArgument || c == Code::kNotFound ? 400 : 500,
                   c == Code::kInternal || c == Code::kIo ? "the export could not be read" : ex.status().message());
    }
    return {200, kProto, ex->SerializeAsString()};
  }
  // A range of an attachment the server holds whole, for a desk the newest statement in the database lists.
  const auto& a = req->attachment();
  uint64_t size = 0;
  {
    auto found = [&]() -> Result<std::optional<uint64_t>> {
      std::lock_guard lock(mu_);
      sql::Txn snapshot(*db_);
      DALA_RETURN_IF_ERROR(snapshot.Begin(sql::TxnKind::kRead));
      DALA_RETURN_IF_ERROR(RefreshStatementLocked());
      {
        std::lock_guard st(statement_mu_);
        if (!protocol::ListsDesk(statement_parsed_, B(req->desk_key())))
          return Status(Code::kPermission, "the organisation does not list this desk key");
      }
      DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare(
          "SELECT size FROM attachments WHERE device_key = ? AND attachment_id = ? AND complete = 1"));
      st.Bind(1, B(a.device_key())).Bind(2, B(a.attachment_id()));
      DALA_ASSIGN_OR_RETURN(bool row, st.Step());
      return row ? std::optional<uint64_t>(static_cast<uint64_t>(st.Int(0))) : std::nullopt;
    }();
    if (!found.ok())
      return found.status().code() == Code::kPermission ? Plain(403, found.status().message())
                                                       : Plain(500, "the attachment could not be read");
    if (!*found) return Plain(404, "no such attachment");
    size = **found;
  }
  if (a.offset() >= size) return Plain(416, "past the end of the attachment");
  const size_t length = static_cast<size_t>(std::min<uint64_t>(a.length(), size - a.offset()));
  auto bytes = attachments_->Read(attachment::FileName(B(a.device_key()), B(a.attachment_id())), a.offset(), length);
  if (!bytes.ok() || bytes->size() != length) return Plain(500, "the attachment could not be read");
  return {200, protocol::kUploadContentType, std::move(*bytes)};
}

}  // namespace dala::server
