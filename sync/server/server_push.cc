// dala-server: storing a push (envelopes checked, deduplicated, receipted) inside the writer's transaction.
#include "server/server_core.h"


#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <optional>

#include "dala/v1/sync.pb.h"
#include "base/fsutil.h"
#include "crypto/attachment_file.h"
#include "format/invite.h"
#include "format/log.h"
#include "format/request.h"
#include "protocol/http_api.h"
#include "base/clock.h"
#include "base/failpoint.h"
#include "format/envelope.h"
#include "format/manifest.h"
#include "crypto/chunk_tree.h"
#include "base/encoding.h"

#include "server/server_internal.h"

namespace dala::server {

Result<HttpResult> ServerCore::PushLocked(PushJob& job, int64_t now) {
  const std::string& device_key = job.device_key;
  int64_t last_seen = 0;
  {
    DALA_ASSIGN_OR_RETURN(sql::Stmt dev, db_->Prepare("SELECT revoked, last_seen_ms FROM devices WHERE device_key = ?"));
    dev.Bind(1, B(device_key));
    DALA_ASSIGN_OR_RETURN(bool row, dev.Step());
    if (!row) return Reply(401, v1::UNKNOWN_DEVICE, "this device is not enrolled; enrol first", now);
    if (dev.Int(0) != 0) return Reply(403, v1::DEVICE_REVOKED, "this device was revoked by the organisation", now);
    last_seen = dev.Int(1);
  }
  v1::Response resp;
  resp.set_status(v1::OK);
  resp.set_server_time_ms(now);
  for (PushItem& it : job.items) {
    v1::PushResult* res = resp.add_results();
    res->set_report_id(it.h.report_id.data(), 16);
    res->set_version(it.h.version);
    if (!it.reject.empty()) {
      res->set_code(v1::REJECTED);
      res->set_reason(it.reject);
      continue;
    }
    {
      DALA_ASSIGN_OR_RETURN(sql::Stmt find,
                            db_->Prepare("SELECT content_hash, receipt, leaf FROM reports WHERE device_key = ? AND "
                                        "report_id = ? AND version = ?"));
      find.Bind(1, B(device_key)).Bind(2, it.h.report_id).Bind(3, it.h.version);
      DALA_ASSIGN_OR_RETURN(bool row, find.Step());
      if (row) {
        auto stored = find.BlobView(0);
        if (stored.size() == 32 && std::memcmp(stored.data(), it.hash.data(), 32) == 0) {
          // The same report again (a retry, a replay, or twice in one group): one copy, the original receipt.
          auto rc = find.BlobView(1);
          v1::SignedReceipt original;
          v1::Receipt fields;
          if (!original.ParseFromArray(rc.data(), static_cast<int>(rc.size())) ||
              !fields.ParseFromString(original.receipt()))
            return Status(Code::kCorrupt, "a stored receipt is damaged");
          res->set_code(v1::DUPLICATE);
          res->set_sequence(fields.sequence());
          res->set_server_time_ms(fields.server_time_ms());
          if (!find.IsNull(2)) res->set_leaf_index(static_cast<uint64_t>(find.Int(2)));
        } else {
          res->set_code(v1::REJECTED);
          res->set_reason("this device already stored a different report with this id and version");
        }
        continue;
      }
    }
    if (!it.h.attachments.empty()) {
      std::string conflict;
      std::set<std::string> declared;
      DALA_ASSIGN_OR_RETURN(bool complete, AttachmentsLocked(device_key, it.h, &conflict, &declared));
      // What the store holds of each: nothing of one declared just now (the store is not asked, under
      // the write lock, about what no phone could have sent yet).
      auto received = [&](const v1::AttachmentManifest& m) -> uint64_t {
        return declared.count(m.attachment_id()) != 0 ? 0 : ReceivedFor(device_key, m);
      };
      if (!conflict.empty()) {
        res->set_code(v1::REJECTED);
        res->set_reason(conflict);
        continue;
      }
      if (!complete && limits_.max_storage_bytes != 0) {
        // No room for what is missing: say so now, before the phone sends any of it. (By this node's count:
        // the upload that follows counts what the other nodes stored too, outside this transaction.)
        uint64_t missing = 0;
        for (const auto& m : it.h.attachments) {
          missing += m.size() - std::min(m.size(), received(m));
        }
        if (stored_bytes_ + missing > limits_.max_storage_bytes) {
          res->set_code(v1::RETRY_LATER);
          res->set_reason("the server's storage is full; try again later");
          continue;
        }
      }
      if (!complete) {
        // Held until every attachment is here; no receipt yet. The phone uploads, then pushes again.
        DALA_ASSIGN_OR_RETURN(sql::Stmt p, db_->Prepare(db_->Upsert(
            "pending(report_id, version, device_key, content_hash, envelope, received_ms) VALUES(?, ?, ?, ?, ?, ?)",
            "device_key, report_id, version", "content_hash, envelope, received_ms")));
        p.Bind(1, it.h.report_id).Bind(2, it.h.version).Bind(3, B(device_key)).Bind(4, it.hash);
        p.Bind(5, B(it.envelope)).Bind(6, now);
        DALA_RETURN_IF_ERROR(p.Run());
        res->set_code(v1::INCOMPLETE);
        for (const auto& m : it.h.attachments) {
          auto* ap = res->add_attachments();
          ap->set_attachment_id(m.attachment_id());
          ap->set_received(received(m));
        }
        continue;
      }
      DALA_ASSIGN_OR_RETURN(sql::Stmt done, db_->Prepare("DELETE FROM pending WHERE device_key = ? AND report_id = ? AND version = ?"));
      done.Bind(1, B(device_key)).Bind(2, it.h.report_id).Bind(3, it.h.version);
      DALA_RETURN_IF_ERROR(done.Run());
    }
    // The writer is the only writer: it numbers reports itself and stores each row once, receipt included.
    int64_t sequence = next_sequence_;
    v1::Receipt receipt;
    receipt.set_report_id(it.h.report_id.data(), 16);
    receipt.set_version(it.h.version);
    receipt.set_content_hash(it.hash.data(), 32);
    receipt.set_server_time_ms(now);
    receipt.set_sequence(static_cast<uint64_t>(sequence));
    receipt.set_server_key(signing_.public_key.data(), 32);
    receipt.set_device_key(device_key);
    // Kept unsigned: the log proves it to the phone (the head signed for this commit), and an export signs it
    // (ServerCore::BuildExport). Ed25519 is deterministic: every export carries the same bytes.
    v1::SignedReceipt kept;
    kept.set_receipt(receipt.SerializeAsString());
    const std::string unsigned_receipt = kept.SerializeAsString();
    DALA_ASSIGN_OR_RETURN(sql::Stmt ins, db_->Prepare(
        "INSERT INTO reports(seq, report_id, version, device_key, content_hash, envelope, receipt, received_ms, leaf) "
        "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    DALA_ASSIGN_OR_RETURN(uint64_t leaf, log_.Append(protocol::ReportLeaf(receipt)));
    ins.Bind(1, sequence).Bind(2, it.h.report_id).Bind(3, it.h.version).Bind(4, B(device_key)).Bind(5, it.hash);
    ins.Bind(6, B(it.envelope)).Bind(7, B(unsigned_receipt)).Bind(8, now).Bind(9, static_cast<int64_t>(leaf));
    DALA_RETURN_IF_ERROR(ins.Run());
    ++next_sequence_;
    ++job.stored;
    job.stored_bytes += it.envelope.size();
    res->set_code(v1::STORED);
    res->set_sequence(static_cast<uint64_t>(sequence));
    // The receipt's time is the answer's (resp.server_time_ms): not repeated per report.
    res->set_leaf_index(leaf);
    Failpoint("server.push.stored");  // crash tests stop the server here, inside the transaction
  }
  // Last contact to the minute: a phone pushing again within a minute does not rewrite its device row (a
  // page of a table in random key order, written again on every push otherwise).
  if (now < last_seen || now - last_seen >= kLastSeenResolutionMs) {
    DALA_ASSIGN_OR_RETURN(sql::Stmt seen, db_->Prepare("UPDATE devices SET last_seen_ms = ? WHERE device_key = ?"));
    seen.Bind(1, now).Bind(2, B(device_key));
    DALA_RETURN_IF_ERROR(seen.Run());
  }
  return HttpResult{200, kProto, resp.SerializeAsString()};
}



Result<bool> ServerCore::AttachmentsLocked(const std::string& device_key, const envelope::Header& h,
                                           std::string* conflict, std::set<std::string>* declared) {
  bool all = true;
  for (const auto& m : h.attachments) {
    DALA_ASSIGN_OR_RETURN(sql::Stmt q, db_->Prepare(
        "SELECT size, chunk_size, root, complete FROM attachments WHERE device_key = ? AND attachment_id = ?"));
    q.Bind(1, B(device_key)).Bind(2, B(m.attachment_id()));
    DALA_ASSIGN_OR_RETURN(bool row, q.Step());
    if (row) {
      auto root = q.BlobView(2);
      if (static_cast<uint64_t>(q.Int(0)) != m.size() || static_cast<uint32_t>(q.Int(1)) != m.chunk_size() ||
          root.size() != 32 || std::memcmp(root.data(), m.root().data(), 32) != 0) {
        *conflict = "an attachment id of this device is already declared with other contents";
        return false;
      }
      bool complete = q.Int(3) != 0;
      q = sql::Stmt();
      if (!complete) {
        DALA_ASSIGN_OR_RETURN(complete, CompleteOnDiskLocked(device_key, m));
      }
      all = all && complete;
      continue;
    }
    q = sql::Stmt();
    DALA_ASSIGN_OR_RETURN(sql::Stmt ins, db_->Prepare(
        "INSERT INTO attachments(device_key, attachment_id, size, chunk_size, root, chunk_hashes, complete, created_ms) "
        "VALUES(?, ?, ?, ?, ?, ?, 0, ?)"));
    ins.Bind(1, B(device_key)).Bind(2, B(m.attachment_id())).Bind(3, static_cast<int64_t>(m.size()));
    ins.Bind(4, static_cast<int64_t>(m.chunk_size())).Bind(5, B(m.root())).Bind(6, B(m.chunk_hashes()));
    ins.Bind(7, clock_());
    DALA_RETURN_IF_ERROR(ins.Run());
    declared->insert(m.attachment_id());
    all = false;
  }
  return all;
}


}  // namespace dala::server
