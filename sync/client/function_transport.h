// A Transport made of two functions: how an app's own HTTP stack (iOS background URLSession, OkHttp, the
// C API's callbacks) posts a request and uploads a byte range of a file. The engine sees no difference.
#pragma once

#include <functional>
#include <string>

#include "client/sync_engine.h"

namespace dala::sync {

class FunctionTransport : public Transport {
 public:
  // url is base_url + request path; tls_pin is the pin the invite carries (may be empty).
  using PostFn = std::function<Result<HttpResponse>(const std::string& url, const std::string& body,
                                                  int64_t timeout_ms, const std::string& tls_pin)>;
  using UploadFn = std::function<Result<HttpResponse>(const std::string& url, const HttpRequest& request,
                                                    int64_t timeout_ms, const std::string& tls_pin)>;
  // upload may be empty: reports with attachments then wait, with an error saying why.
  FunctionTransport(PostFn post, UploadFn upload) : post_(std::move(post)), upload_(std::move(upload)) {}
  Result<HttpResponse> Post(const std::string& base_url, const HttpRequest& request, int64_t timeout_ms,
                            const std::string& tls_pin) override;

 private:
  PostFn post_;
  UploadFn upload_;
};

}  // namespace dala::sync
