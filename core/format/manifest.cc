#include "format/manifest.h"

#include <cstring>

#include "base/encoding.h"
#include "crypto/attachment_file.h"
#include "crypto/chunk_tree.h"

namespace dala::attachment {

Status CheckManifest(const v1::AttachmentManifest& m) {
  if (m.attachment_id().size() != 16 || m.root().size() != 32)
    return {Code::kVerify, "an attachment manifest has fields of the wrong size"};
  if (m.chunk_size() < kMinChunk || m.chunk_size() > kMaxChunk)
    return {Code::kVerify, "an attachment manifest has an unsupported chunk size"};
  if (m.size() < CiphertextSize(0) || m.size() > kMaxCiphertext)
    return {Code::kVerify, "an attachment manifest has an impossible size"};
  if (m.chunk_hashes().size() != 32 * ChunkCount(m.size(), m.chunk_size()))
    return {Code::kVerify, "an attachment manifest lists the wrong number of chunk hashes"};
  crypto::Hash root = ChunkTree::Root(m.chunk_size(), m.size(), m.chunk_hashes());
  if (std::memcmp(root.data(), m.root().data(), 32) != 0)
    return {Code::kVerify, "an attachment manifest's root does not match its chunk hashes"};
  return Status::Ok();
}

std::string FileName(std::span<const uint8_t> device_key, std::span<const uint8_t> attachment_id) {
  return encoding::ToHex(device_key) + "-" + encoding::ToHex(attachment_id);
}

}  // namespace dala::attachment
