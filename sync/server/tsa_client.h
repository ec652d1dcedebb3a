// dala-server's client of a time-stamping authority: RFC 3161 over HTTP (a POST of
// application/timestamp-query, answered with application/timestamp-reply). Plain http:// only: the
// answer is signed by the TSA, and the desk checks it; TLS would add nothing it relies on.
#pragma once

#include <string>

#include "base/status.h"

namespace dala::server {

// POSTs `query` (a DER TimeStampReq) to `url` and returns the body of a 200 answer, within `timeout_ms`.
Result<std::string> PostTimeStampQuery(const std::string& url, const std::string& query, int timeout_ms);

// Whether `url` is one PostTimeStampQuery can use (http://HOST[:PORT][/PATH]); else why not.
Status CheckTsaUrl(const std::string& url);

}  // namespace dala::server
