// dala-server's handling of requests from an enrolled device, behind the signature check: the fuzz
// input is a Request message that is signed here with the fixed (enrolled) device key. The first byte:
// bits 0-1 the path (enrol, push, upload, push), bit 2 keeps the device key as given and bit 3 the server
// key (else both are set to the real ones), bit 4 cuts an upload's connection after its body. Then a
// 16-bit length and the Request; the rest is an upload's body.
#include "server_fixture.h"
#include "base/encoding.h"
#include "format/request.h"
#include "protocol/http_api.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace dala;
  static const crypto::SigningKey device = fuzz::FixedSigningKey(fuzz::kDeviceLabel);
  server::ServerCore& server = fuzz::Server();
  fuzz::Input in(data, size);
  const uint8_t sel = in.Byte();
  std::string_view raw = in.Bytes(in.U16());
  v1::Request req;
  if (!req.ParseFromArray(raw.data(), static_cast<int>(raw.size()))) return 0;
  if (!(sel & 4)) req.set_device_key(device.public_key.data(), 32);
  if (!(sel & 8)) req.set_server_key(server.server_key().data(), 32);
  const std::string signed_request = protocol::SignRequest(device, req);
  switch (sel & 3) {
    case 0:
      fuzz::CheckAnswer(server.Handle("POST", protocol::kPathEnrol, protocol::kContentType, signed_request));
      break;
    case 2: {
      std::string_view body = in.Rest();
      std::optional<uint64_t> declared;
      if (sel & 16) declared = body.size() + 1;
      fuzz::CheckAnswer(server.HandleUpload("Bearer " + encoding::Base64Url(crypto::Bytes(signed_request)), body, declared));
      break;
    }
    default:
      fuzz::CheckAnswer(server.Handle("POST", protocol::kPathPush, protocol::kContentType, signed_request));
  }
  return 0;
}
