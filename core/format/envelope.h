// The sealed envelope (docs/protocol.md, "Envelopes"): the signed report encrypted under a random content
// key (XChaCha20-Poly1305), the key sealed (crypto_box_seal) to each recipient, and the device's signature
// over the whole body, which commits to the content key. A server can check the signature; only a
// recipient can open it, and every recipient opens the same report.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/id.h"
#include "base/secret.h"
#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/report.pb.h"
#include "format/report.h"

namespace dala::envelope {

inline constexpr std::string_view kDomain = "dala/v2/envelope";
inline constexpr std::string_view kDomainKeyCommitment = "dala/v2/envelope-key";
// The smallest padded report: every short report looks alike.
inline constexpr size_t kEnvelopeMinimum = 1024;

struct Header {
  ReportId report_id{};
  uint32_t version = 0;
  crypto::PublicKey device_key{};
  std::vector<v1::AttachmentManifest> attachments;  // each checked (shape, root) by Verify
};

Result<std::string> Seal(const crypto::SigningKey& device, const Header& header, std::span<const uint8_t> plaintext,
                         std::span<const crypto::PublicKey> recipients);
// Checks the outer signature only (what a server can do). Fills header on success.
Status Verify(std::span<const uint8_t> envelope, Header* header);
// Verifies the outer signature, then decrypts with the recipient key pair.
Result<SecretBuffer> Open(std::span<const uint8_t> envelope, const crypto::BoxKeyPair& recipient, Header* header);

// An envelope opened and checked end to end.
struct OpenedReport {
  Header header;
  v1::ReportContent content;  // the verified signed report
  crypto::Hash content_hash{};  // BLAKE2b-256 of the SignedReport bytes
};
// Open(), then the inner signature (VerifySignedReport), then that inside and outside agree on report id,
// version and device key. Every failure is kVerify (kNotFound: not sealed to this key).
// `content_key`, when given (32 bytes), receives the content key it opened with (zeroed on failure), for
// OpenAgain.
Result<OpenedReport> OpenReport(std::span<const uint8_t> envelope, const crypto::BoxKeyPair& recipient,
                                std::span<uint8_t> content_key = {});
// The same report read again, for a caller that checked it with OpenReport and kept `opened_hash` (the
// BLAKE2b-256 of the envelope bytes OpenReport opened) and the content key it gave: the bytes must hash to
// `opened_hash` and the key be the one the envelope commits to; the signatures are not checked again
// (they were, over these very bytes). The desk reads each report of a large export twice this way rather
// than holding every one of them between its checks.
Result<OpenedReport> OpenAgain(std::span<const uint8_t> envelope, const crypto::Hash& opened_hash,
                               std::span<const uint8_t> content_key);

// Disclosure of one report (the desk's evidence packages, docs/evidence.md): the envelope's content key,
// unwrapped with the organisation's recipient key and checked against the key commitment the device
// signed. It opens this envelope only.
Result<SecretBuffer> ContentKey(std::span<const uint8_t> envelope, const crypto::BoxKeyPair& recipient);
// Opens an envelope with its disclosed content key, with no organisation key: the outer signature, the
// key commitment, the decryption, the inner signature, and that inside and outside agree (as OpenReport).
Result<OpenedReport> OpenWithKey(std::span<const uint8_t> envelope, std::span<const uint8_t> content_key);

// For tests: this thread's secret scratch memory (the content key's and the plaintext's buffers), which
// Seal, Open, OpenReport and OpenWithKey reuse from call to call and zero before they return.
std::vector<std::span<const uint8_t>> ScratchForTesting();

}  // namespace dala::envelope
