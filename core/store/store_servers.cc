// Store: the servers a store delivers to (from invites) and request signing for the sync engine.
#include <cstring>

#include "format/invite.h"
#include "format/log.h"
#include "format/organisation.h"
#include "format/receipt.h"
#include "format/request.h"
#include "store/outbox_state.h"
#include "store/store.h"
#include "base/encoding.h"
#include "base/id.h"

namespace dala {

Result<ServerInfo> Store::Join(std::string_view invite_text, bool include_existing) {
  DALA_ASSIGN_OR_RETURN(protocol::DecodedInvite decoded, protocol::DecodeInvite(invite_text));
  const v1::Invite& inv = decoded.checked.invite;
  std::lock_guard lock(mu_);
  int64_t now = Now();
  if (inv.expires_ms() <= now)
    return Status(Code::kState, "the invite has expired; ask the organisation for a new one");
  ServerInfo info;
  std::memcpy(info.server_key.data(), inv.server_key().data(), 32);
  info.organisation_key = decoded.checked.root;
  info.destination = "org-" + encoding::ToHex(std::span<const uint8_t>(info.organisation_key.data(), 8));
  info.urls.assign(inv.urls().begin(), inv.urls().end());
  info.invite = decoded.checked.signed_invite;
  info.proof = protocol::EnrolProof(decoded.enrol_secret, device_.public_key, info.server_key);
  info.tls_pin = inv.tls_pin();
  info.fingerprint = protocol::Fingerprint(info.organisation_key);
  std::string urls;
  for (const auto& u : info.urls) {
    DALA_RETURN_IF_ERROR(ValidateText("a server address", u, 2048, false));
    if (u.find('\n') != std::string::npos) return Status(Code::kInvalidArgument, "a server address has a line break");
    urls += (urls.empty() ? "" : "\n") + u;
  }
  int64_t held_issued_ms = 0;  // of the invite joined last for this organisation
  // The statement to keep: the invite's, unless the store holds a newer one of the same root.
  v1::OrgStatement statement = decoded.checked.statement;
  std::string statement_bytes = inv.statement();
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
        "SELECT statement, organisation_key, invite FROM servers WHERE destination = ?"));
    st.BindText(1, info.destination);
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row && (st.BlobView(1).size() != 32 || std::memcmp(st.BlobView(1).data(), info.organisation_key.data(), 32) != 0))
      return Status(Code::kState, "another organisation already uses this destination name; this invite cannot be joined");
    if (row) {
      // An older invite of the organisation (a QR code kept or captured, still unexpired) cannot take the
      // phone back to the addresses, TLS pin or server it named then: the newest invite joined stands.
      v1::SignedInvite held_signed;
      v1::Invite held_invite;
      const auto held_bytes = st.BlobView(2);
      if (held_signed.ParseFromArray(held_bytes.data(), static_cast<int>(held_bytes.size())) &&
          held_invite.ParseFromString(held_signed.invite()))
        held_issued_ms = held_invite.issued_ms();
      auto held = protocol::VerifyStatement(st.BlobView(0), info.organisation_key);
      if (held.ok() && held->version() > statement.version()) {
        statement = std::move(*held);
        auto b = st.BlobView(0);
        statement_bytes.assign(reinterpret_cast<const char*>(b.data()), b.size());
      }
    }
  }
  info.organisation = statement.name();
  DALA_RETURN_IF_ERROR(ValidateText("the organisation name", info.organisation, 256, true));
  // An invite for a server the organisation has since revoked (as the newest statement the phone holds
  // says) is refused: a raided server's old invites die with its key.
  if (!protocol::AuthorisedAt(statement, info.server_key, now))
    return Status(Code::kVerify, "the organisation no longer authorises the server this invite names; ask it for a new invite");
  if (held_issued_ms > inv.issued_ms())
    return Status(Code::kState, "this phone already holds a newer invite of this organisation; nothing changed");
  info.statement_version = statement.version();
  info.authorised = true;
  const std::vector<crypto::PublicKey> recipients = protocol::Recipients(statement);
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  {
    // Another invite to the same server keeps the enrolment; a new server of the organisation enrols anew.
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
        "INSERT OR REPLACE INTO servers(destination, server_key, urls, token, organisation, tls_pin, enrolled, "
        "joined_ms, organisation_key, statement, invite, proof, log_witness) VALUES(?, ?, ?, X'', ?, ?, "
        "coalesce((SELECT enrolled FROM servers WHERE destination = ? AND server_key = ?), 0), ?, ?, ?, ?, ?, "
        "(SELECT log_witness FROM servers WHERE destination = ?))"));
    st.BindText(1, info.destination).Bind(2, info.server_key).BindText(3, urls).BindText(4, info.organisation);
    st.Bind(5, crypto::Bytes(info.tls_pin)).BindText(6, info.destination).Bind(7, info.server_key).Bind(8, now);
    st.Bind(9, info.organisation_key).Bind(10, crypto::Bytes(statement_bytes)).Bind(11, crypto::Bytes(info.invite));
    st.Bind(12, crypto::Bytes(info.proof)).BindText(13, info.destination);  // the log witness stays (its heads name their server)
    DALA_RETURN_IF_ERROR(st.Run());
  }
  // A new organisation gets what is sealed from now on; what the phone already holds only when asked.
  // (For one it knows, the reports sealed since it was joined are queued already.)
  DALA_RETURN_IF_ERROR(SetRecipientsLocked(info.destination, recipients, include_existing));
  if (include_existing) {
    // What waited for a 0.1 destination (never sent: no server speaks 0.1's protocol) is now queued for
    // this organisation; those copies go, so that they neither wait for ever nor block delete-after-delivery.
    // The 0.1 receipts stay.
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
        "DELETE FROM outbox WHERE state <> " DALA_OUTBOX_DELIVERED " AND destination IN "
        "(SELECT destination FROM servers WHERE organisation_key IS NULL OR length(organisation_key) <> 32) "
        "AND EXISTS (SELECT 1 FROM outbox n WHERE n.destination = ? AND n.report_id = outbox.report_id "
        "AND n.version = outbox.version)"));
    st.BindText(1, info.destination);
    DALA_RETURN_IF_ERROR(st.Run());
  }
  DALA_RETURN_IF_ERROR(txn.Commit());
  return info;
}

