#include "desk/export_opener.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <vector>

#include "base/encoding.h"
#include "crypto/attachment_file.h"
#include "format/envelope.h"
#include "format/manifest.h"
#include "dala/v1/sync.pb.h"
#include "base/fsutil.h"
#include "format/invite.h"
#include "format/organisation.h"
#include "format/receipt.h"
#include "format/request.h"
#include "format/report.h"

namespace dala::desk {
namespace {

struct Opened {
  std::string id_hex;
  uint32_t version = 0;
  Report report;
  bool opened = false;
  std::vector<std::string> problems;
  bool receipt_ok = false;
  uint64_t sequence = 0;
  envelope::Header header;
  std::string attachments_json = "[]";
};

std::string Extension(const std::string& mime) {
  static const std::pair<const char*, const char*> kKnown[] = {
      {"video/mp4", ".mp4"}, {"video/quicktime", ".mov"}, {"video/webm", ".webm"}, {"image/jpeg", ".jpg"},
      {"image/png", ".png"}, {"image/heic", ".heic"}, {"audio/ogg", ".ogg"}, {"audio/mpeg", ".mp3"},
      {"audio/mp4", ".m4a"}, {"audio/aac", ".aac"}, {"application/pdf", ".pdf"}, {"text/plain", ".txt"}};
  for (const auto& [m, e] : kKnown)
    if (mime == m) return e;
  return ".bin";
}

// Decrypts one attachment from the export's media directory into `to`, checking the signed ciphertext
// hash, every piece's authentication and the plaintext hash. On any failure nothing is left at `to`.
Status OpenAttachment(const v1::AttachmentRef& ref, const v1::AttachmentManifest* manifest, const std::string& from,
                      const std::string& to) {
  if (manifest == nullptr) return {Code::kVerify, "the envelope does not declare it (the server never checked it)"};
  if (manifest->root() != ref.ciphertext_hash() || manifest->size() != ref.ciphertext_size())
    return {Code::kVerify, "the envelope's manifest and the sealed report disagree on it"};
  if (ref.plaintext_hash().size() != 32) return {Code::kVerify, "its recorded plaintext hash is malformed"};
  attachment::Reader::Expect expect;
  expect.size = ref.size();
  std::memcpy(expect.plaintext_hash.data(), ref.plaintext_hash().data(), 32);
  expect.check_root = true;
  expect.chunk_size = manifest->chunk_size();
  std::memcpy(expect.root.data(), manifest->root().data(), 32);
  if (!fs::Exists(from)) return {Code::kNotFound, "its file is missing from the export"};
  DALA_ASSIGN_OR_RETURN(auto reader, attachment::Reader::Open(from, crypto::Bytes(ref.key()), expect));
  const std::string part = to + ".part";
  (void)fs::RemoveFile(part);
  std::FILE* out = std::fopen(part.c_str(), "wbx");
  if (out == nullptr) return fs::FromErrno(errno, "create", part);
  std::vector<uint8_t> buf(attachment::kPiece);
  Status st = Status::Ok();
  for (;;) {
    auto n = reader->Read(buf);
    if (!n.ok()) {
      st = n.status();
      break;
    }
    if (*n == 0) break;
    if (std::fwrite(buf.data(), 1, *n, out) != *n) {
      st = fs::FromErrno(errno, "write", part);
      break;
    }
  }
  if (std::fclose(out) != 0 && st.ok()) st = fs::FromErrno(errno, "write", part);
  if (!st.ok()) {
    (void)fs::RemoveFile(part);
    return st;
  }
  if (std::rename(part.c_str(), to.c_str()) != 0) return fs::FromErrno(errno, "rename", to);
  return Status::Ok();
}

std::string ProblemsJson(const std::vector<std::string>& p) {
  std::string j = "[";
  for (size_t i = 0; i < p.size(); ++i) j += (i ? "," : "") + JsonEscape(p[i]);
  return j + "]";
}

// The devices enrolled through an invite of this organisation (signed by its root, naming a server it
// authorised, with the invite holder's proof for that device at that server), by device key.
std::map<std::string, const v1::Enrolment*> Enrolled(const v1::Export& ex, const Organisation& org) {
  std::map<std::string, const v1::Enrolment*> out;
  for (const auto& e : ex.enrolments()) {
    auto inv = protocol::CheckSignedInvite(e.invite(), &org.root.public_key);
    if (!inv.ok() || e.device_key().size() != 32) continue;
    if (!protocol::VerifyEnrolProof(inv->invite, crypto::Bytes(e.device_key()), crypto::Bytes(inv->invite.server_key()),
                                    e.proof()))
      continue;
    out.emplace(e.device_key(), &e);
  }
  return out;
}

// The receipt, if a server key the organisation authorised (in the desk's own statement, not the export's)
// signed it at the time it bears, for exactly these envelope bytes and this device.
Result<v1::Receipt> CheckReceipt(const std::string& signed_receipt, const std::string& envelope_bytes,
                                 const envelope::Header& h, const Organisation& org) {
  v1::SignedReceipt sr;
  v1::Receipt claimed;
  if (!sr.ParseFromString(signed_receipt) || !claimed.ParseFromString(sr.receipt()) ||
      claimed.server_key().size() != 32)
    return Status(Code::kVerify, "missing or malformed");
  if (!protocol::FindServer(org.statement, crypto::Bytes(claimed.server_key())))
    return Status(Code::kVerify, "signed by a server key the organisation never authorised");
  DALA_ASSIGN_OR_RETURN(v1::Receipt r, protocol::VerifyReceipt(crypto::Bytes(signed_receipt),
                                                               crypto::Bytes(claimed.server_key())));
  if (!protocol::AuthorisedAt(org.statement, crypto::Bytes(r.server_key()), r.server_time_ms()))
    return Status(Code::kVerify, "dated when the organisation did not authorise its server key (before, after or "
                                 "revoked)");
  crypto::Hash env_hash = crypto::Blake2b256(crypto::Bytes(envelope_bytes));
  if (r.content_hash() != std::string_view(reinterpret_cast<const char*>(env_hash.data()), 32))
    return Status(Code::kVerify, "for different bytes than the stored report");
  if (r.device_key() != std::string_view(reinterpret_cast<const char*>(h.device_key.data()), 32) ||
      r.report_id() != std::string_view(reinterpret_cast<const char*>(h.report_id.data()), h.report_id.size()) ||
      r.version() != h.version)
    return Status(Code::kVerify, "for another report, version or device");
  return r;
}

}  // namespace

Result<Summary> OpenExport(const Organisation& org, const std::string& export_path, const std::string& out_dir) {
  DALA_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, fs::ReadFile(export_path, 4ull << 30));
  v1::Export ex;
  if (!ex.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) || ex.server_key().size() != 32)
    return Status(Code::kCorrupt, "'" + export_path + "' is not a dala-server export");
  DALA_RETURN_IF_ERROR(fs::EnsureDirectory(out_dir));
  const auto enrolled = Enrolled(ex, org);

  std::vector<Opened> all;
  for (const auto& item : ex.reports()) {
    Opened o;
    Result<envelope::OpenedReport> opened = Status(Code::kNotFound, "not sealed to this organisation's keys");
    for (const auto& k : org.recipients) {
      opened = envelope::OpenReport(crypto::Bytes(item.envelope()), k);
      if (opened.ok() || opened.status().code() != Code::kNotFound) break;
    }
    if (!opened.ok()) {
      o.problems.push_back(opened.status().message());
      if (envelope::Verify(crypto::Bytes(item.envelope()), &o.header).ok()) {
        o.id_hex = encoding::ToHex(o.header.report_id);
        o.version = o.header.version;
      }
    } else {
      o.header = std::move(opened->header);
      o.id_hex = encoding::ToHex(o.header.report_id);
      o.version = o.header.version;
      o.report.content = std::move(opened->content);
      o.report.state = ReportState::kDelivered;
      o.report.content_hash = opened->content_hash;
      o.report.updated_ms = o.report.content.sealed_ms();
      o.opened = true;
    }
    if (o.id_hex.empty()) {
      // Not even the outer signature holds: nothing in it can be attributed.
    } else if (!enrolled.count(std::string(reinterpret_cast<const char*>(o.header.device_key.data()), 32))) {
      o.problems.push_back("the device that signed it was not enrolled through an invite of this organisation");
    }
    auto receipt = CheckReceipt(item.receipt(), item.envelope(), o.header, org);
    if (!receipt.ok()) {
      o.problems.push_back("receipt: " + receipt.status().message());
    } else {
      o.receipt_ok = true;
      o.sequence = receipt->sequence();
    }
    all.push_back(std::move(o));
  }

  // Version chains: version n names version n-1's content hash.
  std::map<std::pair<std::string, uint32_t>, const Opened*> by_version;
  for (const auto& o : all)
    if (o.opened) by_version[{o.id_hex, o.version}] = &o;
  for (auto& o : all) {
    if (!o.opened) continue;
    const std::string& prev = o.report.content.previous_hash();
    if (o.version == 1) {
      if (!prev.empty()) o.problems.push_back("version 1 names a previous version");
      continue;
    }
    auto it = by_version.find({o.id_hex, o.version - 1});
    if (it == by_version.end()) {
      o.problems.push_back("version " + std::to_string(o.version - 1) + " is missing from the export");
    } else if (prev != std::string_view(reinterpret_cast<const char*>(it->second->report.content_hash.data()), 32)) {
      o.problems.push_back("the previous-version hash does not match version " + std::to_string(o.version - 1));
    } else if (it->second->report.content.device_key() != o.report.content.device_key()) {
      o.problems.push_back("version " + std::to_string(o.version - 1) + " was signed by another device");
    }
  }

  // Attachments: decrypted next to the reports (ATTACHMENT-ID.ext under a directory per report), each
  // checked end to end. One that fails makes its report fail; it is reported, not hidden.
  const std::string media_dir = export_path + ".media";
  for (auto& o : all) {
    if (!o.opened || o.report.content.attachments_size() == 0) continue;
    const std::string sub = o.id_hex + "-v" + std::to_string(o.version) + "-attachments";
    const std::string dir = fs::Join(out_dir, sub);
    DALA_RETURN_IF_ERROR(fs::EnsureDirectory(dir));
    o.attachments_json = "[";
    for (int i = 0; i < o.report.content.attachments_size(); ++i) {
      const auto& ref = o.report.content.attachments(i);
      const v1::AttachmentManifest* manifest = nullptr;
      for (const auto& m : o.header.attachments)
        if (m.attachment_id() == ref.attachment_id()) manifest = &m;
      std::string id_hex = encoding::ToHex(crypto::Bytes(ref.attachment_id()));
      std::string file = id_hex + Extension(ref.mime_type());
      std::string from = fs::Join(media_dir, attachment::FileName(o.header.device_key, crypto::Bytes(ref.attachment_id())));
      Status st = OpenAttachment(ref, manifest, from, fs::Join(dir, file));
      if (!st.ok()) o.problems.push_back("attachment " + id_hex + ": " + st.message());
      o.attachments_json += std::string(i ? "," : "") + "{\"id\":" + JsonEscape(id_hex) + ",\"mime\":" +
                            JsonEscape(ref.mime_type()) + ",\"size\":" + std::to_string(ref.size()) +
                            ",\"verified\":" + (st.ok() ? "true" : "false") + ",\"file\":" +
                            (st.ok() ? JsonEscape(sub + "/" + file) : "null") + "}";
    }
    o.attachments_json += "]";
  }

  Summary sum;
  std::string index = "[";
  for (size_t i = 0; i < all.size(); ++i) {
    const Opened& o = all[i];
    std::string name = (o.id_hex.empty() ? "unreadable-" + std::to_string(i) : o.id_hex) + "-v" +
                       std::to_string(o.version) + ".json";
    bool ok = o.opened && o.problems.empty();
    ++sum.reports;
    ok ? ++sum.verified : ++sum.failed;
    std::string j = "{\"verified\":" + std::string(ok ? "true" : "false") +
                    ",\"problems\":" + ProblemsJson(o.problems) +
                    ",\"receipt\":{\"verified\":" + (o.receipt_ok ? "true" : "false") +
                    ",\"sequence\":" + std::to_string(o.sequence) + "}" +
                    ",\"attachments\":" + o.attachments_json +
                    ",\"report\":" + (o.opened ? ReportToJson(o.report) : std::string("null")) + "}\n";
    DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(fs::Join(out_dir, name), crypto::Bytes(j)));
    index += std::string(i ? "," : "") + "{\"file\":" + JsonEscape(name) + ",\"id\":" + JsonEscape(o.id_hex) +
             ",\"version\":" + std::to_string(o.version) + ",\"verified\":" + (ok ? "true" : "false") +
             ",\"problems\":" + ProblemsJson(o.problems) + "}";
  }
  index += "]";
  std::string summary = "{\"server_key\":" + JsonEscape(encoding::ToHex(crypto::Bytes(ex.server_key()))) +
                        ",\"reports\":" + std::to_string(sum.reports) + ",\"verified\":" + std::to_string(sum.verified) +
                        ",\"failed\":" + std::to_string(sum.failed) + ",\"items\":" + index + "}\n";
  DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(fs::Join(out_dir, "summary.json"), crypto::Bytes(summary)));
  return sum;
}

}  // namespace dala::desk
