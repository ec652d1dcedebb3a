// Writes the desk's test vectors (docs/protocol.md, "Test vectors") into a directory: an organisation's
// desk key file, a genuine export made by a real server from a real phone (with an attachment), the
// phone's receipts as `dala receipts --json` writes them, and altered copies of the export, each as a
// courier, a raided server or an enrolled device could make it. Receipts files beside phone-receipts.json:
// forked-receipts.json (a second phone served by a clone of the server's data directory), phone-receipts-
// later.json (also a report delivered after the export), phone-receipts-leaf-moved.json (one receipt's
// leaf_index changed) and phone-receipts-before-log.json (signed, with no leaf, proof or head, as before the log). The verdicts each must get are in
// tests/vectors/expected.json, written from docs/protocol.md, not from running the desk; check_vectors.py
// checks `dala desk open` against them.
//
//   dala_make_vectors OUT_DIR     (then commit OUT_DIR: tests/vectors/data)
//
// The keys, ids and times differ on every run; the verdicts do not.
#include <sodium.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/encoding.h"
#include "base/fsutil.h"
#include "client/sync_engine.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"
#include "desk/desk_key.h"
#include "format/envelope.h"
#include "format/invite.h"
#include "format/organisation.h"
#include "format/receipt.h"
#include "format/report.h"
#include "format/request.h"
#include "protocol/http_api.h"
#include "server/server_core.h"
#include "store/store.h"

namespace {

using namespace dala;
namespace stdfs = std::filesystem;

constexpr char kPassphrase[] = "dala test vectors";

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) {
    std::fprintf(stderr, "make_vectors: %s: %s\n", what, r.status().message().c_str());
    std::exit(1);
  }
  return std::move(*r);
}
void Must(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "make_vectors: %s: %s\n", what, s.message().c_str());
    std::exit(1);
  }
}

Credential Pass() {
  Credential c;
  c.kind = CredentialKind::kPassphrase;
  c.bytes = SecretBuffer(reinterpret_cast<const uint8_t*>(kPassphrase), sizeof kPassphrase - 1);
  return c;
}

// The phone talks to the server in process, as over HTTP (uploads read from the file range).
class InProcess : public sync::Transport {
 public:
  explicit InProcess(server::ServerCore* s) : server_(s) {}
  Result<sync::HttpResponse> Post(const std::string&, const sync::HttpRequest& req, int64_t,
                                  const std::string&) override {
    if (!req.is_upload()) {
      auto r = server_->Handle("POST", req.path, protocol::kContentType, req.body);
      return sync::HttpResponse{r.status, r.body};
    }
    std::string body(req.file_length, '\0');
    std::ifstream in(req.file_path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(req.file_offset));
    in.read(body.data(), static_cast<std::streamsize>(body.size()));
    auto r = server_->HandleUpload(req.upload_header, body);
    return sync::HttpResponse{r.status, r.body};
  }

 private:
  server::ServerCore* server_;
};

void Write(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "make_vectors: cannot write %s\n", path.c_str());
    std::exit(1);
  }
}
std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// An export file and its attachments (PATH.media/, as dala-server export writes them).
void WriteExport(const std::string& out, const std::string& name, const std::string& bytes, const std::string& media) {
  Write(out + "/" + name, bytes);
  stdfs::remove_all(out + "/" + name + ".media");
  stdfs::copy(media, out + "/" + name + ".media", stdfs::copy_options::recursive);
}

