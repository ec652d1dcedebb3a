#include "desk/export_opener.h"
#include "desk/desk_media.h"
#include "desk/export_file.h"
#include "desk/log_verifier.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <algorithm>
#include <atomic>
#include <exception>
#include <functional>
#include <mutex>
#include <system_error>
#include <map>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/encoding.h"
#include "crypto/attachment_file.h"
#include "format/envelope.h"
#include "format/log.h"
#include "format/merkle.h"
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

// One entry after its own checks: what the checks across entries need, a few hundred bytes. The report itself
// is not held: it is read again (envelope::OpenAgain, with the content key kept aside) when it is written.
struct Opened {
  std::string device;  // the 32-byte device key, as bytes
  std::string id_hex;
  uint32_t version = 0;
  bool opened = false;
  std::vector<std::string> problems;
  std::string receipt_problem;  // why the receipt did not verify
  bool receipt_ok = false;
  uint64_t sequence = 0;
  envelope::Header header;      // without its attachments (read again with the report)
  crypto::Hash envelope_hash{};
  // Of the opened report, for the version chains:
  crypto::Hash content_hash{};
  std::string previous_hash;
  std::string form;
  uint32_t form_version = 0;
  int64_t created_ms = 0;
  std::string base;  // the output name, without .json
  std::string receipt_server;  // the server key of a receipt that verified
  std::string leaf;            // its leaf in the server's log (protocol::ReportLeaf), once the receipt verified
  size_t entry = 0;            // its index in the export's reports
  int64_t received_ms = 0;     // the receipt's server time, once it verified
};

// The entries' content keys, in locked memory, zeroed when done: what reading a report again takes.
class ContentKeys {
 public:
  explicit ContentKeys(size_t n) {
    for (size_t i = 0; i < n; i += kPerChunk) chunks_.emplace_back(std::min(kPerChunk, n - i) * 32);
  }
  std::span<uint8_t> At(size_t i) { return {chunks_[i / kPerChunk].data() + (i % kPerChunk) * 32, 32}; }

 private:
  static constexpr size_t kPerChunk = 4096;
  std::vector<SecretBuffer> chunks_;
};

// Runs fn(0..n-1) on every core (at most 8); the first exception (e.g. out of memory) ends every worker and
// is thrown here.
void ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  std::atomic<size_t> next{0};
  std::mutex failed_mu;
  std::exception_ptr failed;
  auto work = [&] {
    try {
      for (size_t i; (i = next.fetch_add(1)) < n;) fn(i);
    } catch (...) {
      next = n;
      std::lock_guard lock(failed_mu);
      if (!failed) failed = std::current_exception();
    }
  };
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads && t < n; ++t) {
    try {
      pool.emplace_back(work);
    } catch (const std::system_error&) {
      break;  // fewer threads, the same work
    }
  }
  work();
  for (auto& t : pool) t.join();
  if (failed) std::rethrow_exception(failed);
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
  if (to.empty()) {  // checked end to end, nothing written
    std::vector<uint8_t> buf(attachment::kPiece);
    for (;;) {
      DALA_ASSIGN_OR_RETURN(size_t n, reader->Read(buf));
      if (n == 0) return Status::Ok();
    }
  }
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
struct EnrolledDevice {
  const v1::Enrolment* enrolment;
  v1::Invite invite;  // checked: signed by the root
};
std::map<std::string, EnrolledDevice> Enrolled(const ExportFile& ex, const Organisation& org) {
  // As the server counts: each invite (by its enrolment key) enrols at most `uses` devices, before it
  // expires; earliest first.
  std::vector<const v1::Enrolment*> order;
  for (const auto& e : ex.enrolments) order.push_back(&e);
  std::stable_sort(order.begin(), order.end(),
                   [](const v1::Enrolment* a, const v1::Enrolment* b) { return a->enrolled_ms() < b->enrolled_ms(); });
  std::map<std::string, EnrolledDevice> out;
  std::map<std::string, uint32_t> used;
  for (const v1::Enrolment* e : order) {
    auto inv = protocol::CheckSignedInvite(e->invite(), &org.root.public_key);
    if (!inv.ok() || e->device_key().size() != 32 || out.count(e->device_key())) continue;
    if (!protocol::VerifyEnrolProof(inv->invite, crypto::Bytes(e->device_key()), crypto::Bytes(inv->invite.server_key()),
                                    e->proof()))
      continue;
    if (e->enrolled_ms() >= inv->invite.expires_ms() || used[inv->invite.enrol_key()] >= inv->invite.uses()) continue;
    ++used[inv->invite.enrol_key()];
    out.emplace(e->device_key(), EnrolledDevice{e, inv->invite});
  }
  return out;
}