Result<std::vector<ServerInfo>> Store::Servers() {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT destination, server_key, urls, invite, organisation, tls_pin, enrolled, last_error, organisation_key, "
      "proof, statement, log_witness FROM servers ORDER BY joined_ms"));
  const int64_t now = Now();
  std::vector<ServerInfo> out;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ServerInfo s;
    s.destination = st.Text(0);
    auto k = st.BlobView(1);
    if (k.size() != 32) return Status(Code::kCorrupt, "a server key in the store is damaged");
    std::memcpy(s.server_key.data(), k.data(), 32);
    std::string urls = st.Text(2);
    for (size_t pos = 0; pos <= urls.size();) {
      size_t nl = urls.find('\n', pos);
      if (nl == std::string::npos) nl = urls.size();
      if (nl > pos) s.urls.push_back(urls.substr(pos, nl - pos));
      pos = nl + 1;
    }
    auto t = st.BlobView(3);
    s.invite.assign(reinterpret_cast<const char*>(t.data()), t.size());
    {
      // The invite's bytes were verified under the organisation's root at the join.
      v1::SignedInvite signed_invite;
      v1::Invite invite;
      if (signed_invite.ParseFromString(s.invite) && invite.ParseFromString(signed_invite.invite()))
        s.addresses_equivalent = invite.addresses_equivalent();
    }
    s.organisation = st.Text(4);
    auto pin = st.BlobView(5);
    s.tls_pin.assign(reinterpret_cast<const char*>(pin.data()), pin.size());
    s.enrolled = st.Int(6) != 0;
    s.last_error = st.Text(7);
    auto org = st.BlobView(8);
    if (org.size() == 32) {
      std::memcpy(s.organisation_key.data(), org.data(), 32);
      s.fingerprint = protocol::Fingerprint(s.organisation_key);
      auto statement = protocol::VerifyStatement(st.BlobView(10), s.organisation_key);
      if (!statement.ok()) return Status(Code::kCorrupt, "an organisation statement in the store is damaged");
      s.statement_version = statement->version();
      s.authorised = protocol::AuthorisedAt(*statement, s.server_key, now);
      s.statement = std::move(*statement);
    } else {
      s.legacy = true;
      s.last_error = "joined with a Dala 0.1 invite: nothing is sent there; what waits for it is delivered once "
                     "this phone joins its organisation again (an invite from its desk, with include_existing)";
    }
    auto proof = st.BlobView(9);
    s.proof.assign(reinterpret_cast<const char*>(proof.data()), proof.size());
    auto witness = st.BlobView(11);
    s.log_witness.assign(reinterpret_cast<const char*>(witness.data()), witness.size());
    out.push_back(std::move(s));
  }
  return out;
}

