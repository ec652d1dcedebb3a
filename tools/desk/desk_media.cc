#include "desk/desk_media.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/fsutil.h"
#include "crypto/attachment_file.h"

namespace dala::desk {
namespace {

using State = crypto_secretstream_xchacha20poly1305_state;
constexpr uint64_t kHeader = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr uint64_t kAbytes = crypto_secretstream_xchacha20poly1305_ABYTES;
constexpr uint64_t kPiece = attachment::kPiece;

}  // namespace

std::string MediaExtension(std::string_view mime) {
  static const std::pair<const char*, const char*> kKnown[] = {
      {"video/mp4", ".mp4"},  {"video/webm", ".webm"}, {"video/quicktime", ".mov"},      {"image/jpeg", ".jpg"},
      {"image/png", ".png"},  {"image/gif", ".gif"},   {"image/webp", ".webp"},         {"image/heic", ".heic"},
      {"audio/ogg", ".ogg"},  {"audio/mpeg", ".mp3"},  {"audio/mp4", ".m4a"},           {"audio/aac", ".aac"},
      {"audio/wav", ".wav"},  {"text/plain", ".txt"},  {"application/pdf", ".pdf"}};
  for (const auto& [m, e] : kKnown)
    if (mime == m) return e;
  return ".bin";
}

Result<std::unique_ptr<MediaReader>> MediaReader::Open(const std::string& path, std::span<const uint8_t> key,
                                                        uint64_t size) {
  if (key.size() != crypto_secretstream_xchacha20poly1305_KEYBYTES)
    return Status(Code::kCorrupt, "an attachment key is damaged");
  std::unique_ptr<MediaReader> r(new MediaReader);
  r->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (r->fd_ < 0) return fs::FromErrno(errno, "could not open", path);
  struct stat sb;
  if (::fstat(r->fd_, &sb) != 0) return fs::FromErrno(errno, "could not inspect", path);
  const uint64_t file = static_cast<uint64_t>(sb.st_size);
  // Padded or (written before padding) not: the file's size tells which, as attachment::Reader reads it.
  r->size_ = size;
  r->total_ = file > attachment::CiphertextSize(size) ? attachment::PaddedSize(size) : size;
  if (file != attachment::CiphertextSize(r->total_))
    return Status(Code::kVerify, "the attachment file's size does not match its recorded size (altered)");
  r->pieces_ = r->total_ == 0 ? 1 : (r->total_ + kPiece - 1) / kPiece;
  uint8_t header[kHeader];
  if (::pread(r->fd_, header, kHeader, 0) != static_cast<ssize_t>(kHeader))
    return Status(Code::kVerify, "the attachment file is truncated (no header)");
  r->states_ = SecretBuffer(static_cast<size_t>(r->pieces_) * sizeof(State));
  auto* first = reinterpret_cast<State*>(r->states_.data());
  if (crypto_secretstream_xchacha20poly1305_init_pull(first, header, key.data()) != 0)
    return Status(Code::kVerify, "the attachment file's header is invalid");
  r->known_ = 1;
  r->piece_ = SecretBuffer(kPiece);
  r->in_.resize(kPiece + kAbytes);
  return r;
}

MediaReader::~MediaReader() {
  if (fd_ >= 0) ::close(fd_);
}

Status MediaReader::Decrypt(uint64_t piece) {
  if (static_cast<int64_t>(piece) == cached_) return Status::Ok();
  auto* states = reinterpret_cast<State*>(states_.data());
  // The state before `piece`: from the nearest known one, decrypting (and so authenticating) the pieces
  // between, each of which leaves the state for the next.
  for (uint64_t i = std::min(known_ - 1, piece); i <= piece; ++i) {
    const bool last = i + 1 == pieces_;
    const uint64_t len = last ? total_ - i * kPiece : kPiece;
    const size_t want = static_cast<size_t>(len + kAbytes);
    const off_t at = static_cast<off_t>(kHeader + i * (kPiece + kAbytes));
    if (::pread(fd_, in_.data(), want, at) != static_cast<ssize_t>(want))
      return Status(Code::kVerify, "the attachment file is truncated");
    State st;
    std::memcpy(&st, &states[i], sizeof st);
    unsigned long long mlen = 0;
    uint8_t tag = 0;
    const int rc = crypto_secretstream_xchacha20poly1305_pull(&st, piece_.data(), &mlen, &tag, in_.data(), want,
                                                              nullptr, 0);
    if (rc != 0 || mlen != len || (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) != last) {
      sodium_memzero(&st, sizeof st);
      cached_ = -1;
      return Status(Code::kVerify, "the attachment file was altered (a piece failed authentication)");
    }
    if (!last && i + 1 >= known_) {
      std::memcpy(&states[i + 1], &st, sizeof st);
      known_ = i + 2;
    }
    sodium_memzero(&st, sizeof st);
    cached_ = static_cast<int64_t>(i);
    cached_len_ = static_cast<size_t>(len);
  }
  return Status::Ok();
}

Result<size_t> MediaReader::ReadAt(uint64_t offset, std::span<uint8_t> out) {
  std::lock_guard lock(mu_);
  if (offset >= size_ || out.empty()) return size_t{0};
  const uint64_t piece = offset / kPiece;
  DALA_RETURN_IF_ERROR(Decrypt(piece));
  const uint64_t within = offset - piece * kPiece;
  const uint64_t n = std::min<uint64_t>({out.size(), cached_len_ - within, size_ - offset});
  std::memcpy(out.data(), piece_.data() + within, static_cast<size_t>(n));
  return static_cast<size_t>(n);
}

}  // namespace dala::desk