// The receipt, if a server key the organisation authorised (in the desk's own statement, not the export's)
// signed it at the time it bears, for exactly these envelope bytes and this device.
Result<v1::Receipt> CheckReceipt(std::string_view signed_receipt, std::string_view envelope_bytes,
                                 const envelope::Header& h, const Organisation& org) {
  v1::SignedReceipt sr;
  v1::Receipt claimed;
  if (!sr.ParseFromArray(signed_receipt.data(), static_cast<int>(signed_receipt.size())) ||
      !claimed.ParseFromString(sr.receipt()) ||
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

// The server's log (docs/protocol.md, "The log"): the export's leaves must make the signed head, which a
// key the organisation authorised signed for this export's server; every entry whose receipt verified must
// be a leaf, and every report leaf an entry (else that version was withheld); enrolments likewise.
// Whether the log verified (its head, and the leaves making it): only then are phones' heads held against it.
bool AuditLog(const ExportFile& ex, const Organisation& org, const std::vector<Opened>& all,
              const merkle::MemoryTree& tree, const std::unordered_map<std::string_view, uint64_t>& leaves,
              Summary* sum, std::set<uint64_t>* withheld, std::vector<std::string>* problems) {
  if (ex.log_head.empty()) {
    ++sum->log_problems;
    problems->push_back("the export carries no signed log head: nothing shows that it holds all the server received");
    return false;
  }
  auto head = protocol::VerifyLogHead(crypto::Bytes(ex.log_head));
  if (!head.ok() || std::string_view(reinterpret_cast<const char*>(head->server_key.data()), 32) != ex.server_key ||
      !protocol::AuthorisedAt(org.statement, head->server_key, head->time_ms)) {
    ++sum->log_problems;
    problems->push_back("the log head is not signed by this export's server under a key the organisation "
                        "authorised at its time");
    return false;
  }
  auto root = merkle::Root(tree, tree.size());
  if (head->size != tree.size() || !root.ok() || *root != head->root) {
    ++sum->log_problems;
    problems->push_back("the log's " + std::to_string(tree.size()) + " leaves do not make the signed head of " +
                        std::to_string(head->size) + " (a leaf changed, added, dropped or reordered)");
    return false;
  }
  std::unordered_set<std::string_view> entries;
  for (const auto& o : all) {
    if (!o.receipt_ok) continue;
    entries.insert(o.leaf);
    if (!leaves.count(o.leaf)) {
      ++sum->log_problems;
      problems->push_back("report " + o.id_hex + " version " + std::to_string(o.version) +
                          " has a receipt but is not in the server's log");
    }
  }
  for (uint64_t index = 0; index < ex.log.size(); ++index) {  // in the log's order, each leaf once
    const std::string& leaf = ex.log[index];
    if (leaves.at(leaf) != index) continue;
    if (leaf.size() == 1 + 132 && static_cast<uint8_t>(leaf[0]) == static_cast<uint8_t>(protocol::LeafType::kReport) &&
        !entries.count(leaf)) {
      uint64_t sequence = 0;
      for (int i = 0; i < 8; ++i) sequence = (sequence << 8) | static_cast<uint8_t>(leaf[1 + 16 + 4 + 32 + 8 + i]);
      withheld->insert(sequence);
      problems->push_back("the server's log holds report " + encoding::ToHex(crypto::Bytes(std::string_view(leaf).substr(1, 16))) +
                          " version " + std::to_string((static_cast<uint8_t>(leaf[17]) << 24) | (static_cast<uint8_t>(leaf[18]) << 16) |
                                                       (static_cast<uint8_t>(leaf[19]) << 8) | static_cast<uint8_t>(leaf[20])) +
                          " (leaf " + std::to_string(index) + "), which the export lacks");
    }
  }
  for (const auto& e : ex.enrolments) {
    if (!leaves.count(protocol::EnrolmentLeaf(e.device_key(), e.invite(), e.proof(), e.enrolled_ms()))) {
      ++sum->log_problems;
      problems->push_back("the enrolment of device " + encoding::ToHex(crypto::Bytes(e.device_key())) +
                          " is not in the server's log");
    }
  }
  return true;
}

// A phone keeps, with each receipt, the report's place in a head of the server's log (docs/protocol.md,
// "What the desk checks"). That head must be a prefix of the export's log, holding the report's leaf there:
// else the server showed the phone another log than the desk (a fork), or the export stops short of what
// the server had logged. Empty when it holds (or the receipt carries no log).
std::string PhoneReceiptInLog(const v1::SignedReceipt& sr, const v1::Receipt& r, const ExportFile& ex,
                              const merkle::MemoryTree& tree, const Organisation& org) {
  if (sr.log_head().empty()) return "";
  auto head = protocol::VerifyLogHead(crypto::Bytes(sr.log_head()));
  if (!head.ok() || std::string_view(reinterpret_cast<const char*>(head->server_key.data()), 32) != r.server_key() ||
      !protocol::AuthorisedAt(org.statement, head->server_key, head->time_ms))
    return "its log head is not signed by its server under a key the organisation authorised at its time";
  if (!sr.has_leaf_index() || !protocol::ReceiptInLog(r, sr.leaf_index(), sr.inclusion_proof(), *head))
    return "its log head does not hold its report where the phone was told";
  if (head->size > tree.size())
    return "the phone holds a head of " + std::to_string(head->size) + " log leaves, the export's log only " +
           std::to_string(tree.size()) + ": the server logged more than the export shows, or forked its log";
  auto root = merkle::Root(tree, head->size);
  if (!root.ok() || *root != head->root)
    return "the phone was shown a log of " + std::to_string(head->size) + " leaves that is not the first " +
           std::to_string(head->size) + " leaves of the export's: the server forked its log";
  if (ex.log[sr.leaf_index()] != protocol::ReportLeaf(r))
    return "the export's log holds another leaf where the phone's receipt is";
  return "";
}

// An earlier export of the same server (the desk's own earlier import): its signed head must be a prefix of
// this export's log, so that nothing it held was removed or changed since. "" when it is; else the problem.
std::string HeldAgainstEarlier(const std::string& path, const ExportFile& ex, const merkle::MemoryTree& tree,
                               const Organisation& org, bool* other_server) {
  *other_server = false;
  // Its server key and head only: the rest of it is skipped over.
  auto earlier = ReadExport(path, ExportParts{false, false, false, false});
  const std::string_view server_key = earlier.ok() ? std::string_view(earlier->server_key) : std::string_view();
  const std::string_view log_head = earlier.ok() ? std::string_view(earlier->log_head) : std::string_view();
  if (server_key.size() != 32 || log_head.empty())
    return "the earlier export " + path + " cannot be read as an export with a log head";
  if (server_key != ex.server_key) {  // another server's log: nothing to compare
    *other_server = true;
    return "";
  }
  auto head = protocol::VerifyLogHead(crypto::Bytes(log_head));
  if (!head.ok() || std::string_view(reinterpret_cast<const char*>(head->server_key.data()), 32) != ex.server_key ||
      !protocol::AuthorisedAt(org.statement, head->server_key, head->time_ms))
    return "the earlier export " + path + " carries no log head its server signed under an authorised key";
  if (head->size > tree.size())
    return "the earlier export " + path + " showed a log of " + std::to_string(head->size) + " leaves, this one only " +
           std::to_string(tree.size()) + ": leaves were removed since (a server restored from a backup, or a fork)";
  auto root = merkle::Root(tree, head->size);
  if (!root.ok() || *root != head->root)
    return "the first " + std::to_string(head->size) + " leaves of this export's log are not the log of the earlier "
           "export " + path + ": leaves were removed or changed since (a server restored from a backup, or a fork)";
  return "";
}

using Stamped = StampedHead;  // every leaf below `size` was logged no later than `time_ms`

// Trusted time (docs/protocol.md, "Trusted time"): each token over a head this export's server signed, of
// this export's log (one that verified), by a TSA whose certificate the organisation gave. Returns the
// stamps that verified, by size.
std::vector<Stamped> CheckTimestamps(const ExportFile& ex, const Organisation& org, const merkle::MemoryTree& tree,
                                     bool log_verified, const std::string& trusted_pem, Summary* sum,
                                     std::vector<std::string>* problems) {
  std::vector<Stamped> out;
  if (trusted_pem.empty()) {
    // No authority to trust, so no time is claimed; but each stamp must still be over a head this server
    // signed, of this log: a stamp put in on the way (an export carries them unsigned) is refused here, not
    // kept to spoil evidence packages later.
    for (size_t i = 0; i < ex.timestamps.size(); ++i) {
      auto head = CheckLogTimestamp(ex.timestamps[i], ex.server_key, org.statement, log_verified ? &tree : nullptr, "");
      if (!head.ok()) {
        ++sum->timestamp_problems;
        problems->push_back("time-stamp " + std::to_string(i + 1) + " " + head.status().message());
      }
    }
    if (ex.timestamps.size() > 0)
      problems->push_back(std::to_string(ex.timestamps.size()) + " time-stamps of the log were not checked (no "
                          "trusted TSA certificate given: --tsa-cert)");
    return out;
  }
  if (ex.timestamps.size() == 0) {
    ++sum->timestamp_problems;
    problems->push_back("the export holds no time-stamp of its log, and the organisation trusts a TSA for them");
  }
  for (size_t i = 0; i < ex.timestamps.size(); ++i) {
    auto stamp = CheckLogTimestamp(ex.timestamps[i], ex.server_key, org.statement, log_verified ? &tree : nullptr,
                                   trusted_pem);
    if (!stamp.ok()) {
      ++sum->timestamp_problems;
      problems->push_back("time-stamp " + std::to_string(i + 1) + " " + stamp.status().message());
      continue;
    }
    ++sum->timestamps;
    out.push_back(*stamp);
  }
  std::sort(out.begin(), out.end(), [](const Stamped& a, const Stamped& b) { return a.size < b.size; });
  return out;
}

// Opens one entry's envelope with the organisation's recipient keys (each checks the device's signatures);
// one that does not open still gets its header when its outer signature holds, so that it can be named.
// The content key it opened with goes to `content_key`, to read the report again later.
void OpenEntry(std::string_view envelope_bytes, const Organisation& org, Opened* o, std::span<uint8_t> content_key) {
  o->envelope_hash = crypto::Blake2b256(crypto::Bytes(envelope_bytes));
  Result<envelope::OpenedReport> opened = Status(Code::kNotFound, "not sealed to this organisation's keys");
  for (const auto& k : org.recipients) {
    opened = envelope::OpenReport(crypto::Bytes(envelope_bytes), k, content_key);
    if (opened.ok() || opened.status().code() != Code::kNotFound) break;
  }
  if (!opened.ok()) {
    o->problems.push_back(opened.status().message());
    if (envelope::Verify(crypto::Bytes(envelope_bytes), &o->header).ok()) {
      o->id_hex = encoding::ToHex(o->header.report_id);
      o->version = o->header.version;
    }
    return;
  }
  o->header = std::move(opened->header);
  o->header.attachments.clear();  // read again with the report
  o->id_hex = encoding::ToHex(o->header.report_id);
  o->version = o->header.version;
  const v1::ReportContent& c = opened->content;
  o->content_hash = opened->content_hash;
  o->previous_hash = c.previous_hash();
  o->form = c.form();
  o->form_version = c.form_version();
  o->created_ms = c.created_ms();
  o->opened = true;
}

// A report's file, written without a sync of its own (SyncFileSystem covers all of them at the end).
Status WriteUnsynced(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fs::FromErrno(errno, "could not write", path);
  Status st = fs::WriteAll(fd, reinterpret_cast<const uint8_t*>(text.data()), text.size(), path);
  if (::close(fd) != 0 && st.ok()) st = fs::FromErrno(errno, "could not write", path);
  return st;
}

Status SyncFileSystem(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fs::FromErrno(errno, "could not open", dir);
  const int rc = ::syncfs(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : fs::FromErrno(err, "could not sync the files in", dir);
}

// An attachment's encrypted file: in the first of `dirs` that has it (else where the first would have it).
std::string MediaSource(const std::vector<std::string>& dirs, const std::string& name) {
  for (const auto& d : dirs)
    if (std::string p = fs::Join(d, name); fs::Exists(p)) return p;
  return fs::Join(dirs.front(), name);
}

// One entry read again to be written: its bytes (checked to be those the first pass checked) and report.
struct Reread {
  std::string bytes;
  std::string_view envelope, receipt;
  Report report;
  envelope::Header header;  // with its attachments
  std::vector<bool> attachment_ok;  // per attachment of the sealed report
  std::string attachments_json = "[]";
  bool verified = false;
  std::string json;
};

// What a sink is handed for one report version.
OpenedEntry Entry(const Opened& o, const Reread& r, const std::unordered_map<std::string_view, uint64_t>& leaf_index,
                  const std::map<std::string, EnrolledDevice>& enrolled, const std::vector<std::string>& media_dirs,
                  std::string json) {
  OpenedEntry e;
  if (auto it = enrolled.find(o.device); it != enrolled.end()) {
    e.enrolment = it->second.enrolment;
    e.invite = &it->second.invite;
  }
  if (!o.id_hex.empty()) {
    e.device = o.device;
    e.report_id = std::string_view(reinterpret_cast<const char*>(o.header.report_id.data()), o.header.report_id.size());
  }
  e.version = o.version;
  e.verified = r.verified;
  e.problems = &o.problems;
  e.report = o.opened ? &r.report : nullptr;
  e.envelope = r.envelope;
  e.receipt = r.receipt;
  e.receipt_ok = o.receipt_ok;
  if (o.receipt_ok) {
    e.sequence = o.sequence;
    e.received_ms = o.received_ms;
    e.server_key = o.receipt_server;
    if (auto it = leaf_index.find(o.leaf); it != leaf_index.end()) e.leaf_index = static_cast<int64_t>(it->second);
  }
  e.json = std::move(json);
  if (o.opened)
    for (int i = 0; i < r.report.content.attachments_size(); ++i) {
      const auto& ref = r.report.content.attachments(i);
      OpenedEntry::Attachment a;
      a.id = ref.attachment_id();
      a.mime = ref.mime_type();
      a.size = ref.size();
      a.verified = static_cast<size_t>(i) < r.attachment_ok.size() && r.attachment_ok[static_cast<size_t>(i)];
      a.source = MediaSource(media_dirs, attachment::FileName(o.header.device_key, crypto::Bytes(ref.attachment_id())));
      a.key = ref.key();
      a.plaintext_hash = ref.plaintext_hash();
      for (const auto& m : r.header.attachments)
        if (m.attachment_id() == ref.attachment_id()) {
          a.ciphertext_root = m.root();
          a.chunk_size = m.chunk_size();
        }
      e.attachments.push_back(std::move(a));
    }
  return e;
}

// Entry `i`'s envelope and receipt, read back from the export: the very bytes the first reading saw (else
// kCorrupt, the file changed), so that every pass checks and uses the same bytes.
Status ReadEntry(const EntryReader& reader, const ExportFile& ex, size_t i, std::string* bytes,
                 std::string_view* envelope, std::string_view* receipt) {
  DALA_RETURN_IF_ERROR(reader.ReadEntry(ex, i, bytes));
  if (!SplitEntry(*bytes, envelope, receipt)) return Status(Code::kInternal, "an entry read is not one");
  return Status::Ok();
}

}  // namespace

Result<Summary> OpenExport(const Organisation& org, const std::string& file, const std::string& out_dir,
                           const OpenOptions& options) {
  const std::string& export_path = options.source_path.empty() ? file : options.source_path;
  const std::vector<std::string>& phone_receipts = options.phone_receipts;
  const bool write = !out_dir.empty();  // else: every check, nothing decrypted written
  // Read once, front to back: the entries stay in the file, read back (each checked to be the same bytes)
  // when they are opened, and again when they are written. What an import holds grows with the number of
  // reports, a few hundred bytes each, not with their size. One export is one protobuf message, which
  // protobuf parses up to 2 GiB: a larger one is refused as such, not misread. (The server's export holds
  // envelopes only, about 1.5 KB a report; attachments are files beside it.)
  auto indexed = ReadExport(file);
  if (!indexed.ok()) {
    if (indexed.status().code() == Code::kCorrupt)
      return Status(Code::kCorrupt, "'" + export_path + "' is not a dala-server export");
    if (indexed.status().code() == Code::kInvalidArgument)
      return Status(Code::kInvalidArgument, "'" + export_path + "' is larger than 2 GiB, more than one export may "
                                            "hold; export the server's reports in parts");
    return indexed.status();
  }
  const ExportFile& ex = *indexed;
  if (ex.server_key.size() != 32) return Status(Code::kCorrupt, "'" + export_path + "' is not a dala-server export");
  if (ex.log_from != 0)
    return Status(Code::kInvalidArgument,
                  "'" + export_path + "' is an incremental export (the server's log from position " +
                      std::to_string(ex.log_from) + " on): import it into the desk store that holds this server's "
                      "earlier export (dala desk import), or open a full export (dala-server export without --since)");
  DALA_ASSIGN_OR_RETURN(EntryReader reader, EntryReader::Open(file));
  if (write) DALA_RETURN_IF_ERROR(fs::EnsureDirectory(out_dir));
  const auto enrolled = Enrolled(ex, org);
  Summary sum;
  sum.server_key = ex.server_key;
  sum.log_size = ex.log_size;
  std::vector<std::string> export_problems;
  // Strict parsing: a field this desk does not know may be an entry hidden behind a changed tag.
  if (ex.unknown_fields > 0) {
    sum.unknown_fields = ex.unknown_fields;
    export_problems.push_back("the export holds fields this desk does not know, in " +
                              std::to_string(ex.unknown_fields) + " places: an entry may be hidden there");
  }

  // The checks of each entry on its own (signatures, decryption, receipt: nearly all the work) run on
  // every core; what depends on the order and on the other entries follows, one entry at a time.
  std::vector<Opened> each(ex.entries.size());
  ContentKeys keys(each.size());
  {
    std::mutex error_mu;
    Status read_error = Status::Ok();
    ParallelFor(each.size(), [&](size_t i) {
      std::string bytes;
      std::string_view envelope_bytes, receipt_bytes;
      if (Status st = ReadEntry(reader, ex, i, &bytes, &envelope_bytes, &receipt_bytes); !st.ok()) {
        std::lock_guard lock(error_mu);
        if (read_error.ok()) read_error = st;
        return;
      }
      Opened& o = each[i];
      OpenEntry(envelope_bytes, org, &o, keys.At(i));
      auto receipt = CheckReceipt(receipt_bytes, envelope_bytes, o.header, org);
      if (!receipt.ok()) {
        o.receipt_problem = "receipt: " + receipt.status().message();
        return;
      }
      o.receipt_ok = true;
      o.sequence = receipt->sequence();
      o.received_ms = receipt->server_time_ms();
      o.leaf = protocol::ReportLeaf(*receipt);
      o.receipt_server = receipt->server_key();
    });
    DALA_RETURN_IF_ERROR(read_error);
  }

  std::vector<Opened> all;
  std::map<std::string, size_t> seen;  // device || id || version -> index in `all`
  uint64_t last_sequence = 0;
  for (size_t index = 0; index < each.size(); ++index) {
    Opened o = std::move(each[index]);
    if (!o.id_hex.empty()) {  // the same report version twice (by its verified header): written and counted once
      std::string key(reinterpret_cast<const char*>(o.header.device_key.data()), 32);
      key.append(reinterpret_cast<const char*>(o.header.report_id.data()), o.header.report_id.size());
      key += std::to_string(o.header.version);
      auto [it, fresh] = seen.emplace(key, all.size());
      if (!fresh) {
        ++sum.duplicates;
        export_problems.push_back("entry " + std::to_string(index + 1) + " repeats report " + o.id_hex + " version " +
                                  std::to_string(o.version) + ": counted once");
        if (all[it->second].envelope_hash != o.envelope_hash)
          all[it->second].problems.push_back("the export holds another envelope for the same version");
        continue;
      }
    }
    if (o.id_hex.empty()) {
      // Not even the outer signature holds: nothing in it can be attributed.
    } else if (!enrolled.count(std::string(reinterpret_cast<const char*>(o.header.device_key.data()), 32))) {
      o.problems.push_back("the device that signed it was not enrolled through an invite of this organisation");
    }
    o.device.assign(reinterpret_cast<const char*>(o.header.device_key.data()), 32);
    o.entry = index;
    if (!o.receipt_ok) {
      o.problems.push_back(std::move(o.receipt_problem));
    } else {
      // One export, one server: an entry another server signed for cannot fill this server's gaps.
      if (o.receipt_server != ex.server_key) {
        o.receipt_ok = false;
        o.problems.push_back("receipt: signed by another server than the one whose export this is");
      }
      if (o.sequence <= last_sequence) {
        ++sum.reordered;
        export_problems.push_back("entry " + std::to_string(index + 1) + " (sequence " + std::to_string(o.sequence) +
                                  ") is listed after sequence " + std::to_string(last_sequence));
      }
      last_sequence = std::max(last_sequence, o.sequence);
    }
    o.receipt_problem.clear();
    o.receipt_problem.shrink_to_fit();
    all.push_back(std::move(o));
  }
  std::vector<Opened>().swap(each);
  // Each server numbers what it stores 1, 2, 3...: a number no entry carries is a report version withheld.
  // Counted per server key, so that one server's entry cannot fill another's gap. Withheld versions of
  // this export's server are counted once, by sequence number, however they show (a gap, the log, a
  // phone's receipt).
  std::set<uint64_t> withheld;
  std::map<std::string, std::set<uint64_t>> sequences;  // server key -> numbers
  for (const auto& o : all)
    if (o.receipt_ok) sequences[o.receipt_server].insert(o.sequence);
  for (const auto& [key, numbers] : sequences) {
    const uint64_t highest = *numbers.rbegin();
    if (highest > numbers.size()) {
      for (uint64_t n = 1; n <= highest; ++n)
        if (!numbers.count(n)) withheld.insert(n);
      export_problems.push_back(std::to_string(highest - numbers.size()) + " of the sequence numbers 1 to " +
                                std::to_string(highest) + " of server " + encoding::ToHex(crypto::Bytes(key)) +
                                " are in no entry: report versions it received are not in the export");
    }
  }
  merkle::MemoryTree tree;  // the export's log
  std::unordered_map<std::string_view, uint64_t> leaf_index;  // leaf bytes -> its first index
  leaf_index.reserve(ex.log.size());
  for (const auto& leaf : ex.log) {
    leaf_index.emplace(leaf, tree.size());
    tree.Append(merkle::LeafHash(crypto::Bytes(leaf)));
  }
  const bool log_verified = AuditLog(ex, org, all, tree, leaf_index, &sum, &withheld, &export_problems);
  // Earlier exports of this server: against a log that verified only (one that does not is counted above).
  for (const auto& path : options.earlier_exports) {
    bool other_server = false;
    if (std::string p = log_verified ? HeldAgainstEarlier(path, ex, tree, org, &other_server) : ""; !p.empty()) {
      ++sum.log_problems;
      export_problems.push_back(p);
    } else if (other_server) {
      export_problems.push_back("the earlier export " + path + " is another server's: not compared");
    }
  }
  const std::vector<Stamped> stamps = CheckTimestamps(ex, org, tree, log_verified, options.trusted_tsa_pem, &sum,
                                                      &export_problems);
  if (sequences.size() > 1)
    export_problems.push_back("the receipts come from " + std::to_string(sequences.size()) +
                              " server keys of the organisation (each checked on its own)");

  // Receipts the phones kept: each one the organisation's servers signed names a version the export must hold,
  // as the same bytes.
  uint64_t other_server = 0;
  for (size_t i = 0; i < phone_receipts.size(); ++i) {
    v1::SignedReceipt sr;
    v1::Receipt r;
    const std::string what = "the phone receipt " + std::to_string(i + 1);
    // Signed, or (as phones keep them) proven by its place in a head its server signed: authorised at the
    // receipt's time, and at the head's.
    auto kept = sr.ParseFromString(phone_receipts[i]) && r.ParseFromString(sr.receipt()) && r.server_key().size() == 32
                    ? protocol::VerifyKeptReceipt(crypto::Bytes(phone_receipts[i]), crypto::Bytes(r.server_key()))
                    : Result<protocol::KeptReceipt>(Status(Code::kVerify, "malformed"));
    if (!kept.ok() || r.device_key().size() != 32 ||
        !protocol::AuthorisedAt(org.statement, crypto::Bytes(r.server_key()), r.server_time_ms()) ||
        (kept->head && !protocol::AuthorisedAt(org.statement, crypto::Bytes(r.server_key()), kept->head->time_ms))) {
      ++sum.phone_receipts_invalid;
      export_problems.push_back(what + " was not signed, nor proven by a log head, by a server key the organisation "
                                       "authorised at its time");
      continue;
    }
    if (r.server_key() != ex.server_key) {  // another server of the organisation: not this export's business
      ++other_server;
      continue;
    }
    // Against a log that verified only: one that does not is counted once, above, whatever the phones hold.
    if (std::string log = log_verified ? PhoneReceiptInLog(sr, r, ex, tree, org) : ""; !log.empty()) {
      ++sum.log_problems;
      export_problems.push_back(what + ": " + log);
    }
    const Opened* held = nullptr;
    if (auto it = seen.find(r.device_key() + r.report_id() + std::to_string(r.version()));
        r.report_id().size() == 16 && it != seen.end())
      held = &all[it->second];
    if (held == nullptr) {
      withheld.insert(r.sequence());
      export_problems.push_back(what + " is for report " + encoding::ToHex(crypto::Bytes(r.report_id())) + " version " +
                                std::to_string(r.version()) + " (sequence " + std::to_string(r.sequence()) +
                                "), which the export lacks");
    } else if (r.content_hash() != std::string_view(reinterpret_cast<const char*>(held->envelope_hash.data()), 32)) {
      ++sum.missing;
      export_problems.push_back(what + " is for other bytes of report " + held->id_hex + " version " +
                                std::to_string(r.version()) + " than the export holds");
    }
  }
  std::map<std::string, size_t>().swap(seen);

  sum.missing += withheld.size();
  if (other_server > 0)
    export_problems.push_back(std::to_string(other_server) + " phone receipts are from another server of the "
                              "organisation: not checked against this export");

  // Version chains, per device (report ids are the device's): version n names version n-1's content hash,
  // was signed by the same device, and keeps the form and the creation time.
  {
    std::map<std::tuple<std::string_view, std::string_view, uint32_t>, const Opened*> by_version;
    std::set<std::pair<std::string_view, uint32_t>> any_device;
    for (const auto& o : all)
      if (o.opened) {
        by_version[{o.device, o.id_hex, o.version}] = &o;
        any_device.insert({o.id_hex, o.version});
      }
    for (auto& o : all) {
      if (!o.opened) continue;
      if (o.version == 1) {
        if (!o.previous_hash.empty()) o.problems.push_back("version 1 names a previous version");
        continue;
      }
      auto it = by_version.find({o.device, o.id_hex, o.version - 1});
      if (it == by_version.end()) {
        o.problems.push_back(any_device.count({o.id_hex, o.version - 1})
                                 ? "version " + std::to_string(o.version - 1) + " was signed by another device"
                                 : "version " + std::to_string(o.version - 1) + " is missing from the export");
        continue;
      }
      const Opened& before = *it->second;
      if (o.previous_hash != std::string_view(reinterpret_cast<const char*>(before.content_hash.data()), 32))
        o.problems.push_back("the previous-version hash does not match version " + std::to_string(o.version - 1));
      if (before.form != o.form || before.form_version != o.form_version)
        o.problems.push_back("the form differs from version " + std::to_string(o.version - 1));
      if (before.created_ms != o.created_ms)
        o.problems.push_back("the creation time differs from version " + std::to_string(o.version - 1));
    }
  }

  // Output names: <id>-v<version>, with the device's first 8 key bytes added when two devices used the
  // same id (ids are the device's), so that no report's files can take another's place.
  {
    std::map<std::pair<std::string, uint32_t>, int> uses;
    for (const auto& o : all) ++uses[{o.id_hex, o.version}];
    std::set<std::string> names;
    for (size_t i = 0; i < all.size(); ++i) {
      Opened& o = all[i];
      o.base = (o.id_hex.empty() ? "unreadable-" + std::to_string(i) : o.id_hex) + "-v" + std::to_string(o.version);
      if (!o.id_hex.empty() && uses[{o.id_hex, o.version}] > 1)
        o.base += "-" + encoding::ToHex(crypto::Bytes(o.device.substr(0, 8)));
      if (!names.insert(o.base).second) return Status(Code::kInternal, "two reports were to be written as " + o.base);
    }
  }

  // Received no later than: the earliest time-stamp over a head that holds the report's leaf.
  std::vector<size_t> earliest(stamps.size());  // earliest[k]: the stamp of least time among stamps[k..]
  for (size_t k = stamps.size(); k-- > 0;)
    earliest[k] = k + 1 < stamps.size() && stamps[earliest[k + 1]].time_ms < stamps[k].time_ms ? earliest[k + 1] : k;
  auto timestamp_json = [&](const Opened& o) -> std::string {
    auto at = o.receipt_ok && !stamps.empty() ? leaf_index.find(o.leaf) : leaf_index.end();
    if (at == leaf_index.end()) return "null";
    auto k = std::upper_bound(stamps.begin(), stamps.end(), at->second,
                              [](uint64_t leaf, const Stamped& st) { return leaf < st.size; });
    if (k == stamps.end()) return "null";
    const Stamped& first = stamps[earliest[static_cast<size_t>(k - stamps.begin())]];
    return "{\"no_later_than_ms\":" + std::to_string(first.time_ms) + ",\"tsa\":" + JsonEscape(first.tsa) + "}";
  };

  // Each report read again (its bytes checked to be those checked above) and written: a window of entries
  // at a time, opened on every core, then written (or handed to the sink) in the export's order.
  // Attachments are decrypted next to the reports (ATTACHMENT-ID.ext under a directory per report), each
  // checked end to end. One that fails makes its report fail; it is reported, not hidden.
  std::vector<std::string> media_dirs{export_path + ".media"};
  media_dirs.insert(media_dirs.end(), options.media_dirs.begin(), options.media_dirs.end());
  constexpr size_t kWindow = 2048;
  // What this opening wrote into out_dir, removed again if it fails part way (the file changed under it, a
  // full disk): no report file is left without the summary.json that says what the export as a whole is.
  std::vector<std::string> written;
  struct RemoveUnlessDone {
    std::vector<std::string>& paths;
    bool done = false;
    ~RemoveUnlessDone() {
      if (done) return;
      std::error_code ec;
      for (const auto& p : paths) std::filesystem::remove_all(p, ec);
    }
  } written_guard{written};
  std::string index = "[";
  for (size_t from = 0; from < all.size(); from += kWindow) {
    const size_t n = std::min(kWindow, all.size() - from);
    std::vector<Reread> win(n);
    std::mutex error_mu;
    Status error = Status::Ok();
    std::atomic<bool> failed{false};
    auto fail = [&](Status st) {
      std::lock_guard lock(error_mu);
      if (error.ok()) error = std::move(st);
      failed = true;
    };
    if (write)
      for (size_t k = 0; k < n; ++k)
        if (const Opened& o = all[from + k]; o.opened) written.push_back(fs::Join(out_dir, o.base + "-attachments"));
    ParallelFor(n, [&](size_t k) {
      if (failed) return;  // the window fails: nothing more is opened or written
      Opened& o = all[from + k];
      Reread& r = win[k];
      if (Status st = ReadEntry(reader, ex, o.entry, &r.bytes, &r.envelope, &r.receipt); !st.ok())
        return fail(std::move(st));
      if (o.opened) {
        auto again = envelope::OpenAgain(crypto::Bytes(r.envelope), o.envelope_hash, keys.At(o.entry));
        if (!again.ok()) return fail(Status(Code::kInternal, "a report did not open again: " + again.status().message()));
        r.header = std::move(again->header);
        r.report.content = std::move(again->content);
        r.report.state = ReportState::kDelivered;
        r.report.content_hash = again->content_hash;
        r.report.updated_ms = r.report.content.sealed_ms();
        // The envelope's manifest declares exactly the attachments the sealed report lists.
        for (const auto& m : r.header.attachments) {
          bool listed = false;
          for (const auto& ref : r.report.content.attachments()) listed = listed || ref.attachment_id() == m.attachment_id();
          if (!listed)
            o.problems.push_back("the envelope declares an attachment the sealed report does not list (" +
                                 encoding::ToHex(crypto::Bytes(m.attachment_id())) + ")");
        }
      }
      if (o.opened && r.report.content.attachments_size() > 0) {
        std::set<std::string> ids;
        for (const auto& ref : r.report.content.attachments())
          if (!ids.insert(ref.attachment_id()).second)
            o.problems.push_back("the sealed report lists one attachment twice");
        const std::string sub = o.base + "-attachments";
        const std::string dir = write ? fs::Join(out_dir, sub) : std::string();
        if (write)
          if (Status st = fs::EnsureDirectory(dir); !st.ok()) return fail(std::move(st));
        r.attachments_json = "[";
        for (int i = 0; i < r.report.content.attachments_size(); ++i) {
          const auto& ref = r.report.content.attachments(i);
          const v1::AttachmentManifest* manifest = nullptr;
          for (const auto& m : r.header.attachments)
            if (m.attachment_id() == ref.attachment_id()) manifest = &m;
          std::string id_hex = encoding::ToHex(crypto::Bytes(ref.attachment_id()));
          std::string file = id_hex + MediaExtension(ref.mime_type());
          std::string source =
              MediaSource(media_dirs, attachment::FileName(o.header.device_key, crypto::Bytes(ref.attachment_id())));
          Status st = OpenAttachment(ref, manifest, source, write ? fs::Join(dir, file) : std::string());
          if (!st.ok()) o.problems.push_back("attachment " + id_hex + ": " + st.message());
          r.attachment_ok.push_back(st.ok());
          r.attachments_json += std::string(i ? "," : "") + "{\"id\":" + JsonEscape(id_hex) + ",\"mime\":" +
                                JsonEscape(ref.mime_type()) + ",\"size\":" + std::to_string(ref.size()) +
                                ",\"verified\":" + (st.ok() ? "true" : "false") + ",\"file\":" +
                                (st.ok() && write ? JsonEscape(sub + "/" + file) : "null") + "}";
        }
        r.attachments_json += "]";
      }
      r.verified = o.opened && o.problems.empty();
      r.json = "{\"verified\":" + std::string(r.verified ? "true" : "false") +
               ",\"problems\":" + ProblemsJson(o.problems) +
               ",\"receipt\":{\"verified\":" + (o.receipt_ok ? "true" : "false") +
               ",\"sequence\":" + std::to_string(o.sequence) + "}" +
               ",\"attachments\":" + r.attachments_json + ",\"timestamp\":" + timestamp_json(o) +
               ",\"report\":" + (o.opened ? ReportToJson(r.report) : std::string("null")) + "}\n";
    });
    DALA_RETURN_IF_ERROR(error);
    for (size_t k = 0; k < n; ++k) {
      const Opened& o = all[from + k];
      Reread& r = win[k];
      const std::string name = o.base + ".json";
      ++sum.reports;
      r.verified ? ++sum.verified : ++sum.failed;
      if (write) {
        written.push_back(fs::Join(out_dir, name));
        DALA_RETURN_IF_ERROR(WriteUnsynced(written.back(), r.json));
      }
      if (options.sink)
        DALA_RETURN_IF_ERROR(options.sink(Entry(o, r, leaf_index, enrolled, media_dirs, std::move(r.json))));
      index += std::string(from + k ? "," : "") + "{\"file\":" + (write ? JsonEscape(name) : "null") +
               ",\"id\":" + JsonEscape(o.id_hex) + ",\"version\":" + std::to_string(o.version) +
               ",\"verified\":" + (r.verified ? "true" : "false") + ",\"problems\":" + ProblemsJson(o.problems) + "}";
    }
  }
  index += "]";
  std::string summary = "{\"server_key\":" + JsonEscape(encoding::ToHex(crypto::Bytes(ex.server_key))) +
                        ",\"reports\":" + std::to_string(sum.reports) + ",\"verified\":" + std::to_string(sum.verified) +
                        ",\"failed\":" + std::to_string(sum.failed) + ",\"duplicates\":" + std::to_string(sum.duplicates) +
                        ",\"reordered\":" + std::to_string(sum.reordered) +
                        ",\"unknown_fields\":" + std::to_string(sum.unknown_fields) +
                        ",\"log_problems\":" + std::to_string(sum.log_problems) +
                        ",\"timestamps\":" + std::to_string(sum.timestamps) +
                        ",\"timestamp_problems\":" + std::to_string(sum.timestamp_problems) +
                        ",\"missing\":" + std::to_string(sum.missing) +
                        ",\"phone_receipts\":" + std::to_string(phone_receipts.size()) +
                        ",\"phone_receipts_invalid\":" + std::to_string(sum.phone_receipts_invalid) + ",\"problems\":" + ProblemsJson(export_problems) +
                        ",\"items\":" + index + "}\n";
  // One sync for every report file, then summary.json, atomically: it names only files already on disk. (An
  // fsync per file, as before, took about half the time of a 100,000-report export.)
  if (options.summary_sink) options.summary_sink(summary);
  if (write) DALA_RETURN_IF_ERROR(SyncFileSystem(out_dir));
  const std::string summary_file = !options.summary_path.empty() ? options.summary_path
                                   : write              ? fs::Join(out_dir, "summary.json")
                                                        : std::string();
  if (!summary_file.empty()) DALA_RETURN_IF_ERROR(fs::WriteFileAtomic(summary_file, crypto::Bytes(summary)));
  written_guard.done = true;
  return sum;
}

}  // namespace dala::desk
