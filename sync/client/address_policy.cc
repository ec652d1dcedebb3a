#include "client/address_policy.h"

#include <cctype>

namespace dala::sync {

int AddressStrength(std::string_view url) {
  int scheme = url.starts_with("https://") ? 2 : url.starts_with("http://") ? 1 : 0;
  if (scheme == 0) return 0;
  std::string_view rest = url.substr(scheme == 2 ? 8 : 7);
  std::string host(rest.substr(0, rest.find_first_of("/:?#")));
  for (char& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  while (!host.empty() && host.back() == '.') host.pop_back();
  if (host.size() > 6 && host.ends_with(".onion")) return 3;
  return scheme;
}

int NextAddress(const std::vector<std::string>& urls, size_t failed, bool equivalent) {
  if (failed >= urls.size()) return -1;
  const int floor = AddressStrength(urls[failed]);
  for (size_t i = failed + 1; i < urls.size(); ++i)
    if (equivalent || AddressStrength(urls[i]) >= floor) return static_cast<int>(i);
  return -1;
}

}  // namespace dala::sync
