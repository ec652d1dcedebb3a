// Where dala-server keeps attachment bytes: a directory (the data directory's attachments/, or one that
// several nodes share: init --blobs DIR) or an S3-compatible bucket (init --blobs s3://...). The database
// records what each attachment must be (size, chunk size, every chunk's hash) and whether it is complete;
// a store holds bytes, and says how many of them, verified chunk by chunk against those hashes, it holds.
//
// Thread-safety: a store's methods may be called from any thread at once; one AttachmentWriter is used
// by one thread at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/status.h"

namespace dala::server {

namespace s3 {
class Client;
}

// What the database records of one attachment: enough to verify its bytes.
struct AttachmentShape {
  uint64_t size = 0;
  uint32_t chunk_size = 0;
  std::string_view chunk_hashes;  // 32 bytes per chunk
};

// Whole chunks from the start of `bytes` (found at `offset` of the attachment) that match their hashes.
uint64_t VerifiedBytes(std::span<const uint8_t> bytes, uint64_t offset, const AttachmentShape& shape);

// The one writer of an attachment (on this node: the core's busy flag; across nodes: an flock on a shared
// directory, and on S3 parts that hold the same bytes whichever node writes them). Chunks come verified
// and in order, each at the end of what was written.
class AttachmentWriter {
 public:
  virtual ~AttachmentWriter() = default;
  // Verified bytes the store held when the writer was opened: appends start there.
  virtual uint64_t held() const = 0;
  // Appends verified bytes at `offset` (the end of what was written). On failure nothing from this call
  // will count, and the writer can be used no more.
  virtual Status Append(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Makes what was appended durable; the durable length. On failure nothing after the last durable length
  // counts, and the writer can be used no more.
  virtual Result<uint64_t> Sync() = 0;
  // Every byte durable: makes the attachment whole where it is read (S3: completes the multipart upload).
  virtual Status Finish() = 0;
};

class AttachmentStore {
 public:
  virtual ~AttachmentStore() = default;
  // For messages: "the directory /srv/x" or "the S3 bucket b at http://...".
  virtual std::string Describe() const = 0;
  // A number that changes when another node changed what is held of this attachment (the directory: its
  // file's size), so that a cached Held() can be used while it stays the same; nullopt: no such number.
  virtual std::optional<uint64_t> Version(const std::string& name) = 0;
  // Verified bytes held, from the start (reads the store).
  virtual Result<uint64_t> Held(const std::string& name, const AttachmentShape& shape) = 0;
  // Opens the attachment for writing. `known`: what this node last knew it held, trusted while Version()
  // still equals it. kBusy: another node is writing it.
  virtual Result<std::unique_ptr<AttachmentWriter>> Open(const std::string& name, const AttachmentShape& shape,
                                                         std::optional<uint64_t> known) = 0;
  // A whole attachment, copied to a local file (export).
  virtual Status CopyTo(const std::string& name, uint64_t size, const std::string& path) = 0;
  // Bytes [offset, offset + length) of a whole attachment (fewer at its end): a desk pulling it.
  virtual Result<std::string> Read(const std::string& name, uint64_t offset, size_t length) = 0;
  // Bytes held, for the storage limit at start; nullopt: count what the database records complete.
  virtual Result<std::optional<uint64_t>> BytesHeld() = 0;
  // Reads the whole attachment and verifies every chunk (dala-server check): the verified bytes from the
  // start (the size if all of it is there and intact).
  virtual Result<uint64_t> Verified(const std::string& name, const AttachmentShape& shape) = 0;
  // Node marks (CheckSharedAttachments): a small file or object named by `token` (hex), beside the
  // attachments and never taken for one.
  virtual Status PutMark(const std::string& token) = 0;
  virtual std::string MarkName(const std::string& token) const = 0;  // where the mark is, for messages
  virtual Result<bool> HasMark(const std::string& token) = 0;
  virtual Status RemoveMark(const std::string& token) = 0;
};

// Nodes on one database must share one attachment store: an upload cut on one node goes on at another, and
// an export or a desk's pull on any node reads what every node received. A node started on a store of its
// own (a shared directory that is not mounted, a data directory copied with its attachments/, another
// bucket or prefix) would keep attachments where no other node sees them. So each node, as it starts,
// checks that the mark the node before it left (its token in the database's meta) is in its store, then
// leaves its own: kState, saying what to do, when the mark is missing. Only on PostgreSQL (the database
// several nodes use); the embedded database has one node.
namespace sql { class Connection; }
Status CheckSharedAttachments(sql::Connection& db, AttachmentStore& store);

// The attachments in a local or shared directory (created if missing).
Result<std::unique_ptr<AttachmentStore>> OpenDirectoryStore(const std::string& dir);

// The attachments in an S3 bucket: s3://BUCKET?endpoint=URL[&region=R][&prefix=P], credentials from the
// environment (s3::CredentialsFromEnvironment). `probe`: write, read and delete a small object first, so
// that a wrong endpoint, bucket or key is found at start rather than at the first upload.
Result<std::unique_ptr<AttachmentStore>> OpenS3Store(const std::string& url, bool probe,
                                                     std::function<void(const char*, int, double)> observe = {});

}  // namespace dala::server
