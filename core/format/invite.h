// Invites: what a phone scans to join an organisation's server (docs/protocol.md, "Invites").
// Format: "DALA1-" + base64url(SignedInvite), signed by the server key it names.
#pragma once

#include <string>
#include <string_view>

#include "base/status.h"
#include "crypto/crypto.h"
#include "dala/v1/sync.pb.h"

namespace dala::protocol {

inline constexpr std::string_view kDomainInvite = "dala/v1/invite";
inline constexpr std::string_view kInvitePrefix = "DALA1-";

// "DALA1-" + base64url(SignedInvite).
std::string EncodeInvite(const v1::Invite& invite, const crypto::SigningKey& server);
// Parses and checks the server's signature and field sizes (not expiry or use count: the server decides
// those at enrolment, and join refuses an invite already past its expiry).
Result<v1::Invite> DecodeInvite(std::string_view text);

// A server address an invite may carry: http(s)://HOST[:PORT][/PATH], HOST a name or [IPv6], PORT 1..65535,
// nothing but printable ASCII, no user info. DecodeInvite refuses an invite with any other.
Status CheckServerUrl(std::string_view url);

}  // namespace dala::protocol
