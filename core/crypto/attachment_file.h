// The encrypted attachment file (photos, audio, video): written encrypted, never plaintext on disk.
// File format (docs/storage-format.md): secretstream XChaCha20-Poly1305 header (24 bytes), then the
// plaintext in 64 KiB pieces, each pushed as one secretstream message (+17 bytes), the last one (possibly
// empty) tagged FINAL. The encrypted file is exactly what is uploaded; its hash is a chunk tree over
// fixed-size upload chunks, so a server can verify each chunk as it arrives (see AttachmentManifest).
#pragma once

#include <sodium.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/id.h"
#include "base/secret.h"
#include "base/status.h"
#include "crypto/chunk_tree.h"
#include "crypto/crypto.h"

namespace dala::attachment {

inline constexpr size_t kPiece = 64 * 1024;            // plaintext bytes per secretstream message
inline constexpr uint64_t kMaxCiphertext = 64ull << 30;  // 64 GiB

// Ciphertext size of an attachment file holding `plain` plaintext bytes (padding included).
uint64_t CiphertextSize(uint64_t plain);
// The plaintext an attachment of `size` bytes is padded to with zeros before encryption: its Padmé length,
// at least 4 KiB (docs/storage-format.md, "Attachment files"). Files written before padding hold `size`.
uint64_t PaddedSize(uint64_t size);

// Everything the store records when a capture finishes.
struct Finished {
  AttachmentId id{};
  std::string mime;
  uint64_t size = 0;             // plaintext
  crypto::Hash plaintext_hash{};
  uint64_t ciphertext_size = 0;
  crypto::Hash root{};
  std::string chunk_hashes;
  SecretBuffer key;              // 32 bytes
};

// Streams plaintext in, writes ciphertext to `path` (created 0600, must not exist). Not thread-safe.
class Writer {
 public:
  static Result<std::unique_ptr<Writer>> Create(const std::string& path, std::string mime);
  // For bytes carried over unchanged from another attachment file, whose Reader authenticated them to the
  // end before Finish is called (a re-key): `plaintext_hash`, recorded when that file was written, is
  // recorded as their hash, not computed again.
  static Result<std::unique_ptr<Writer>> CreateCarryingOver(const std::string& path, std::string mime,
                                                            const crypto::Hash& plaintext_hash);
  ~Writer();  // an unfinished writer removes its file
  Status Write(std::span<const uint8_t> data);  // the attachment's bytes (counted; hashed unless carried over)
  // Encrypts the rest, makes the file durable and returns what to record. The writer is done after it.
  Result<Finished> Finish();

 private:
  Writer() = default;
  Status Append(std::span<const uint8_t> data);  // into pieces, encrypted as they fill (data and padding)
  Status Put(const uint8_t* data, size_t n, uint8_t tag);
  std::string path_;
  int fd_ = -1;
  bool done_ = false;
  bool hash_plaintext_ = true;
  Finished f_;
  crypto_secretstream_xchacha20poly1305_state ss_;
  crypto_generichash_state plain_hash_;
  ChunkTree tree_;
  SecretBuffer piece_{kPiece};
  size_t fill_ = 0;
  uint64_t plain_size_ = 0;
  uint64_t written_ = 0;                 // bytes written to the file
  [[maybe_unused]] uint64_t started_ = 0;  // of those, handed to the disk so far (Put; Linux, Android 26+)
  std::vector<uint8_t> out_;
};

// Decrypts an attachment file piece by piece. Any truncation, reordering, tampering or data after the end
// fails with kVerify; at the end the plaintext size and hash must match what was recorded.
// With verify_root, the ciphertext's chunk tree is checked against `root` as well (the desk does).
class Reader {
 public:
  struct Expect {
    uint64_t size = 0;
    crypto::Hash plaintext_hash{};
    bool check_root = false;
    uint32_t chunk_size = kUploadChunk;
    crypto::Hash root{};
    // false: the plaintext's hash is neither computed nor checked (the caller checks it otherwise).
    bool check_plaintext_hash = true;
  };
  static Result<std::unique_ptr<Reader>> Open(const std::string& path, std::span<const uint8_t> key, Expect expect);
  ~Reader();
  // Copies up to out.size() plaintext bytes; 0 means the end was reached and everything verified.
  Result<size_t> Read(std::span<uint8_t> out);

 private:
  Reader() = default;
  Status NextPiece();
  std::FILE* f_ = nullptr;
  Expect expect_;
  crypto_secretstream_xchacha20poly1305_state ss_;
  crypto_generichash_state plain_hash_;
  ChunkTree tree_;
  std::vector<uint8_t> in_;
  SecretBuffer piece_{kPiece};
  size_t piece_len_ = 0, piece_pos_ = 0;  // of the attachment's bytes in the piece (padding excluded)
  uint64_t plain_ = 0;                     // plaintext decrypted so far, padding included
  uint64_t total_ = 0;                     // the file's plaintext: expect.size, or PaddedSize(expect.size)
  bool final_ = false, verified_ = false;
};

// BLAKE2b-256 of bytes [offset, offset + length) of a file (an upload chunk), read in pieces.
Result<crypto::Hash> HashFileRange(const std::string& path, uint64_t offset, uint64_t length);
// The file's size, or -1 when it cannot be read.
int64_t FileSize(const std::string& path);

// Plaintext from a file on disk into a writer, kPiece at a time.
Status CopyFileInto(const std::string& source, Writer& writer);

}  // namespace dala::attachment
