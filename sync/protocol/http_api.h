// The sync protocol over HTTP: paths, content types and the upload header (docs/protocol.md).
// Shared by the client engine, its transports and dala-server.
#pragma once

#include <cstddef>
#include <string_view>

namespace dala::protocol {

inline constexpr std::string_view kContentType = "application/x-protobuf";
inline constexpr char kPathHealth[] = "/v1/health";
inline constexpr char kPathEnrol[] = "/v1/enrol";
inline constexpr char kPathPush[] = "/v1/push";
inline constexpr char kPathUpload[] = "/v1/upload";
inline constexpr char kUploadHeader[] = "X-Dala-Request";      // base64url(SignedRequest) of an upload
inline constexpr char kUploadContentType[] = "application/octet-stream";
inline constexpr size_t kMaxUploadHeader = 2048;                // bytes of the header's value

}  // namespace dala::protocol
