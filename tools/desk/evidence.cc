#include "desk/evidence.h"
#include "desk/export_file.h"

#include <sodium.h>

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/fsutil.h"
#include "desk/desk_custody.h"
#include "desk/desk_media.h"
#include "desk/desk_query.h"
#include "desk/desk_table.h"
#include "desk/report_doc.h"
#include "desk/zip_file.h"
#include "format/envelope.h"
#include "format/invite.h"
#include "format/log.h"
#include "format/merkle.h"
#include "format/organisation.h"
#include "format/receipt.h"
#include "format/report.h"
#include "timestamp/rfc3161.h"

namespace dala::desk {
namespace {

using nlohmann::json;

std::string Hex(std::span<const uint8_t> b) { return encoding::ToHex(b); }
std::string Hex(std::string_view s) { return encoding::ToHex(crypto::Bytes(s)); }

struct Hashes {
  crypto_hash_sha256_state sha;
  crypto_generichash_state b2;
  uint64_t size = 0;
  Hashes() {
    crypto_hash_sha256_init(&sha);
    crypto_generichash_init(&b2, nullptr, 0, 32);
  }
  void Update(std::span<const uint8_t> p) {
    crypto_hash_sha256_update(&sha, p.data(), p.size());
    crypto_generichash_update(&b2, p.data(), p.size());
    size += p.size();
  }
  std::pair<std::string, std::string> Final() {
    uint8_t s[32], b[32];
    crypto_hash_sha256_final(&sha, s);
    crypto_generichash_final(&b2, b, 32);
    return {encoding::ToHex(std::span<const uint8_t>(s, 32)), encoding::ToHex(std::span<const uint8_t>(b, 32))};
  }
};


json ProofJson(uint64_t index, const std::vector<merkle::Hash>& proof, const std::string& head) {
  json p = json::array();
  for (const auto& h : proof) p.push_back(Hex(h));
  return {{"leaf_index", index}, {"inclusion_proof", p}, {"log_head", Hex(head)}};
}

// The log of a server as the desk's newest export of it holds: leaves, the tree, its signed head, the
// enrolments by device.
struct KeptLog {
  ExportFile ex;  // without its entries
  merkle::MemoryTree tree;
  std::map<std::string, const v1::Enrolment*> enrolments;
  std::map<std::string, uint64_t> leaf_index;
};

Result<std::unique_ptr<KeptLog>> LoadKeptLog(const DeskStore& store, const std::string& server_hex) {
  const std::string path = fs::Join(fs::Join(store.dir(), "exports"), server_hex + ".export");
  auto log = std::make_unique<KeptLog>();
  auto ex = ReadExport(path, ExportParts{false, true, true, true});
  if (!ex.ok()) {
    if (ex.status().code() != Code::kCorrupt) return ex.status();
    return Status(Code::kCorrupt, "the desk's copy of the export of server " + server_hex + " is damaged");
  }
  log->ex = std::move(*ex);
  for (size_t i = 0; i < log->ex.log.size(); ++i) {
    log->tree.Append(merkle::LeafHash(crypto::Bytes(log->ex.log[i])));
    log->leaf_index.emplace(log->ex.log[i], static_cast<uint64_t>(i));
  }
  for (const auto& e : log->ex.enrolments) log->enrolments.emplace(e.device_key(), &e);
  return log;
}

// What the desk found for one version at import, in plain words: only verified versions are packaged.
void VersionChecks(Doc& doc, const VersionRow& v, const std::string& vdir, bool stamp_in_package) {
  const std::string n = std::to_string(v.version);
  doc.Check(true, "Version " + n + ", sealed on the phone " + WhenText(v.content.sealed_ms()) +
                      " (the phone's clock, not trusted): signed by the device outside and inside the sealed envelope, "
                      "and opened with the key the device committed to (" + vdir + "envelope.bin, content-key.bin).");
  doc.Check(true, "Version " + n + " received " + WhenText(v.received_ms) + " by server key " + v.server_key +
                      " as number " + std::to_string(v.sequence) +
                      ", a key the organisation's statement authorised at that time (" + vdir + "receipt.bin); at position " +
                      std::to_string(v.leaf_index) + " of that server's append-only log, under a head it signed (" + vdir +
                      "log.json).");
  const json detail = json::parse(v.detail_json, nullptr, false);
  if (detail.is_object() && detail.contains("timestamp") && detail["timestamp"].is_object())
    doc.Check(true, "At import the desk checked a time-stamp by " +
                        Iso(Capped(detail["timestamp"].value("tsa", std::string()), 200, "the authority's token")) +
                        ": version " + n + " was in the server's log no later than " +
                        WhenText(detail["timestamp"].value("no_later_than_ms", int64_t{0})) + ".");
  if (stamp_in_package)
    doc.Add(BlockKind::kCheckNone, "Version " + n + ": the token of the earliest time-stamp over the server's log with "
                                       "this version in it is in " + vdir + "timestamp.json. Check it with dala verify "
                                       "--tsa-cert and the certificate of an authority you trust.");
  else
    doc.Add(BlockKind::kCheckNone, "Version " + n + ": no time-stamp over the server's log holds it.");
}

// The latest version's content, as the device signed it. Long texts are cut: the whole is in content.json.
void ContentBlocks(Doc& doc, const VersionRow& v, const std::string& content_json) {
  const v1::ReportContent& c = v.content;
  doc.Add(BlockKind::kSubheading, "What the device signed (version " + std::to_string(v.version) + ")");
  constexpr int kFieldsShown = 100;  // a phone may send thousands
  for (int i = 0; i < c.fields_size() && i < kFieldsShown; ++i)
    doc.Field(Capped(c.fields(i).key(), 200, content_json) + " (" + FieldTypeName(c.fields(i).value()) + ")",
              Capped(FieldText(c.fields(i).value()), 4000, content_json));
  if (c.fields_size() > kFieldsShown)
    doc.Add(BlockKind::kParagraph, std::to_string(c.fields_size() - kFieldsShown) +
                                       " more fields are left out here: every field is in " + content_json + ".");
  doc.Field("Created", WhenText(c.created_ms()) + " (the phone's clock)");
  doc.Field("Location", c.capture().has_location() ? GeoText(c.capture().location()) : "not recorded");
  doc.Add(BlockKind::kSubheading, "Narrative");
  if (c.narrative().empty())
    doc.Add(BlockKind::kCheckNone, "None.");
  else
    doc.Add(BlockKind::kQuote, Capped(c.narrative(), 20000, content_json));
}

// The custody of the package's reports, how the desk checked them, and what a package does not prove.
void ClosingBlocks(Doc& doc, const std::vector<CustodyEntry>& custody, const std::set<std::string>& names) {
  constexpr size_t kShown = 300;
  std::vector<const CustodyEntry*> mine;
  for (const auto& e : custody)
    if (names.count(e.report) > 0) mine.push_back(&e);
  doc.Add(BlockKind::kHeading, "Custody at the desk");
  doc.Add(BlockKind::kParagraph,
          "Every view, annotation and export of these reports at the desk, from the custody log (custody.jsonl: "
          "each entry names the hash of the one before it and is signed by the organisation's root). The log holds " +
              std::to_string(custody.size()) + " entries, " + std::to_string(mine.size()) + " of them about these reports" +
              (mine.size() > kShown ? "; the last " + std::to_string(kShown) + " are shown." : "."));
  for (size_t i = mine.size() > kShown ? mine.size() - kShown : 0; i < mine.size(); ++i) {
    const CustodyEntry& e = *mine[i];
    doc.Field("#" + std::to_string(e.seq) + " " + WhenText(e.time_ms),
              Capped(e.action, 40, "custody.jsonl") + " " + e.report + ": " + Capped(e.detail, 500, "custody.jsonl"));
  }
  doc.Add(BlockKind::kHeading, "How the desk checked it");
  doc.Add(BlockKind::kParagraph,
          "Each version: the device's signature outside and inside the sealed envelope; the envelope's content key "
          "against the commitment the device signed; the server's receipt, signed by a key the organisation's "
          "statement authorised at its time, for exactly these bytes; the receipt's place in the server's "
          "append-only log under a head that server signed; the version chain; the device's enrolment through an "
          "invite the organisation's root signed, in the same log; each attachment against the hash the device "
          "signed.");
  doc.Add(BlockKind::kHeading, "What this package does not prove");
  doc.Add(BlockKind::kParagraph,
          "When a report was made: phones' clocks are not trusted. The package shows when the server received each "
          "version (its signed receipt) and, with a time-stamp, a time no later than which it had it.");
  doc.Add(BlockKind::kParagraph,
          "That the content is true: the package proves who signed a report, that it was not changed, and that the "
          "organisation's server logged it when it says. It does not prove that what the report says happened.");
}

}  // namespace

Result<uint64_t> WriteEvidence(DeskStore& store, const std::vector<int64_t>& rids, const std::string& path) {
  if (rids.empty()) return Status(Code::kInvalidArgument, "an evidence package needs at least one report");
  if (fs::Exists(path)) return Status(Code::kExists, "'" + path + "' exists already");
  const Organisation& org = store.org();
  db::Db& db = store.db();
  db::Txn txn(db);
  DALA_RETURN_IF_ERROR(txn.Begin());
  const int64_t now = SystemNowMs();
  DALA_ASSIGN_OR_RETURN(auto zip, ZipWriter::Create(path));
  json files = json::array();
  auto add = [&](const std::string& name, std::string bytes, bool compress = true) -> Status {
    Hashes h;
    h.Update(crypto::Bytes(bytes));
    auto [sha, b2] = h.Final();
    files.push_back({{"path", name}, {"size", bytes.size()}, {"sha256", sha}, {"blake2b", b2}});
    return zip->Add(name, std::move(bytes), compress);
  };
  std::map<std::string, std::unique_ptr<KeptLog>> logs;
  auto log_of = [&](const std::string& server_hex) -> Result<KeptLog*> {
    auto it = logs.find(server_hex);
    if (it == logs.end()) {
      DALA_ASSIGN_OR_RETURN(auto l, LoadKeptLog(store, server_hex));
      it = logs.emplace(server_hex, std::move(l)).first;
    }
    return it->second.get();
  };
  // The verification report for people (verification.html and .pdf), built alongside the files it describes.
  const std::string identity = protocol::IdentityText(org.root.public_key);
  Doc doc;
  doc.title = "Evidence package: verification report";
  const std::string org_name = org.statement.name().empty() ? "(no name)" : Capped(org.statement.name(), 200, "statement.bin");
  doc.footer = "Evidence package of " + Iso(org_name) + ", made " + WhenText(now);
  doc.Field("Organisation", org_name);
  doc.Field("Its identity", identity, true);
  doc.Field("Package made", WhenText(now));
  doc.Field("Reports", std::to_string(rids.size()));
  doc.Add(BlockKind::kParagraph,
          "This is a summary for people to read. It is not the evidence: the evidence is the files of this package, "
          "each listed with its size, SHA-256 and BLAKE2b-256 in manifest.json, which the organisation's root key "
          "signed (manifest.sig). Anyone can check every file and every claim below without any secret key, with "
          "the organisation's identity alone:");
  doc.Add(BlockKind::kCode, "dala verify PACKAGE.zip --organisation " + identity);
  doc.Add(BlockKind::kParagraph,
          "or by hand, with any Ed25519, BLAKE2b and XChaCha20-Poly1305 library, as Dala's docs/evidence.md and "
          "docs/protocol.md describe.");
  std::set<std::string> names;  // the reports, as the custody log names them
  uint64_t reports = 0;
  for (int64_t rid : rids) {
    DALA_ASSIGN_OR_RETURN(ReportDetail d, LoadReport(db, rid));
    const std::string dir = "reports/" + d.row.device + "-" + d.row.report_id + "/";
    names.insert(ReportName(d.row));
    doc.Add(BlockKind::kHeading, "Report " + d.row.report_id);
    doc.Field("Form", Capped(d.row.form, 200, "content.json"));
    doc.Field("Device", d.row.device, true);
    doc.Field("Versions", std::to_string(d.versions.size()));
    doc.Field("Its files", dir, true);
    doc.Field("Case status at the desk",
              d.row.status + (d.row.tags.empty() ? "" : " (tags: " + Iso(Capped(d.row.tags, 500, "the desk")) + ")"));
    doc.Add(BlockKind::kSubheading, "What the desk checked");
    std::string enrolment_server;
    for (const auto& v : d.versions) {
      const std::string vdir = dir + "v" + std::to_string(v.version) + "/";
      if (!v.verified)
        return Status(Code::kState, "report " + d.row.report_id + " version " + std::to_string(v.version) +
                                        " did not verify at import: a package of it would not verify");
      if (v.server_key.empty() || v.leaf_index < 0)
        return Status(Code::kState, "report " + d.row.report_id + " version " + std::to_string(v.version) +
                                        " has no receipt in a server's log: it cannot be packaged as evidence");
      Result<SecretBuffer> key = Status(Code::kNotFound, "not sealed to this organisation's keys");
      for (const auto& r : org.recipients) {
        key = envelope::ContentKey(v.envelope, r);
        if (key.ok() || key.status().code() != Code::kNotFound) break;
      }
      if (!key.ok()) return key.status();
      DALA_ASSIGN_OR_RETURN(envelope::OpenedReport opened, envelope::OpenWithKey(v.envelope, key->span()));
      DALA_ASSIGN_OR_RETURN(KeptLog * log, log_of(v.server_key));
      const std::string head = log->ex.log_head;
      const uint64_t size = log->tree.size();
      DALA_ASSIGN_OR_RETURN(auto proof, merkle::InclusionProof(log->tree, static_cast<uint64_t>(v.leaf_index), size));
      DALA_RETURN_IF_ERROR(add(vdir + "envelope.bin", std::string(v.envelope.begin(), v.envelope.end()), false));
      DALA_RETURN_IF_ERROR(add(vdir + "content-key.bin", std::string(reinterpret_cast<const char*>(key->data()), key->size()), false));
      DALA_RETURN_IF_ERROR(add(vdir + "receipt.bin", std::string(v.receipt.begin(), v.receipt.end()), false));
      DALA_RETURN_IF_ERROR(add(vdir + "log.json", ProofJson(static_cast<uint64_t>(v.leaf_index), proof, head).dump(1) + "\n"));
      // Trusted time: the earliest head a time-stamping authority stamped that holds this version's leaf. The
      // version was in the server's log, so received, no later than the time the authority saw that head.
      const v1::LogTimestamp* stamp = nullptr;
      uint64_t stamped_size = 0;
      for (const auto& t : log->ex.timestamps) {
        // Only a stamp over a head this log's server signed, of this very log (the import checked the same).
        auto h = protocol::VerifyLogHead(crypto::Bytes(t.head()));
        if (!h.ok() || h->size <= static_cast<uint64_t>(v.leaf_index) || h->size > size ||
            std::string_view(reinterpret_cast<const char*>(h->server_key.data()), 32) != log->ex.server_key)
          continue;
        auto root = merkle::Root(log->tree, h->size);
        if (!root.ok() || *root != h->root || (stamp != nullptr && h->size >= stamped_size)) continue;
        stamp = &t;
        stamped_size = h->size;
      }
      if (stamp != nullptr) {
        DALA_ASSIGN_OR_RETURN(auto sproof,
                              merkle::InclusionProof(log->tree, static_cast<uint64_t>(v.leaf_index), stamped_size));
        json t = ProofJson(static_cast<uint64_t>(v.leaf_index), sproof, stamp->head());
        t["token"] = Hex(stamp->token());
        DALA_RETURN_IF_ERROR(add(vdir + "timestamp.json", t.dump(1) + "\n"));
      }
      Report r;
      r.content = opened.content;
      r.state = ReportState::kDelivered;
      r.content_hash = opened.content_hash;
      DALA_RETURN_IF_ERROR(add(vdir + "content.json", ReportToJson(r) + "\n"));
      VersionChecks(doc, v, "v" + std::to_string(v.version) + "/", stamp != nullptr);  // under "Its files"
      enrolment_server = v.server_key;
    }
    // The device's enrolment, and its place in the same log.
    DALA_ASSIGN_OR_RETURN(KeptLog * log, log_of(enrolment_server));
    std::string device_bytes(32, '\0');
    if (!encoding::FromHex(d.row.device, std::span<uint8_t>(reinterpret_cast<uint8_t*>(device_bytes.data()), 32)))
      return Status(Code::kCorrupt, "a device key is damaged");
    auto e = log->enrolments.find(device_bytes);
    if (e == log->enrolments.end())
      return Status(Code::kState, "the desk holds no enrolment of the device of report " + d.row.report_id);
    const std::string leaf = protocol::EnrolmentLeaf(e->second->device_key(), e->second->invite(), e->second->proof(),
                                                     e->second->enrolled_ms());
    auto at = log->leaf_index.find(leaf);
    if (at == log->leaf_index.end())
      return Status(Code::kState, "the enrolment of the device of report " + d.row.report_id + " is not in its server's log");
    DALA_ASSIGN_OR_RETURN(auto eproof, merkle::InclusionProof(log->tree, at->second, log->tree.size()));
    DALA_RETURN_IF_ERROR(add(dir + "enrolment.bin", e->second->SerializeAsString(), false));
    DALA_RETURN_IF_ERROR(add(dir + "enrolment-log.json", ProofJson(at->second, eproof, log->ex.log_head).dump(1) + "\n"));
    {
      DALA_ASSIGN_OR_RETURN(DeviceRow dev, LoadDevice(db, d.row.device));
      if (dev.enrolled_ms <= 0)
        return Status(Code::kState, "the desk holds no verified enrolment of the device of report " + d.row.report_id);
      doc.Check(true, "The device enrolled on " + WhenText(dev.enrolled_ms) +
                          " through an invite the organisation's root signed (issued " + WhenText(dev.invite_issued_ms) +
                          ", for " + std::to_string(dev.invite_uses) + " device(s), invite key " + dev.invite_key +
                          "); the enrolment is at position " + std::to_string(at->second) +
                          " of the same server's log (enrolment.bin, enrolment-log.json).");
    }
    if (d.versions.size() > 1)
      doc.Check(std::all_of(d.versions.begin(), d.versions.end(), [](const VersionRow& v) { return v.verified; }),
                "Versions 1 to " + std::to_string(d.versions.size()) +
                    " form one chain: each names the hash of the one before, from the same device, in the same form.");
    // The original media of the latest version, decrypted from the desk's encrypted copy.
    for (const auto& a : d.attachments) {
      if (!a.verified || a.file.empty())
        return Status(Code::kState, "attachment " + a.id + " of report " + d.row.report_id + " did not verify");
      DALA_ASSIGN_OR_RETURN(auto reader, MediaReader::Open(store.MediaPath(a.file), a.key, a.size));
      std::shared_ptr<MediaReader> shared = std::move(reader);
      Hashes h;
      std::vector<uint8_t> buf(1 << 18);
      for (uint64_t off = 0; off < a.size;) {
        DALA_ASSIGN_OR_RETURN(size_t n, shared->ReadAt(off, buf));
        if (n == 0) return Status(Code::kVerify, "attachment " + a.id + " ends early");
        h.Update(std::span<const uint8_t>(buf.data(), n));
        off += n;
      }
      auto [sha, b2] = h.Final();
      if (b2 != Hex(a.plaintext_hash)) return Status(Code::kVerify, "attachment " + a.id + " does not match its hash");
      const std::string name = dir + "attachments/" + a.id + MediaExtension(a.mime);
      files.push_back({{"path", name}, {"size", a.size}, {"sha256", sha}, {"blake2b", b2}});
      DALA_RETURN_IF_ERROR(zip->AddStream(name, a.size, [shared](uint64_t off, std::span<uint8_t> out) {
        return shared->ReadAt(off, out);
      }));
      doc.Check(true, "Attachment " + a.id + " (" + Iso(Capped(a.mime, 100, "content.json")) + ", " + std::to_string(a.size) +
                          " bytes) decrypted end to end and matched the hash the device signed.");
      doc.Field("File", name, true);
      doc.Field("SHA-256", sha, true);
      doc.Field("BLAKE2b-256", b2, true);
    }
    ContentBlocks(doc, d.versions.back(), dir + "v" + std::to_string(d.versions.back().version) + "/content.json");
    DALA_RETURN_IF_ERROR(AppendCustody(db, org, "export", ReportName(d.row),
                                       "put in an evidence package with " + std::to_string(d.versions.size()) +
                                           " version(s) and " + std::to_string(d.attachments.size()) + " attachment(s)",
                                       now));
    ++reports;
  }
  DALA_RETURN_IF_ERROR(AppendCustody(db, org, "export", "", "evidence package of " + std::to_string(reports) + " reports", now));
  DALA_ASSIGN_OR_RETURN(auto custody, ReadCustody(db));
  DALA_RETURN_IF_ERROR(add("custody.jsonl", CustodyJsonLines(custody)));
  DALA_RETURN_IF_ERROR(add("statement.bin", org.signed_statement, false));
  ClosingBlocks(doc, custody, names);
  DALA_RETURN_IF_ERROR(add("verification.html", DocHtml(doc)));
  DALA_ASSIGN_OR_RETURN(std::string pdf, DocPdf(doc, now));
  DALA_RETURN_IF_ERROR(add("verification.pdf", std::move(pdf), false));
  const json manifest = {{"format", std::string(kEvidenceFormat)},
                         {"organisation", protocol::IdentityText(org.root.public_key)},
                         {"created_ms", now},
                         {"files", files}};
  const std::string manifest_text = manifest.dump(1) + "\n";
  const crypto::Signature sig = crypto::Sign(org.root, kDomainEvidence, crypto::Bytes(manifest_text));
  DALA_RETURN_IF_ERROR(zip->Add("manifest.json", manifest_text));
  DALA_RETURN_IF_ERROR(zip->Add("manifest.sig", std::string(reinterpret_cast<const char*>(sig.data()), sig.size()), false));
  DALA_RETURN_IF_ERROR(zip->Close());
  if (Status st = txn.Commit(); !st.ok()) {
    (void)fs::RemoveFile(path);  // no package without its custody entries
    return st;
  }
  return reports;
}

namespace {

struct Proof {
  uint64_t index = 0;
  std::vector<merkle::Hash> hashes;
  std::string head;  // SignedLogHead bytes
};

Result<Proof> ParseProof(const std::string& text, std::string* token = nullptr) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("leaf_index") || !j["leaf_index"].is_number_unsigned() ||
      !j.contains("inclusion_proof") || !j["inclusion_proof"].is_array() || !j.contains("log_head") ||
      !j["log_head"].is_string() || j["inclusion_proof"].size() > 128)
    return Status(Code::kVerify, "malformed");
  Proof p;
  p.index = j["leaf_index"].get<uint64_t>();
  for (const auto& h : j["inclusion_proof"]) {
    merkle::Hash x{};
    if (!h.is_string() || !encoding::FromHex(h.get<std::string>(), x)) return Status(Code::kVerify, "malformed");
    p.hashes.push_back(x);
  }
  const std::string head_hex = j["log_head"].get<std::string>();
  p.head.resize(head_hex.size() / 2);
  if (head_hex.size() % 2 != 0 ||
      !encoding::FromHex(head_hex, std::span<uint8_t>(reinterpret_cast<uint8_t*>(p.head.data()), p.head.size())))
    return Status(Code::kVerify, "malformed");
  if (token != nullptr) {
    if (!j.contains("token") || !j["token"].is_string()) return Status(Code::kVerify, "malformed");
    const std::string t = j["token"].get<std::string>();
    token->resize(t.size() / 2);
    if (t.empty() || t.size() % 2 != 0 ||
        !encoding::FromHex(t, std::span<uint8_t>(reinterpret_cast<uint8_t*>(token->data()), token->size())))
      return Status(Code::kVerify, "malformed");
  }
  return p;
}

}  // namespace

