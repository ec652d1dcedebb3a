#include "desk/desk_custody.h"

#include <cstring>

#include "base/encoding.h"
#include "format/report.h"

namespace dala::desk {
namespace {

void PutBE(std::string& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutField(std::string& out, std::string_view s) {
  PutBE(out, s.size(), 4);
  out.append(s);
}

}  // namespace

crypto::Hash CustodyHash(const crypto::Hash& prev, uint64_t seq, int64_t time_ms, std::string_view action,
                         std::string_view report, std::string_view detail) {
  std::string bytes(reinterpret_cast<const char*>(prev.data()), prev.size());
  PutBE(bytes, seq, 8);
  PutBE(bytes, static_cast<uint64_t>(time_ms), 8);
  PutField(bytes, action);
  PutField(bytes, report);
  PutField(bytes, detail);
  return crypto::Blake2b256(crypto::Bytes(bytes));
}

Status AppendCustody(db::Db& db, const Organisation& org, std::string_view action, std::string_view report,
                     std::string_view detail, int64_t now_ms) {
  crypto::Hash prev{};
  uint64_t seq = 1;
  {
    DALA_ASSIGN_OR_RETURN(auto last, db.Prepare("SELECT seq, hash FROM custody ORDER BY seq DESC LIMIT 1"));
    DALA_ASSIGN_OR_RETURN(bool row, last.Step());
    if (row) {
      seq = static_cast<uint64_t>(last.Int(0)) + 1;
      auto h = last.BlobView(1);
      if (h.size() != prev.size()) return Status(Code::kCorrupt, "the custody log's last entry is damaged");
      std::memcpy(prev.data(), h.data(), prev.size());
    }
  }
  const crypto::Hash hash = CustodyHash(prev, seq, now_ms, action, report, detail);
  const crypto::Signature sig = crypto::Sign(org.root, kCustodyDomain, hash);
  DALA_ASSIGN_OR_RETURN(auto ins, db.Prepare("INSERT INTO custody(seq, time_ms, action, report, detail, prev, hash, "
                                             "signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"));
  return ins.Bind(1, static_cast<int64_t>(seq))
      .Bind(2, now_ms)
      .BindText(3, action)
      .BindText(4, report)
      .BindText(5, detail)
      .Bind(6, prev)
      .Bind(7, hash)
      .Bind(8, sig)
      .Run();
}

Result<std::vector<CustodyEntry>> ReadCustody(db::Db& db, std::string_view report) {
  DALA_ASSIGN_OR_RETURN(auto st, db.Prepare(report.empty()
                                                ? "SELECT seq, time_ms, action, report, detail, prev, hash, signature "
                                                  "FROM custody ORDER BY seq"
                                                : "SELECT seq, time_ms, action, report, detail, prev, hash, signature "
                                                  "FROM custody WHERE report = ? ORDER BY seq"));
  if (!report.empty()) st.BindText(1, report);
  std::vector<CustodyEntry> out;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    CustodyEntry e;
    e.seq = static_cast<uint64_t>(st.Int(0));
    e.time_ms = st.Int(1);
    e.action = st.Text(2);
    e.report = st.Text(3);
    e.detail = st.Text(4);
    auto prev = st.BlobView(5), hash = st.BlobView(6), sig = st.BlobView(7);
    if (prev.size() != 32 || hash.size() != 32 || sig.size() != 64)
      return Status(Code::kCorrupt, "custody entry " + std::to_string(e.seq) + " is damaged");
    std::memcpy(e.prev.data(), prev.data(), 32);
    std::memcpy(e.hash.data(), hash.data(), 32);
    std::memcpy(e.signature.data(), sig.data(), 64);
    out.push_back(std::move(e));
  }
  return out;
}

std::string VerifyCustody(const std::vector<CustodyEntry>& all, const crypto::PublicKey& root) {
  crypto::Hash prev{};
  for (size_t i = 0; i < all.size(); ++i) {
    const CustodyEntry& e = all[i];
    const std::string at = "custody entry " + std::to_string(i + 1);
    if (e.seq != i + 1) return at + " is numbered " + std::to_string(e.seq) + ": an entry was removed or reordered";
    if (e.prev != prev) return at + " does not link to the entry before it";
    if (CustodyHash(e.prev, e.seq, e.time_ms, e.action, e.report, e.detail) != e.hash)
      return at + " was changed after it was written (its hash does not match)";
    if (!crypto::Verify(root, kCustodyDomain, e.hash, e.signature))
      return at + " is not signed by the organisation's root";
    prev = e.hash;
  }
  return "";
}

std::string CustodyJsonLines(const std::vector<CustodyEntry>& entries) {
  std::string out;
  for (const auto& e : entries)
    out += "{\"seq\":" + std::to_string(e.seq) + ",\"time_ms\":" + std::to_string(e.time_ms) +
           ",\"action\":" + JsonEscape(e.action) + ",\"report\":" + JsonEscape(e.report) +
           ",\"detail\":" + JsonEscape(e.detail) + ",\"prev\":\"" + encoding::ToHex(e.prev) + "\",\"hash\":\"" +
           encoding::ToHex(e.hash) + "\",\"signature\":\"" + encoding::ToHex(e.signature) + "\"}\n";
  return out;
}

}  // namespace dala::desk
