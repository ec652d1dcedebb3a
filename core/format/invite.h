// Invites: what a phone scans to join one server of an organisation (docs/protocol.md, "Invites").
// Made at the desk and signed by the organisation's root; the text form is "DALA2-" + base64url(InviteCode):
// the signed invite and the secret of its enrolment key. Nothing here does I/O.
#pragma once

#include <string>
#include <string_view>

#include "base/secret.h"
#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"

namespace dala::protocol {

inline constexpr std::string_view kDomainInvite = "dala/v2/invite";
inline constexpr std::string_view kDomainEnrol = "dala/v2/enrol";
inline constexpr std::string_view kInvitePrefix = "DALA2-";

// A SignedInvite whose signature, statement and sizes were checked.
struct CheckedInvite {
  v1::Invite invite;
  v1::OrgStatement statement;    // the statement it carries, verified against the same root
  crypto::PublicKey root{};
  std::string signed_invite;     // the SignedInvite bytes
};

// Fills organisation_key and enrol_key (a new key), signs with `root` and returns the invite text.
// `invite` carries urls, server_key, uses, expires_ms, issued_ms, tls_pin and statement.
std::string EncodeInvite(v1::Invite invite, const crypto::SigningKey& root);

// Checks a SignedInvite: signed by the root it names (and, when `expected_root` is given, that root is
// the expected one), its statement signed by the same root and authorising the invite's server key at
// issued_ms, at least one valid address, one use, 32-byte keys. Not expiry or use count: the server decides
// those at enrolment, and join refuses an invite already past its expiry.
// kVerify: altered or another organisation's; kInvalidArgument: malformed.
Result<CheckedInvite> CheckSignedInvite(std::string_view signed_invite,
                                        const crypto::PublicKey* expected_root = nullptr);

// The invite text: CheckSignedInvite, and the enrolment secret (a 32-byte seed) that matches enrol_key.
struct DecodedInvite {
  CheckedInvite checked;
  SecretBuffer enrol_secret;
};
Result<DecodedInvite> DecodeInvite(std::string_view text);

// The proof that the holder of an invite enrols `device_key` at `server_key`: Ed25519 by the invite's
// enrolment key over device_key || server_key, domain "dala/v2/enrol".
std::string EnrolProof(const SecretBuffer& enrol_secret, std::span<const uint8_t> device_key,
                       std::span<const uint8_t> server_key);
bool VerifyEnrolProof(const v1::Invite& invite, std::span<const uint8_t> device_key,
                      std::span<const uint8_t> server_key, std::string_view proof);

// A server address an invite may carry: http(s)://HOST[:PORT][/PATH], HOST a name or [IPv6], PORT 1..65535,
// nothing but printable ASCII, no user info. CheckSignedInvite refuses an invite with any other.
Status CheckServerUrl(std::string_view url);

}  // namespace dala::protocol
