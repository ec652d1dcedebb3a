// Attachment manifests: what a sealed envelope says, under the device signature, about each attachment's
// ciphertext (size, chunk size, chunk hashes, root), and where a server and an export keep that file.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/status.h"
#include "dala/v1/report.pb.h"

namespace dala::attachment {

inline constexpr uint32_t kMinChunk = 64 * 1024, kMaxChunk = 16 * 1024 * 1024;

// Checks a manifest's shape and that its root matches its chunk hashes.
Status CheckManifest(const v1::AttachmentManifest& m);

// Where an attachment's ciphertext is kept on the server and in an export's attachment directory:
// hex(device key) "-" hex(attachment id). Devices choose attachment ids, so the device key is part of it.
std::string FileName(std::span<const uint8_t> device_key, std::span<const uint8_t> attachment_id);

}  // namespace dala::attachment
