// Sealed envelopes and the signed reports inside them, as the desk (and the C API's open call) read
// them. The first byte picks what the rest is:
//   0: a SealedEnvelope as received: opened with the fixed organisation key, the report inside verified;
//   1: an EnvelopeBody, signed here with the fixed device key first (reaching the checks behind the
//      device signature: manifests, recipients, the content key and the AEAD);
//   2: a SignedReport;  3: a ReportContent, signed here with the fixed device key.
// A report that verifies is also rendered to JSON, as the desk writes it.
#include "fuzz_common.h"
#include "format/invite.h"
#include "format/receipt.h"
#include "format/request.h"
#include "protocol/http_api.h"
#include "format/report.h"
#include "format/envelope.h"

namespace {

void CheckReport(std::span<const uint8_t> signed_report) {
  auto content = dala::VerifySignedReport(signed_report);
  if (!content.ok()) return;
  if (content->report_id().size() != 16 || content->device_key().size() != 32 || content->version() == 0)
    std::abort();
  dala::Report r;
  r.content = std::move(*content);
  r.state = dala::ReportState::kDelivered;
  std::string json = dala::ReportToJson(r);
  if (json.empty() || json.front() != '{' || json.back() != '}') std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  static const crypto::SigningKey device = fuzz::FixedSigningKey(fuzz::kDeviceLabel);
  static const crypto::BoxKeyPair org = fuzz::FixedBoxKeyPair(fuzz::kOrgLabel);
  fuzz::Input in(data, size);
  const uint8_t mode = in.Byte() & 3;
  std::string_view rest = in.Rest();
  std::string bytes(rest);
  if (mode == 1) {
    v1::EnvelopeBody body;
    if (!body.ParseFromString(bytes)) return 0;
    v1::SealedEnvelope env;
    env.set_body(body.SerializeAsString());
    auto sig = crypto::Sign(device, envelope::kDomain, crypto::Bytes(env.body()));
    env.set_signature(sig.data(), sig.size());
    bytes = env.SerializeAsString();
  }
  if (mode <= 1) {
    envelope::Header h;
    const bool verified = envelope::Verify(crypto::Bytes(bytes), &h).ok();
    auto plain = envelope::Open(crypto::Bytes(bytes), org, &h);
    if (plain.ok() && !verified) std::abort();  // opening implies the outer signature verified
    if (plain.ok()) CheckReport(plain->span());
    return 0;
  }
  if (mode == 3) {
    v1::ReportContent content;
    if (!content.ParseFromString(bytes)) return 0;
    bytes = SignContent(device, content);
  }
  CheckReport(crypto::Bytes(bytes));
  return 0;
}
