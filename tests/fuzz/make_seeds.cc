// Writes the seed corpus (tests/fuzz/corpus/<target>/) from the fixed keys: real invites, requests,
// envelopes, receipts, key files, exports and upload bodies, so that fuzzing starts from valid inputs.
// Run by hand when a format changes: dala_fuzz_seeds tests/fuzz/corpus
#include <cstdio>
#include <fstream>

#include "crypto/attachment_file.h"
#include "fuzz_common.h"
#include "crypto/keyfile.h"
#include "format/invite.h"
#include "format/receipt.h"
#include "format/request.h"
#include "protocol/http_api.h"
#include "format/report.h"
#include "base/encoding.h"
#include "crypto/chunk_tree.h"
#include "format/envelope.h"

namespace {

using namespace dala;
namespace fsys = std::filesystem;

std::string g_out;

void Put(const std::string& target, const std::string& name, uint8_t first, std::string_view rest) {
  fsys::create_directories(g_out + "/" + target);
  std::ofstream f(g_out + "/" + target + "/" + name, std::ios::binary | std::ios::trunc);
  f.put(static_cast<char>(first));
  f.write(rest.data(), static_cast<std::streamsize>(rest.size()));
}
void PutRaw(const std::string& target, const std::string& name, std::string_view bytes) {
  fsys::create_directories(g_out + "/" + target);
  std::ofstream f(g_out + "/" + target + "/" + name, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
std::string U16(size_t n) { return {static_cast<char>(n & 0xff), static_cast<char>(n >> 8)}; }
std::string Str(std::span<const uint8_t> b) { return {reinterpret_cast<const char*>(b.data()), b.size()}; }

std::string Ciphertext(size_t n) {
  std::string s(n, '\0');
  uint32_t x = 12345;
  for (auto& c : s) {
    x = x * 1103515245u + 12345u;
    c = static_cast<char>(x >> 16);
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: dala_fuzz_seeds OUT_DIR\n");
    return 2;
  }
  g_out = argv[1];
  const crypto::SigningKey device = fuzz::FixedSigningKey(fuzz::kDeviceLabel);
  const crypto::SigningKey server = fuzz::FixedSigningKey(fuzz::kServerLabel);
  const crypto::BoxKeyPair org = fuzz::FixedBoxKeyPair(fuzz::kOrgLabel);

  // Invites.
  v1::Invite inv;
  inv.add_urls("https://127.0.0.1:8443");
  inv.add_urls("http://example.onion");
  inv.set_server_key(Str(server.public_key));
  inv.set_uses(5);
  inv.set_issued_ms(1764000000000);
  inv.set_expires_ms(4102444800000);
  inv.set_tls_pin(std::string(32, 'p'));
  inv.set_statement(fuzz::FixedOrgStatement(server.public_key));
  Put("fuzz_invite", "signed-text", 0, protocol::EncodeInvite(inv, fuzz::FixedSigningKey(fuzz::kRootLabel)));
  Put("fuzz_invite", "invite-message", 1, inv.SerializeAsString());

  // An attachment of two 64 KiB chunks (the server never decrypts: any bytes make a valid manifest).
  const std::string ct = Ciphertext(65536 + 100);
  attachment::ChunkTree tree(65536);
  tree.Update(crypto::Bytes(ct));
  const crypto::Hash root = tree.Finish();
  v1::AttachmentManifest manifest;
  manifest.set_attachment_id(std::string(16, 'a'));
  manifest.set_size(ct.size());
  manifest.set_chunk_size(65536);
  manifest.set_chunk_hashes(tree.chunk_hashes());
  manifest.set_root(Str(root));

  // Reports: version 1 with every kind of field and an attachment, version 2 naming version 1.
  v1::ReportContent c;
  c.set_report_id(std::string(16, 'r'));
  c.set_version(1);
  c.set_form("detention");
  c.set_form_version(1);
  auto* f = c.add_fields();
  f->set_key("count");
  f->mutable_value()->set_integer(3);
  f = c.add_fields();
  f->set_key("place");
  f->mutable_value()->set_text("Алматы, площадь");
  f = c.add_fields();
  f->set_key("people");
  auto* p = f->mutable_value()->mutable_people()->add_people();
  p->set_name("Имя Фамилия");
  p->set_role("detained");
  c.set_narrative("Detained at 11:00 near the square. \xF0\x9F\x93\xB7");
  c.mutable_capture()->set_device_time_ms(1764000000000);
  c.mutable_capture()->set_counter(7);
  c.mutable_capture()->mutable_location()->set_latitude(43.2);
  c.mutable_capture()->mutable_location()->set_longitude(76.9);
  auto* ref = c.add_attachments();
  ref->set_attachment_id(manifest.attachment_id());
  ref->set_mime_type("image/jpeg");
  ref->set_size(65000);
  ref->set_plaintext_hash(std::string(32, 'h'));
  ref->set_ciphertext_hash(manifest.root());
  ref->set_key(std::string(32, 'k'));
  ref->set_ciphertext_size(ct.size());
  c.set_created_ms(1764000000000);
  c.set_sealed_ms(1764000001000);
  c.set_device_key(Str(device.public_key));
  const std::string signed1 = SignContent(device, c);
  v1::ReportContent c2 = c;
  c2.set_version(2);
  c2.clear_attachments();
  c2.set_previous_hash(Str(crypto::Blake2b256(crypto::Bytes(signed1))));
  const std::string signed2 = SignContent(device, c2);

  auto seal = [&](const v1::ReportContent& content, const std::string& signed_report, bool with_attachment) {
    envelope::Header h;
    std::memcpy(h.report_id.data(), content.report_id().data(), 16);
    h.version = content.version();
    h.device_key = device.public_key;
    if (with_attachment) h.attachments.push_back(manifest);
    std::vector<crypto::PublicKey> to{org.public_key};
    auto env = envelope::Seal(device, h, crypto::Bytes(signed_report), to);
    if (!env.ok()) std::abort();
    return *env;
  };
  const std::string env1 = seal(c, signed1, true), env2 = seal(c2, signed2, false);
  v1::SealedEnvelope sealed;
  sealed.ParseFromString(env1);
  Put("fuzz_envelope", "sealed-envelope", 0, env1);
  Put("fuzz_envelope", "envelope-body", 1, sealed.body());
  Put("fuzz_envelope", "signed-report", 2, signed1);
  Put("fuzz_envelope", "report-content", 3, c.SerializeAsString());
  Put("fuzz_envelope", "report-content-v2", 3, c2.SerializeAsString());

  // Receipts for both versions, and the export a server would write.
  auto receipt = [&](const std::string& env, const v1::ReportContent& content, uint64_t seq) {
    v1::Receipt r;
    r.set_report_id(content.report_id());
    r.set_version(content.version());
    r.set_content_hash(Str(crypto::Blake2b256(crypto::Bytes(env))));
    r.set_server_time_ms(1764000002000);
    r.set_sequence(seq);
    r.set_server_key(Str(server.public_key));
    r.set_device_key(Str(device.public_key));
    return r;
  };
  const v1::Receipt r1 = receipt(env1, c, 1), r2 = receipt(env2, c2, 2);
  Put("fuzz_receipt", "signed-receipt", 0, protocol::SignReceipt(server, r1));
  Put("fuzz_receipt", "receipt-message", 3, r1.SerializeAsString());
  Put("fuzz_receipt", "kept-receipt-message", 7, r1.SerializeAsString());
  v1::Export ex;
  ex.set_server_key(Str(server.public_key));
  auto* item = ex.add_reports();
  item->set_envelope(env1);
  item->set_receipt(protocol::SignReceipt(server, r1));
  item = ex.add_reports();
  item->set_envelope(env2);
  item->set_receipt(protocol::SignReceipt(server, r2));
  {  // the device's enrolment through the fixed organisation's invite, so that a seed verifies in full
    auto inv = protocol::DecodeInvite(fuzz::FixedOrgInvite(server.public_key, 5));
    if (!inv.ok()) std::abort();
    auto* e = ex.add_enrolments();
    e->set_device_key(Str(device.public_key));
    e->set_invite(inv->checked.signed_invite);
    e->set_proof(protocol::EnrolProof(inv->enrol_secret, device.public_key, server.public_key));
    e->set_enrolled_ms(1764000001000);
    ex.set_statement(fuzz::FixedOrgStatement(server.public_key));
  }
  PutRaw("fuzz_desk_export", "two-versions", ex.SerializeAsString());
  ex.mutable_reports()->RemoveLast();
  PutRaw("fuzz_desk_export", "one-report", ex.SerializeAsString());

  // Key files: a platform key (store and desk purposes) and the cheapest passphrase cost.
  SecretBuffer secret(32);
  Credential raw = fuzz::FixedRawKey();
  Credential pass;
  pass.kind = CredentialKind::kPassphrase;
  pass.bytes = SecretBuffer(reinterpret_cast<const uint8_t*>("pw"), 2);
  KdfParams cheap{kKdfOpsMin, kKdfMemMin};
  auto kf = WrapSecret(KeyPurpose::kStoreDatabase, secret, raw, cheap);
  auto kd = WrapSecret(KeyPurpose::kOrganisation, secret, raw, cheap);
  auto kp = WrapSecret(KeyPurpose::kStoreDatabase, secret, pass, cheap);
  if (!kf.ok() || !kd.ok() || !kp.ok()) std::abort();
  Put("fuzz_keyfile", "platform-key", 0, Str(*kf));
  Put("fuzz_keyfile", "desk-platform-key", 2, Str(*kd));
  Put("fuzz_keyfile", "passphrase", 5, Str(*kp));

  // Requests from the (fixed, enrolled) device.
  v1::Request req;
  req.set_device_key(Str(device.public_key));
  req.set_request_id(std::string(16, 'q'));
  req.set_device_time_ms(1764000003000);
  req.set_server_key(std::string(32, 's'));  // the fuzz targets' server key is made at run time
  v1::Request enrol = req;
  enrol.mutable_enrol()->set_invite(std::string(64, 'i'));  // the real one is made at run time (its server key)
  enrol.mutable_enrol()->set_proof(std::string(64, 'p'));
  v1::Request push = req;
  push.mutable_push()->add_envelopes(env1);
  push.mutable_push()->add_envelopes(env2);
  v1::Request up0 = req;
  auto* u = up0.mutable_upload();
  u->set_report_id(c.report_id());
  u->set_version(1);
  u->set_attachment_id(manifest.attachment_id());
  u->set_offset(0);
  u->set_length(ct.size());
  v1::Request up1 = up0;
  up1.mutable_upload()->set_offset(65536);
  up1.mutable_upload()->set_length(100);
  PutRaw("fuzz_request", "push", protocol::SignRequest(device, push));
  PutRaw("fuzz_request", "enrol", protocol::SignRequest(device, enrol));
  auto signed_put = [&](const std::string& name, uint8_t sel, const v1::Request& r, std::string_view body) {
    std::string s = r.SerializeAsString();
    Put("fuzz_server_signed", name, sel, U16(s.size()) + s + std::string(body));
  };
  signed_put("enrol", 0, enrol, "");
  signed_put("push", 1, push, "");
  signed_put("upload-whole", 2, up0, ct);
  signed_put("upload-second-chunk", 2, up1, std::string_view(ct).substr(65536));
  signed_put("upload-cut", 2 | 16, up0, std::string_view(ct).substr(0, 70000));
  // The same over the unauthenticated surface: push (sel 0: POST /v2/push) and upload (sel 12: /v2/upload).
  Put("fuzz_server_http", "push", 0, protocol::SignRequest(device, push));
  Put("fuzz_server_http", "enrol", 4, protocol::SignRequest(device, enrol));
  Put("fuzz_server_http", "health", 1 | 8, "");
  const std::string header = "Bearer " + encoding::Base64Url(crypto::Bytes(protocol::SignRequest(device, up1)));
  Put("fuzz_server_http", "upload", 12, U16(header.size()) + header + std::string(std::string_view(ct).substr(65536)));

  // Sync plans: every answer passed on; the first answer's body replaced; a flipped byte in the second;
  // a lost answer after the server stored the push; a 503 then a truncated answer.
  PutRaw("fuzz_client_sync", "all-pass", std::string(8, '\0'));
  PutRaw("fuzz_client_sync", "replace-first", std::string("\x01\x04\x00junk", 7));
  PutRaw("fuzz_client_sync", "flip-second", std::string("\x00\x02\x10\x00\x80", 5));
  PutRaw("fuzz_client_sync", "lost-answer", std::string("\x00\x0d\x00\x00", 4));
  PutRaw("fuzz_client_sync", "status-then-truncate", std::string("\x04\x0a\x03\x05\x00\x00\x00", 7));
  std::printf("seeds written to %s\n", g_out.c_str());
  return 0;
}