// A phone's receipts as `dala receipts --json` writes them (the desk reads each "receipt": the stored
// SignedReceipt, with the report's place in the server's log). `alter` may change one before it is written.
std::string ReceiptsJson(Store& phone, const std::function<void(const ReportId&, uint32_t, v1::SignedReceipt&)>& alter = {}) {
  auto receipts = Must(phone.ListReceipts(), "receipts");
  std::string j = "[";
  for (size_t i = 0; i < receipts.size(); ++i) {
    const auto& r = receipts[i];
    v1::SignedReceipt sr;
    v1::Receipt body;
    if (!sr.ParseFromArray(r.receipt.data(), static_cast<int>(r.receipt.size())) || !body.ParseFromString(sr.receipt()) ||
        !r.verified || !sr.has_leaf_index() || sr.log_head().empty()) {
      std::fprintf(stderr, "make_vectors: a receipt the phone holds is not verified with its place in the log\n");
      std::exit(1);
    }
    std::string bytes(r.receipt.begin(), r.receipt.end());
    if (alter) {
      alter(r.id, r.version, sr);
      bytes = sr.SerializeAsString();
    }
    j += std::string(i ? "," : "") + "\n {\"id\":\"" + encoding::ToHex(r.id) + "\",\"version\":" +
         std::to_string(r.version) + ",\"destination\":\"" + r.destination + "\",\"sequence\":" +
         std::to_string(body.sequence()) + ",\"server_time\":" + std::to_string(body.server_time_ms()) +
         ",\"verified\":" + (r.verified ? "true" : "false") + ",\"receipt\":\"" +
         encoding::ToHex(crypto::Bytes(bytes)) + "\"}";
  }
  return j + "\n]\n";
}

