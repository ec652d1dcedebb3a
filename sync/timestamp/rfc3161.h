// RFC 3161 time-stamps of the server's log heads (docs/protocol.md, "Trusted time"): a time-stamping
// authority (TSA) the organisation trusts signs SHA-256 of a SignedLogHead's bytes with the time it saw
// them. dala-server asks for tokens; the desk verifies them. Not part of the phone library.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/status.h"

namespace dala::rfc3161 {

// A TimeStampReq (DER) for SHA-256(data), with a random nonce, asking for the TSA's certificate.
struct Request {
  std::string der;
  uint64_t nonce = 0;
};
Result<Request> MakeRequest(std::span<const uint8_t> data);

// The TimeStampToken (DER) of a TimeStampResp answering `request` for `data`: granted, for SHA-256 of
// exactly `data`, with the request's nonce. Whether the TSA is to be trusted is the verifier's decision.
Result<std::string> TokenFromResponse(std::span<const uint8_t> response, const Request& request,
                                      std::span<const uint8_t> data);

struct Stamp {
  int64_t time_ms = 0;  // the TSA's genTime (to the second as most TSAs give it)
  std::string tsa;      // the signing certificate's subject, one line
};

// Verifies a TimeStampToken for `data`: its signature by a certificate for time-stamping that chains to
// one of `trusted_pem` (PEM certificates: the TSA's, or its CA), over SHA-256 of exactly `data`.
Result<Stamp> Verify(std::span<const uint8_t> token, std::span<const uint8_t> data, const std::string& trusted_pem);

}  // namespace dala::rfc3161
