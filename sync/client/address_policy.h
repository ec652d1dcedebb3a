// Which of an invite's addresses a phone may fall back to when one cannot be reached: never to a weaker
// one (an onion service to clearnet, https to http) unless the organisation's signed invite says its
// addresses are equivalent (issue 14, item 6; docs/protocol.md, "Addresses").
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace dala::sync {

// 3: an onion service (end-to-end encrypted and anonymous, whatever the scheme); 2: https; 1: http;
// 0: anything else.
int AddressStrength(std::string_view url);

// The index of the address to try after `failed`, or -1: the next one in the invite's order that is no
// weaker than the failed one (any next one when `equivalent`).
int NextAddress(const std::vector<std::string>& urls, size_t failed, bool equivalent);

}  // namespace dala::sync