Result<uint64_t> Store::UpdateStatement(const std::string& destination, std::string_view signed_statement) {
  std::lock_guard lock(mu_);
  crypto::PublicKey root{};
  uint64_t held = 0;
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("SELECT organisation_key, statement FROM servers WHERE destination = ?"));
    st.BindText(1, destination);
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row || st.BlobView(0).size() != 32) return Status(Code::kNotFound, "no organisation server for this destination");
    std::memcpy(root.data(), st.BlobView(0).data(), 32);
    auto current = protocol::VerifyStatement(st.BlobView(1), root);
    if (current.ok()) held = current->version();
  }
  DALA_ASSIGN_OR_RETURN(v1::OrgStatement next, protocol::VerifyStatement(crypto::Bytes(signed_statement), root));
  if (next.version() <= held) return held;  // an older or the same statement: nothing changes
  const std::vector<crypto::PublicKey> recipients = protocol::Recipients(next);
  db::Txn txn(db_);
  DALA_RETURN_IF_ERROR(txn.Begin());
  {
    DALA_ASSIGN_OR_RETURN(db::Stmt up, db_.Prepare("UPDATE servers SET statement = ?, organisation = ? WHERE destination = ?"));
    up.Bind(1, crypto::Bytes(signed_statement)).BindText(2, next.name()).BindText(3, destination);
    DALA_RETURN_IF_ERROR(up.Run());
  }
  DALA_RETURN_IF_ERROR(SetRecipientsLocked(destination, recipients, /*seal_existing=*/false));
  DALA_RETURN_IF_ERROR(txn.Commit());
  return next.version();
}

Status Store::SetLogWitness(const std::string& destination, std::string_view witness) {
  if (witness.size() > 64 * 1024) return Status(Code::kInvalidArgument, "a log witness is at most 64 KiB");
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare("UPDATE servers SET log_witness = ? WHERE destination = ?"));
  st.Bind(1, crypto::Bytes(witness)).BindText(2, destination);
  return st.Run();
}

Status Store::SetServerState(const std::string& destination, bool enrolled, std::string_view last_error) {
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st,
                        db_.Prepare("UPDATE servers SET enrolled = ?, last_error = ? WHERE destination = ?"));
  st.Bind(1, enrolled ? 1 : 0);
  if (last_error.empty()) st.BindNull(2); else st.BindText(2, last_error.substr(0, 1024));
  st.BindText(3, destination);
  return st.Run();
}

Result<std::vector<ReceiptInfo>> Store::ListReceipts() {
  DALA_ASSIGN_OR_RETURN(std::vector<ServerInfo> servers, Servers());
  std::lock_guard lock(mu_);
  DALA_ASSIGN_OR_RETURN(db::Stmt st, db_.Prepare(
      "SELECT destination, report_id, version, receipt FROM outbox WHERE state = " DALA_OUTBOX_DELIVERED
      " ORDER BY updated_ms, seq"));
  std::vector<ReceiptInfo> out;
  for (;;) {
    DALA_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ReceiptInfo r;
    r.destination = st.Text(0);
    auto id = st.BlobView(1);
    if (id.size() != r.id.size()) return Status(Code::kCorrupt, "a report id in the store is damaged");
    std::memcpy(r.id.data(), id.data(), id.size());
    r.version = static_cast<uint32_t>(st.Int(2));
    r.receipt = st.Blob(3);
    for (const auto& s : servers) {
      if (s.destination != r.destination) continue;
      // Signed by the destination's server, or by an earlier server of the same organisation that its
      // statement authorised when it signed.
      v1::SignedReceipt sr;
      v1::Receipt claimed;
      if (!sr.ParseFromArray(r.receipt.data(), static_cast<int>(r.receipt.size())) ||
          !claimed.ParseFromString(sr.receipt()) || claimed.server_key().size() != 32)
        continue;
      const bool current = std::memcmp(claimed.server_key().data(), s.server_key.data(), 32) == 0;
      if (!current && !protocol::AuthorisedAt(s.statement, crypto::Bytes(claimed.server_key()), claimed.server_time_ms()))
        continue;
      // Its signature, or (as every receipt since receipts are proven by the log) its place in a head that
      // key signed, authorised then too.
      auto kept = protocol::VerifyKeptReceipt(r.receipt, crypto::Bytes(claimed.server_key()));
      if (kept.ok() && kept->head && !current &&
          !protocol::AuthorisedAt(s.statement, crypto::Bytes(claimed.server_key()), kept->head->time_ms))
        continue;
      const v1::Receipt* v = kept.ok() ? &kept->receipt : nullptr;
      if (v != nullptr && v->version() == r.version && v->report_id() == IdBytes(r.id) &&
          v->device_key() == std::string_view(reinterpret_cast<const char*>(device_.public_key.data()), 32)) {
        r.verified = true;
        r.sequence = v->sequence();
        r.server_time_ms = v->server_time_ms();
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string Store::SignRequest(v1::Request& request) {
  request.set_device_key(device_.public_key.data(), device_.public_key.size());
  return protocol::SignRequest(device_, request);
}

}  // namespace dala
