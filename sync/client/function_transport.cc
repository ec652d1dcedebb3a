#include "client/function_transport.h"

namespace dala::sync {

Result<HttpResponse> FunctionTransport::Post(const std::string& base_url, const HttpRequest& request,
                                             int64_t timeout_ms, const std::string& tls_pin) {
  std::string url = base_url;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += request.path;
  if (!request.is_upload()) return post_(url, request.body, timeout_ms, tls_pin);
  if (!upload_)  // a setup mistake, not the network: no point in retrying now
    return Status(Code::kState, "the app's transport has no upload function (dala_sync_options.transport_upload)");
  return upload_(url, request, timeout_ms, tls_pin);
}

}  // namespace dala::sync