Result<EvidenceVerdict> VerifyEvidence(const crypto::PublicKey& root, const std::string& path,
                                       const std::string& trusted_tsa_pem) {
  EvidenceVerdict v;
  DALA_ASSIGN_OR_RETURN(auto zip, ZipReader::Open(path));
  auto problem = [&](const std::string& p) { v.problems.push_back(p); };
  // 1. The manifest, signed by the organisation's root; every file listed, with its hashes, and no other.
  auto manifest_text = zip->Read("manifest.json", 64u << 20);
  auto sig = zip->Read("manifest.sig", 64);
  if (!manifest_text.ok() || !sig.ok() || sig->size() != 64) {
    problem("the package has no manifest signed by the organisation (manifest.json, manifest.sig)");
    return v;
  }
  if (!crypto::Verify(root, kDomainEvidence, crypto::Bytes(*manifest_text), crypto::Bytes(*sig))) {
    problem("the manifest is not signed by this organisation's root key (another organisation, or altered)");
    return v;
  }
  v.checked.push_back("the manifest is signed by the organisation's root key");
  json manifest = json::parse(*manifest_text, nullptr, false);
  if (!manifest.is_object() || manifest.value("format", "") != kEvidenceFormat || !manifest.contains("files") ||
      !manifest["files"].is_array()) {
    problem("the manifest is not a " + std::string(kEvidenceFormat) + " manifest");
    return v;
  }
  std::map<std::string, json> listed;
  for (const auto& f : manifest["files"]) {
    if (!f.is_object() || !f.contains("path") || !f["path"].is_string() || !listed.emplace(f["path"].get<std::string>(), f).second) {
      problem("the manifest lists a file twice or without a name");
      return v;
    }
  }
  std::set<std::string> present;
  for (const auto& e : zip->entries()) {
    present.insert(e.name);
    if (e.name == "manifest.json" || e.name == "manifest.sig") continue;
    auto it = listed.find(e.name);
    if (it == listed.end()) {
      problem(e.name + " is in the package but not in the signed manifest (added)");
      continue;
    }
    Hashes h;
    if (Status st = zip->Stream(e.name, [&](std::span<const uint8_t> p) { h.Update(p); }); !st.ok()) {
      problem(st.message());
      continue;
    }
    auto [sha, b2] = h.Final();
    if (sha != it->second.value("sha256", "") || b2 != it->second.value("blake2b", "") ||
        h.size != it->second.value("size", uint64_t{0}))
      problem(e.name + " does not match its hashes in the signed manifest (altered)");
  }
  for (const auto& [name, f] : listed)
    if (!present.count(name)) problem(name + " is listed in the manifest but missing from the package (removed)");
  v.checked.push_back("every file matches the SHA-256 and BLAKE2b hashes the manifest lists, and no file is added or missing");

  // 2. The organisation's statement: which server keys it authorised, when.
  v1::OrgStatement statement;
  {
    auto st_bytes = zip->Read("statement.bin", 1 << 20);
    auto st = st_bytes.ok() ? protocol::VerifyStatement(crypto::Bytes(*st_bytes), root) : Result<v1::OrgStatement>(st_bytes.status());
    if (!st.ok()) {
      problem("the organisation's statement is missing or not signed by its root");
      return v;
    }
    statement = *st;
    v.organisation = statement.name();
  }
  // 3. Each report.
  std::map<std::string, std::set<uint32_t>> versions;  // report dir -> versions
  for (const auto& name : present) {
    if (name.rfind("reports/", 0) != 0) continue;
    const size_t slash = name.find('/', 8);
    if (slash == std::string::npos) continue;
    const std::string dir = name.substr(0, slash + 1);
    versions[dir];
    const std::string rest = name.substr(slash + 1);
    if (rest.size() > 1 && rest[0] == 'v' && rest.find("/envelope.bin") != std::string::npos) {
      const std::string num = rest.substr(1, rest.find('/') - 1);
      if (!num.empty() && num.size() < 10 && num.find_first_not_of("0123456789") == std::string::npos)
        versions[dir].insert(static_cast<uint32_t>(std::stoul(num)));
    }
  }
  auto head_ok = [&](const std::string& head, const std::string& what, protocol::LogHead* out) {
    auto h = protocol::VerifyLogHead(crypto::Bytes(head));
    if (!h.ok() || !protocol::AuthorisedAt(statement, h->server_key, h->time_ms)) {
      problem(what + ": its log head is not signed by a server key the organisation authorised at its time");
      return false;
    }
    *out = *h;
    return true;
  };
  for (const auto& [dir, nums] : versions) {
    const std::string report = dir.substr(8, dir.size() - 9);
    ++v.reports;
    // The enrolment: an invite the root signed, the device's proof, in the server's log.
    std::string device;
    {
      v1::Enrolment e;
      auto bytes = zip->Read(dir + "enrolment.bin", 1 << 20);
      auto proof_text = zip->Read(dir + "enrolment-log.json", 1 << 20);
      auto proof = proof_text.ok() ? ParseProof(*proof_text) : Result<Proof>(proof_text.status());
      auto inv = bytes.ok() && e.ParseFromString(*bytes) ? protocol::CheckSignedInvite(e.invite(), &root)
                                                         : Result<protocol::CheckedInvite>(Status(Code::kVerify, ""));
      protocol::LogHead head;
      if (!inv.ok() || e.device_key().size() != 32 ||
          !protocol::VerifyEnrolProof(inv->invite, crypto::Bytes(e.device_key()), crypto::Bytes(inv->invite.server_key()),
                                      e.proof()) ||
          e.enrolled_ms() >= inv->invite.expires_ms()) {
        problem(report + ": the device's enrolment is missing, or not through an invite the organisation's root signed");
      } else if (!proof.ok() || !head_ok(proof->head, report + " (enrolment)", &head) ||
                 !merkle::VerifyInclusion(
                     merkle::LeafHash(crypto::Bytes(protocol::EnrolmentLeaf(e.device_key(), e.invite(), e.proof(), e.enrolled_ms()))),
                     proof->index, head.size, proof->hashes, head.root)) {
        problem(report + ": the device's enrolment is not proven to be in its server's log");
      } else {
        device = e.device_key();
      }
    }
    // Versions 1..N, each opened with its disclosed key, its receipt, its place in the log, the chain.
    if (nums.empty() || *nums.begin() != 1 || *nums.rbegin() != nums.size())
      problem(report + ": its versions are not 1 to " + std::to_string(nums.size()) + " without a gap");
    crypto::Hash previous{};
    v1::ReportContent first, latest;
    for (uint32_t n : nums) {
      const std::string vdir = dir + "v" + std::to_string(n) + "/";
      const std::string what = report + " version " + std::to_string(n);
      ++v.versions;
      auto env = zip->Read(vdir + "envelope.bin", 16u << 20);
      auto key = zip->Read(vdir + "content-key.bin", 64);
      auto receipt = zip->Read(vdir + "receipt.bin", 1 << 16);
      auto proof_text = zip->Read(vdir + "log.json", 1 << 20);
      if (!env.ok() || !key.ok() || !receipt.ok() || !proof_text.ok()) {
        problem(what + ": a file is missing (envelope.bin, content-key.bin, receipt.bin, log.json)");
        continue;
      }
      auto opened = envelope::OpenWithKey(crypto::Bytes(*env), crypto::Bytes(*key));
      if (!opened.ok()) {
        problem(what + ": " + opened.status().message());
        continue;
      }
      if (!device.empty() && opened->content.device_key() != device)
        problem(what + ": signed by another device than the one enrolled");
      if (opened->content.version() != n) problem(what + ": the envelope holds another version");
      // The receipt: an authorised server key, at its time, for exactly these bytes.
      v1::SignedReceipt sr;
      v1::Receipt claimed;
      if (!sr.ParseFromString(*receipt) || !claimed.ParseFromString(sr.receipt()) || claimed.server_key().size() != 32) {
        problem(what + ": its receipt is malformed");
        continue;
      }
      auto r = protocol::VerifyReceipt(crypto::Bytes(*receipt), crypto::Bytes(claimed.server_key()));
      const crypto::Hash env_hash = crypto::Blake2b256(crypto::Bytes(*env));
      if (!r.ok() || !protocol::AuthorisedAt(statement, crypto::Bytes(r->server_key()), r->server_time_ms())) {
        problem(what + ": its receipt is not signed by a server key the organisation authorised at its time");
        continue;
      }
      if (r->content_hash() != std::string_view(reinterpret_cast<const char*>(env_hash.data()), 32) ||
          r->device_key() != opened->content.device_key() || r->report_id() != opened->content.report_id() ||
          r->version() != n) {
        problem(what + ": its receipt is for other bytes, another report, version or device");
        continue;
      }
      auto proof = ParseProof(*proof_text);
      protocol::LogHead head;
      if (!proof.ok() || !head_ok(proof->head, what, &head)) {
        if (!proof.ok()) problem(what + ": its log proof is malformed");
        continue;
      }
      v1::SignedReceipt placed;
      for (const auto& h : proof->hashes) placed.add_inclusion_proof(reinterpret_cast<const char*>(h.data()), h.size());
      if (std::string_view(reinterpret_cast<const char*>(head.server_key.data()), 32) != r->server_key() ||
          !protocol::ReceiptInLog(*r, proof->index, placed.inclusion_proof(), head))
        problem(what + ": its receipt is not proven to be in the log its server signed");
      // Trusted time, if the package carries it: the receipt's leaf in a head of the same server that a
      // time-stamping authority stamped. Checked against the authorities the verifier trusts, if given.
      if (auto ts_text = zip->Read(vdir + "timestamp.json", 1 << 20); ts_text.ok()) {
        std::string token;
        auto ts = ParseProof(*ts_text, &token);
        protocol::LogHead stamped;
        v1::SignedReceipt in_stamped;
        if (ts.ok())
          for (const auto& h : ts->hashes) in_stamped.add_inclusion_proof(reinterpret_cast<const char*>(h.data()), h.size());
        if (!ts.ok()) {
          problem(what + ": its time-stamp is malformed");
        } else if (!head_ok(ts->head, what + " (time-stamp)", &stamped)) {
        } else if (std::string_view(reinterpret_cast<const char*>(stamped.server_key.data()), 32) != r->server_key() ||
                   !protocol::ReceiptInLog(*r, ts->index, in_stamped.inclusion_proof(), stamped)) {
          problem(what + ": its time-stamp is over a head that is not proven to hold it");
        } else if (trusted_tsa_pem.empty()) {
          ++v.timestamps_unchecked;
        } else if (auto when = rfc3161::Verify(crypto::Bytes(token), crypto::Bytes(ts->head), trusted_tsa_pem);
                   !when.ok()) {
          problem(what + ": its time-stamp " + when.status().message());
        } else {
          ++v.timestamps;
          v.checked.push_back(what + " was received no later than " + IsoTime(when->time_ms) + " (time-stamp by " +
                              when->tsa + ")");
        }
      }
      // The chain.
      if (n == 1) {
        first = opened->content;
        if (!opened->content.previous_hash().empty()) problem(what + ": version 1 names a previous version");
      } else if (opened->content.previous_hash() != std::string_view(reinterpret_cast<const char*>(previous.data()), 32) ||
                 opened->content.form() != first.form() || opened->content.created_ms() != first.created_ms()) {
        problem(what + ": it does not follow the version before it (hash, form or creation time)");
      }
      previous = opened->content_hash;
      latest = opened->content;
    }
    // The media the latest version lists, against the hashes the device signed.
    for (const auto& a : latest.attachments()) {
      const std::string id = Hex(a.attachment_id());
      std::string found;
      for (const auto& name : present)
        if (name.rfind(dir + "attachments/" + id, 0) == 0) found = name;
      if (found.empty()) {
        problem(report + ": attachment " + id + " is missing");
        continue;
      }
      Hashes h;
      if (!zip->Stream(found, [&](std::span<const uint8_t> p) { h.Update(p); }).ok()) continue;
      auto [sha, b2] = h.Final();
      if (b2 != Hex(a.plaintext_hash()) || h.size != a.size())
        problem(report + ": attachment " + id + " is not the file the device signed (its BLAKE2b hash or size differs)");
      else
        ++v.attachments;
    }
  }
  if (v.reports == 0) problem("the package holds no report");
  v.checked.push_back("each version opens with its disclosed content key (which the device's signed commitment names), "
                      "and the device's signatures outside and inside hold");
  v.checked.push_back("each receipt is signed by a server key the organisation's statement authorised at its time, for "
                      "exactly the envelope's bytes, and is proven to be in that server's signed log");
  v.checked.push_back("each device enrolled through an invite the organisation's root signed, proven in the log");
  v.checked.push_back("versions form an unbroken chain; each attachment is the file the device signed");
  if (v.timestamps_unchecked > 0)
    v.checked.push_back(std::to_string(v.timestamps_unchecked) + " time-stamp(s) hold the versions they date, but were "
                        "not checked against a time-stamping authority: give its certificate (--tsa-cert) to rely on "
                        "their times");
  // 4. The custody log.
  auto custody_text = zip->Read("custody.jsonl", 256u << 20);
  if (!custody_text.ok()) {
    problem("the custody log is missing");
  } else {
    std::vector<CustodyEntry> entries;
    size_t at = 0;
    bool malformed = false;
    while (at < custody_text->size()) {
      size_t end = custody_text->find('\n', at);
      if (end == std::string::npos) end = custody_text->size();
      json j = json::parse(custody_text->substr(at, end - at), nullptr, false);
      at = end + 1;
      CustodyEntry e;
      if (!j.is_object() || !j["seq"].is_number_unsigned() || !j["time_ms"].is_number_integer() ||
          !j["action"].is_string() || !j["report"].is_string() || !j["detail"].is_string() || !j["prev"].is_string() ||
          !j["hash"].is_string() || !j["signature"].is_string() || !encoding::FromHex(j["prev"].get<std::string>(), e.prev) ||
          !encoding::FromHex(j["hash"].get<std::string>(), e.hash) ||
          !encoding::FromHex(j["signature"].get<std::string>(), e.signature)) {
        malformed = true;
        break;
      }
      e.seq = j["seq"].get<uint64_t>();
      e.time_ms = j["time_ms"].get<int64_t>();
      e.action = j["action"].get<std::string>();
      e.report = j["report"].get<std::string>();
      e.detail = j["detail"].get<std::string>();
      entries.push_back(std::move(e));
    }
    if (malformed) {
      problem("the custody log is malformed");
    } else if (std::string p = VerifyCustody(entries, root); !p.empty()) {
      problem("the custody log: " + p);
    } else {
      v.custody_entries = entries.size();
      v.checked.push_back("the custody log's " + std::to_string(entries.size()) +
                          " entries link by hash and are signed by the organisation's root");
    }
  }
  return v;
}

}  // namespace dala::desk
