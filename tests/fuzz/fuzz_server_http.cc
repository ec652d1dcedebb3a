// dala-server's request handling as anyone on the network can reach it: any method, path (a desk's export
// requests too), content type and body, and uploads with any Authorization header and body (possibly cut
// short). The first byte picks method, path and content type; for uploads a 16-bit length gives the header,
// the rest is the body.
#include "server_fixture.h"
#include "protocol/http_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  static const char* const kMethods[] = {"POST", "GET", "PUT", "DELETE"};
  static const char* const kPaths[] = {protocol::kPathPush,   protocol::kPathEnrol,  protocol::kPathHealth,
                                       protocol::kPathUpload, protocol::kPathExport, "/",
                                       "/v2/push/../enrol",   "/v1/push"};
  static const std::string_view kTypes[] = {protocol::kContentType, "text/plain"};
  server::ServerCore& server = fuzz::Server();
  fuzz::Input in(data, size);
  const uint8_t sel = in.Byte();
  const char* method = kMethods[sel & 3];
  const std::string_view path = kPaths[(sel >> 2) & 7];
  const std::string_view type = kTypes[(sel >> 5) & 1];
  if (path == protocol::kPathUpload && method == std::string_view("POST")) {
    std::string_view header = in.Bytes(in.U16());
    std::string_view body = in.Rest();
    std::optional<uint64_t> declared;
    if (sel & 0x80) declared = body.size() + 1 + (body.size() & 0xff);  // the connection is cut
    fuzz::CheckAnswer(server.HandleUpload(header, body, declared));
    return 0;
  }
  fuzz::CheckAnswer(server.Handle(method, path, type, in.Rest()));
  return 0;
}
