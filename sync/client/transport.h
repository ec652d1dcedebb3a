// What the sync engine (and the desk, pulling exports) needs of an HTTP client: one POST at a time. The
// built-in one is HttpTransport (http_transport.h); an app can bring its own (function_transport.h).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "crypto/crypto.h"

namespace dala::sync {

struct HttpRequest {
  std::string path;  // "/v2/enrol", "/v2/push" (POST application/x-protobuf), "/v2/upload"
  std::string body;
  // Uploads: the value of the Authorization header ("Bearer " + the signed request), and the body as a byte range of the
  // attachment's encrypted file, sent from the file as it is (no copy, no second encryption).
  std::string upload_header;
  std::string file_path;
  uint64_t file_offset = 0, file_length = 0;
  crypto::Hash request_hash{};  // of the SignedRequest bytes: the answer must name it
  bool is_upload() const { return !file_path.empty() || !upload_header.empty(); }
};

struct HttpResponse {
  int status = 0;
  std::string body;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // POSTs body to base_url + path. A failure to reach the server (DNS, connect, reset, timeout) is a
  // non-OK Status; any HTTP answer, even 5xx, is an HttpResponse.
  virtual Result<HttpResponse> Post(const std::string& base_url, const HttpRequest& request, int64_t timeout_ms,
                                    const std::string& tls_pin) = 0;
  // Thread-safe: makes a Post in progress (and later ones, until Reset) fail promptly.
  virtual void Cancel() {}
  virtual void Reset() {}
};

}  // namespace dala::sync
