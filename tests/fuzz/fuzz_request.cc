// Every POST body the server receives is a SignedRequest: VerifyRequest must accept only a request
// signed by the key it names, for some server key, and refuse the rest without crashing.
#include "fuzz_common.h"
#include "format/invite.h"
#include "format/receipt.h"
#include "format/request.h"
#include "protocol/http_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  auto req = protocol::VerifyRequest(std::span<const uint8_t>(data, size));
  if (req.ok() && (req->device_key().size() != 32 || req->server_key().size() != 32)) std::abort();
  return 0;
}
