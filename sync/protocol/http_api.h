// The sync protocol over HTTP: paths, content types and the upload header (docs/protocol.md).
// Shared by the client engine, its transports and dala-server.
#pragma once

#include <cstddef>
#include <string_view>

namespace dala::protocol {

inline constexpr std::string_view kContentType = "application/x-protobuf";
inline constexpr char kPathHealth[] = "/v2/health";
inline constexpr char kPathEnrol[] = "/v2/enrol";
inline constexpr char kPathPush[] = "/v2/push";
inline constexpr char kPathUpload[] = "/v2/upload";
inline constexpr char kPathExport[] = "/v2/export";  // a desk pulling (docs/protocol.md, "Pulling exports")
// Dala 0.1 spoke protocol 1 under /v1/: its phones are told, with 410 Gone, what to do.
inline constexpr std::string_view kPathOldProtocol = "/v1/";
inline constexpr char kOldProtocolMessage[] =
    "this server speaks protocol 2: update the app, then join the organisation with a new invite";  // no name
// An upload's signed request travels as "Authorization: Bearer " + base64url(SignedRequest): a standard
// header, so that nothing on the wire names the product (issue 14, item 7).
inline constexpr char kUploadHeader[] = "Authorization";
inline constexpr std::string_view kUploadScheme = "Bearer ";
inline constexpr char kUploadContentType[] = "application/octet-stream";
inline constexpr size_t kMaxUploadHeader = 2048;                // bytes of the base64url value

}  // namespace dala::protocol
