// dala-server: what the operator sees and decides (devices, their labels, invites), run by the
// dala-server commands, possibly while the server runs in another process on the same data directory.
#include <cstring>

#include "format/invite.h"
#include "format/log.h"
#include "server/server_core.h"
#include "server/server_internal.h"

namespace dala::server {

Result<std::vector<DeviceInfo>> ServerCore::Devices() {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare(
      "SELECT d.device_key, d.enrolled_ms, d.last_seen_ms, d.revoked, "
      "(SELECT count(*) FROM reports r WHERE r.device_key = d.device_key), d.label, d.invite_hash "
      "FROM devices d ORDER BY d.enrolled_ms"));
  std::vector<DeviceInfo> out;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    DeviceInfo d;
    auto k = st.BlobView(0);
    if (k.size() != 32) return Status(Code::kCorrupt, "a device key in the server database is damaged");
    std::memcpy(d.key.data(), k.data(), 32);
    d.enrolled_ms = st.Int(1);
    d.last_seen_ms = st.Int(2);
    d.revoked = st.Int(3) != 0;
    d.reports = static_cast<uint64_t>(st.Int(4));
    if (!st.IsNull(5)) d.label = st.Text(5);
    if (auto h = st.BlobView(6); h.size() == 32) std::memcpy(d.invite.data(), h.data(), 32);
    out.push_back(std::move(d));
  }
  return out;
}

Status ServerCore::Revoke(const crypto::PublicKey& device) {
  std::lock_guard lock(mu_);
  const uint64_t first_leaf = log_.size();
  std::string head;
  Status done = [&]() -> Status {
    sql::Txn txn(*db_);
    DALA_RETURN_IF_ERROR(txn.Begin());
    DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare("UPDATE devices SET revoked = 1 WHERE device_key = ? AND revoked = 0"));
    st.Bind(1, device);
    DALA_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() == 0) return {Code::kNotFound, "no enrolled device with that key (or it is revoked already)"};
    const int64_t now = clock_();
    DALA_RETURN_IF_ERROR(log_.Append(protocol::DeviceRevokedLeaf(
        std::string_view(reinterpret_cast<const char*>(device.data()), 32), now)).status());
    DALA_ASSIGN_OR_RETURN(head, SignHeadLocked(now));
    return txn.Commit();
  }();
  if (!done.ok()) {
    log_.Rollback(first_leaf);
    return done;
  }
  PublishLogSizeLocked();
  return Status::Ok();
}

Status ServerCore::LabelDevice(const crypto::PublicKey& device, std::string_view label) {
  if (label.size() > 200) return Status(Code::kInvalidArgument, "a device label is at most 200 bytes");
  for (unsigned char c : label)
    if (c < 0x20 || c == 0x7f) return Status(Code::kInvalidArgument, "a device label is one line of printable text");
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare("UPDATE devices SET label = ? WHERE device_key = ?"));
  if (label.empty()) st.BindNull(1);
  else st.BindText(1, label);
  st.Bind(2, device);
  DALA_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return Status(Code::kNotFound, "no enrolled device with that key");
  return Status::Ok();
}

Result<std::vector<InviteInfo>> ServerCore::Invites() {
  std::lock_guard lock(mu_);
  std::vector<InviteInfo> out;
  // Each invite used: its terms from the invite bytes one of its devices presented (checked again here).
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare(
      "SELECT d.invite_hash, count(*), max(d.enrolled_ms), (SELECT invite FROM devices e WHERE e.invite_hash = "
      "d.invite_hash LIMIT 1), c.cancelled_ms FROM devices d LEFT JOIN invites_cancelled c ON c.invite_hash = "
      "d.invite_hash WHERE d.invite_hash IS NOT NULL GROUP BY d.invite_hash, c.cancelled_ms ORDER BY min(d.enrolled_ms)"));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    InviteInfo inv;
    auto h = st.BlobView(0);
    if (h.size() != 32) return Status(Code::kCorrupt, "an invite hash in the server database is damaged");
    std::memcpy(inv.hash.data(), h.data(), 32);
    inv.used = static_cast<uint64_t>(st.Int(1));
    inv.last_used_ms = st.Int(2);
    auto bytes = st.BlobView(3);
    auto checked = protocol::CheckSignedInvite(
        std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()), &organisation_);
    if (!checked.ok()) return Status(Code::kCorrupt, "an invite kept in the server database no longer verifies");
    inv.uses = checked->invite.uses();
    inv.issued_ms = static_cast<int64_t>(checked->invite.issued_ms());
    inv.expires_ms = static_cast<int64_t>(checked->invite.expires_ms());
    inv.urls.assign(checked->invite.urls().begin(), checked->invite.urls().end());
    if (!st.IsNull(4)) inv.cancelled_ms = st.Int(4);
    out.push_back(std::move(inv));
  }
  st = sql::Stmt();
  // Invites cancelled before anyone used them: only their hash is known.
  DALA_ASSIGN_OR_RETURN(sql::Stmt c, db_->Prepare(
      "SELECT invite_hash, cancelled_ms FROM invites_cancelled c WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE "
      "d.invite_hash = c.invite_hash) ORDER BY cancelled_ms"));
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, c.Step());
    if (!row) break;
    InviteInfo inv;
    auto h = c.BlobView(0);
    if (h.size() != 32) return Status(Code::kCorrupt, "an invite hash in the server database is damaged");
    std::memcpy(inv.hash.data(), h.data(), 32);
    inv.cancelled_ms = c.Int(1);
    out.push_back(std::move(inv));
  }
  return out;
}

Status ServerCore::CancelInvite(const crypto::Hash& invite) {
  std::lock_guard lock(mu_);
  sql::Txn txn(*db_);  // under the write lock, as enrolments are: one comes wholly before or after it
  DALA_RETURN_IF_ERROR(txn.Begin());
  DALA_ASSIGN_OR_RETURN(sql::Stmt st, db_->Prepare(
      db_->InsertOrIgnore("invites_cancelled(invite_hash, cancelled_ms) VALUES(?, ?)")));
  st.Bind(1, invite).Bind(2, clock_());
  DALA_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 0) return Status(Code::kState, "that invite is cancelled already");
  return txn.Commit();
}

}  // namespace dala::server