Report SealNew(Store& phone, const std::string& narrative) {
  Report r = Must(phone.CreateDraft("detention/1"), "draft");
  Must(r.SetNarrative(narrative), "narrative");
  Must(phone.Seal(r), "seal");
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || sodium_init() < 0) {
    std::fprintf(stderr, "usage: dala_make_vectors OUT_DIR\n");
    return 2;
  }
  const std::string out = argv[1];
  const std::string work = stdfs::temp_directory_path().string() + "/dala-vectors-" + std::to_string(getpid());
  stdfs::remove_all(work);
  stdfs::create_directories(work);
  stdfs::create_directories(out);
  stdfs::remove(out + "/desk.key");

  // The organisation, its server and a phone, as in production (lightest Argon2id the key file accepts).
  const std::string identity =
      Must(desk::GenerateKey(out + "/desk.key", Pass(), KdfParams{1, 8u << 20}, "Dala test vectors"), "keygen");
  desk::Organisation org = Must(desk::OpenKey(out + "/desk.key", Pass()), "open key");
  Must(server::ServerCore::Init(work + "/srv", org.root.public_key), "server init");
  auto server = Must(server::ServerCore::Open(work + "/srv"), "server open");
  desk::InviteParams p;
  p.server = server->server_key();
  p.urls = {"http://127.0.0.1:1"};
  p.uses = 2;
  p.expires_ms = SystemNowMs() + 3600000;
  const std::string invite = Must(desk::MakeInvite(org, p, SystemNowMs()), "invite");
  StoreOptions so;
  so.kdf = KdfParams{1, 8u << 20};
  auto phone = Must(Store::Create(work + "/phone", Pass(), so), "phone");
  Must(phone->Join(invite).status(), "join");

  // The phone enrols in a run of its own; then the server's data directory is copied while it is closed: a
  // clone that whoever has it runs with the server's key, showing another phone another log (a fork).
  {
    InProcess first(server.get());
    auto run = Must(sync::RunOnce(*phone, first, SystemNowMs() + 60000, nullptr), "enrol");
    if (run.delivered != 0 || !run.last_error.empty() || !(*phone->Servers())[0].enrolled) {
      std::fprintf(stderr, "make_vectors: the phone did not enrol: %s\n", run.last_error.c_str());
      return 1;
    }
  }
  server.reset();
  stdfs::copy(work + "/srv", work + "/clone", stdfs::copy_options::recursive);
  server = Must(server::ServerCore::Open(work + "/srv"), "server reopen");
  std::string clone_device, report_f, report_c;
  {  // A second phone, enrolled with the invite's second use at the clone, delivers one report there.
    auto clone = Must(server::ServerCore::Open(work + "/clone"), "clone open");
    auto other = Must(Store::Create(work + "/other-phone", Pass(), so), "other phone");
    Must(other->Join(invite).status(), "join the clone");
    Report f = SealNew(*other, "test vector: a report only the server's clone logged");
    InProcess to_clone(clone.get());
    auto run = Must(sync::RunOnce(*other, to_clone, SystemNowMs() + 60000, nullptr), "sync to the clone");
    if (run.delivered != 1 || run.remaining != 0) {
      std::fprintf(stderr, "make_vectors: the clone took %llu of 1\n", static_cast<unsigned long long>(run.delivered));
      return 1;
    }
    Write(out + "/forked-receipts.json", ReceiptsJson(*other));
    clone_device = encoding::ToHex(other->device_key());
    report_f = encoding::ToHex(f.id());
  }

  // Report A: version 1 with an attachment, versions 2 and 3 edits. Report B: one version.
  Write(work + "/photo.txt", "test vector attachment: not a photo of anyone\n");
  Report a = Must(phone->CreateDraft("detention/1"), "draft");
  Must(a.SetNarrative("test vector report A, version 1"), "narrative");
  Must(phone->ImportAttachment(a.id(), work + "/photo.txt", "text/plain").status(), "attach");
  a = Must(phone->Get(a.id()), "reload");
  Must(phone->Seal(a), "seal A1");
  for (int v = 2; v <= 3; ++v) {
    Report next = Must(phone->Edit(a.id()), "edit");
    Must(next.SetNarrative("test vector report A, version " + std::to_string(v)), "narrative");
    Must(phone->Seal(next), "seal A");
  }
  Report b = SealNew(*phone, "test vector report B");
  InProcess net(server.get());
  auto run = Must(sync::RunOnce(*phone, net, SystemNowMs() + 60000, nullptr), "sync");
  if (run.delivered != 4 || run.remaining != 0) {
    std::fprintf(stderr, "make_vectors: delivered %llu of 4\n", static_cast<unsigned long long>(run.delivered));
    return 1;
  }
  Must(server->Export(work + "/genuine.dala").status(), "export");
  const std::string media = work + "/genuine.dala.media";
  if (!stdfs::exists(media)) stdfs::create_directories(media);
  const std::string genuine = Read(work + "/genuine.dala");
  WriteExport(out, "genuine.dala", genuine, media);

  // The phone's receipts, as `dala receipts --json` writes them (the desk reads each "receipt").
  Write(out + "/phone-receipts.json", ReceiptsJson(*phone));
  // The same receipts as a phone from before the log kept them: signed (the export's signature for each),
  // with no leaf, proof or head.
  {
    v1::Export signed_by;
    if (!signed_by.ParseFromString(genuine)) {
      std::fprintf(stderr, "make_vectors: the export does not parse\n");
      return 1;
    }
    Write(out + "/phone-receipts-before-log.json", ReceiptsJson(*phone, [&](const ReportId&, uint32_t, v1::SignedReceipt& sr) {
            for (const auto& entry : signed_by.reports()) {
              v1::SignedReceipt exported;
              if (exported.ParseFromString(entry.receipt()) && exported.receipt() == sr.receipt())
                sr.set_signature(exported.signature());
            }
            if (sr.signature().empty()) {
              std::fprintf(stderr, "make_vectors: a phone receipt is not in the export\n");
              std::exit(1);
            }
            sr.clear_leaf_index();
            sr.clear_inclusion_proof();
            sr.clear_log_head();
          }));
  }
  {  // A3's receipt claiming A2's leaf, inside its head: its inclusion proof no longer leads to the head's
     // root, and the log is all that proves a receipt a phone keeps.
    uint64_t a2_leaf = 0;
    ReceiptsJson(*phone, [&](const ReportId& id, uint32_t version, v1::SignedReceipt& sr) {
      if (id == a.id() && version == 2) a2_leaf = sr.leaf_index();
    });
    Write(out + "/phone-receipts-leaf-moved.json",
          ReceiptsJson(*phone, [&](const ReportId& id, uint32_t version, v1::SignedReceipt& sr) {
            if (id == a.id() && version == 3) sr.set_leaf_index(a2_leaf);
          }));
  }

  v1::Export ex;
  if (!ex.ParseFromString(genuine) || ex.reports_size() != 4) {
    std::fprintf(stderr, "make_vectors: the export does not hold 4 reports\n");
    return 1;
  }
  // Sequence order: A1 A2 A3 B1 (A waited for its attachment, so check rather than assume).
  auto variant = [&](const std::string& name, const v1::Export& e) { WriteExport(out, name, e.SerializeAsString(), media); };

  {  // An entry repeated.
    v1::Export e = ex;
    *e.add_reports() = ex.reports(1);
    variant("duplicated.dala", e);
  }
  {  // Entries out of order.
    v1::Export e = ex;
    e.mutable_reports()->SwapElements(0, 3);
    variant("reordered.dala", e);
  }
  {  // The last entry hidden behind field number 15 (protobuf would keep it as an unknown field).
    std::string bytes = genuine;
    v1::Export last_only;
    *last_only.add_reports() = ex.reports(3);
    const std::string entry = last_only.SerializeAsString();
    const size_t at = bytes.rfind(entry);
    if (at == std::string::npos || static_cast<uint8_t>(bytes[at]) != 0x12) return 1;
    bytes[at] = 0x7a;
    WriteExport(out, "hidden-entry.dala", bytes, media);
  }
  // Which entry is which version of A?
  int a_index[4] = {-1, -1, -1, -1}, b_index = -1;
  for (int i = 0; i < ex.reports_size(); ++i) {
    envelope::Header h;
    Must(envelope::Verify(crypto::Bytes(ex.reports(i).envelope()), &h), "envelope");
    if (h.report_id == a.id()) a_index[h.version] = i;
    else b_index = i;
  }
  if (a_index[1] < 0 || a_index[2] < 0 || a_index[3] < 0 || b_index < 0) return 1;
  {  // A's version 2 dropped from the middle of its chain.
    v1::Export e = ex;
    e.mutable_reports()->DeleteSubrange(a_index[2], 1);
    variant("middle-dropped.dala", e);
  }
  {  // The entry with the highest sequence number dropped: nothing inside the export shows it.
    v1::Export e = ex;
    int last = 0;
    uint64_t best = 0;
    for (int i = 0; i < e.reports_size(); ++i) {
      v1::SignedReceipt sr;
      v1::Receipt r;
      sr.ParseFromString(e.reports(i).receipt());
      r.ParseFromString(sr.receipt());
      if (r.sequence() > best) best = r.sequence(), last = i;
    }
    e.mutable_reports()->DeleteSubrange(last, 1);
    variant("latest-dropped.dala", e);
  }
  {  // One byte of a leaf of the server's log changed: the leaves no longer make the signed head.
    v1::Export e = ex;
    (*e.mutable_log(2))[7] ^= 1;
    variant("log-leaf-changed.dala", e);
  }
  {  // The log's signed head taken away: nothing shows the export holds everything.
    v1::Export e = ex;
    e.clear_log_head();
    variant("log-without-head.dala", e);
  }
  {  // Every receipt re-signed by another key (a raider's new key), back-dated a year; the export names it.
    v1::Export e = ex;
    crypto::SigningKey other = crypto::GenerateSigningKey();
    e.set_server_key(other.public_key.data(), 32);
    for (auto& item : *e.mutable_reports()) {
      v1::SignedReceipt sr;
      v1::Receipt r;
      sr.ParseFromString(item.receipt());
      r.ParseFromString(sr.receipt());
      r.set_server_key(other.public_key.data(), 32);
      r.set_server_time_ms(r.server_time_ms() - 365ll * 86400000);
      item.set_receipt(protocol::SignReceipt(other, r));
    }
    variant("resigned.dala", e);
  }
  {  // One byte of B's receipt signature changed: B's receipt does not verify.
    v1::Export e = ex;
    std::string receipt = e.reports(b_index).receipt();
    v1::SignedReceipt sr;
    sr.ParseFromString(receipt);
    std::string sig = sr.signature();
    sig[5] ^= 1;
    sr.set_signature(sig);
    e.mutable_reports(b_index)->set_receipt(sr.SerializeAsString());
    variant("bad-receipt-signature.dala", e);
  }
  {  // An enrolled device (the invite's second use) seals an envelope whose key commitment is not its key,
     // and the real server stores it and signs a genuine receipt: only the desk can tell.
    crypto::SigningKey dev = crypto::GenerateSigningKey();
    auto decoded = Must(protocol::DecodeInvite(invite), "decode invite");
    v1::Request enrol;
    enrol.set_device_key(dev.public_key.data(), 32);
    enrol.set_server_key(server->server_key().data(), 32);
    enrol.mutable_enrol()->set_invite(decoded.checked.signed_invite);
    enrol.mutable_enrol()->set_proof(protocol::EnrolProof(decoded.enrol_secret, dev.public_key, server->server_key()));
    if (server->Handle("POST", protocol::kPathEnrol, protocol::kContentType, protocol::SignRequest(dev, enrol)).status != 200)
      return 1;
    v1::ReportContent c;
    ReportId id{};
    randombytes_buf(id.data(), id.size());
    c.set_report_id(id.data(), id.size());
    c.set_version(1);
    c.set_form("detention/1");
    c.set_form_version(1);
    c.set_narrative("test vector: an envelope that does not commit to its key");
    c.set_created_ms(SystemNowMs());
    c.set_sealed_ms(SystemNowMs());
    c.set_device_key(dev.public_key.data(), 32);
    const std::string signed_report = SignContent(dev, c);
    envelope::Header h;
    h.report_id = id;
    h.version = 1;
    h.device_key = dev.public_key;
    const std::vector<crypto::PublicKey> recipients = protocol::Recipients(org.statement);
    std::string env = Must(envelope::Seal(dev, h, crypto::Bytes(signed_report), recipients), "seal");
    v1::SealedEnvelope sealed;
    v1::EnvelopeBody body;
    sealed.ParseFromString(env);
    body.ParseFromString(sealed.body());
    std::string commitment(32, '\0');
    randombytes_buf(commitment.data(), commitment.size());
    body.set_key_commitment(commitment);
    sealed.set_body(body.SerializeAsString());
    const crypto::Signature sig = crypto::Sign(dev, envelope::kDomain, crypto::Bytes(sealed.body()));
    sealed.set_signature(sig.data(), sig.size());
    v1::Request push;
    push.set_device_key(dev.public_key.data(), 32);
    push.set_server_key(server->server_key().data(), 32);
    push.mutable_push()->add_envelopes(sealed.SerializeAsString());
    if (server->Handle("POST", protocol::kPathPush, protocol::kContentType, protocol::SignRequest(dev, push)).status != 200)
      return 1;
    Must(server->Export(work + "/uncommitted.dala").status(), "export");
    WriteExport(out, "uncommitted-key.dala", Read(work + "/uncommitted.dala"), media);
  }

  {  // Report C, delivered after the export was taken: its head is of a log larger than genuine.dala's (an
     // export cut short, or taken from the server restored from a backup made when genuine.dala was).
    report_c = encoding::ToHex(SealNew(*phone, "test vector report C, delivered after the export").id());
    auto run = Must(sync::RunOnce(*phone, net, SystemNowMs() + 60000, nullptr), "sync C");
    if (run.delivered != 1 || run.remaining != 0) {
      std::fprintf(stderr, "make_vectors: delivered %llu of C\n", static_cast<unsigned long long>(run.delivered));
      return 1;
    }
    Write(out + "/phone-receipts-later.json", ReceiptsJson(*phone));
  }

  // What an independent implementation needs besides the files: the passphrase, and (to start without
  // the key file's Argon2id) the master secret and what derives from it.
  {
    std::string j = "{\n";
    j += " \"passphrase\": \"" + std::string(kPassphrase) + "\",\n";
    j += " \"identity\": \"" + identity + "\",\n";
    j += " \"root_public_key\": \"" + encoding::ToHex(org.root.public_key) + "\",\n";
    j += " \"master_secret\": \"" + encoding::ToHex(org.master.span()) + "\",\n";
    j += " \"recipient_public_key\": \"" + encoding::ToHex(org.recipients[0].public_key) + "\",\n";
    j += " \"recipient_secret_key\": \"" + encoding::ToHex(org.recipients[0].secret_key.span()) + "\",\n";
    j += " \"server_public_key\": \"" + encoding::ToHex(server->server_key()) + "\",\n";
    j += " \"device_public_key\": \"" + encoding::ToHex(phone->device_key()) + "\",\n";
    j += " \"report_a\": \"" + encoding::ToHex(a.id()) + "\",\n";
    j += " \"report_b\": \"" + encoding::ToHex(b.id()) + "\",\n";
    j += " \"clone_device_public_key\": \"" + clone_device + "\",\n";
    j += " \"report_c\": \"" + report_c + "\",\n";
    j += " \"report_f\": \"" + report_f + "\"\n}\n";
    Write(out + "/keys.json", j);
  }
  phone.reset();
  server.reset();
  stdfs::remove_all(work);
  std::printf("test vectors written to %s\n", out.c_str());
  return 0;
}
