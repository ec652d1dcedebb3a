#include "crypto/attachment_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fsutil.h"
#include "base/padding.h"
#include "crypto/chunk_tree.h"

namespace dala::attachment {
namespace {

constexpr size_t kHeader = crypto_secretstream_xchacha20poly1305_HEADERBYTES;
constexpr size_t kAbytes = crypto_secretstream_xchacha20poly1305_ABYTES;

}  // namespace

uint64_t PaddedSize(uint64_t size) { return PadmeLength(size, 4096); }

uint64_t CiphertextSize(uint64_t plain) {
  // The last piece is the FINAL one: it holds 1..kPiece bytes, or 0 for an empty attachment.
  uint64_t pieces = plain == 0 ? 1 : (plain + kPiece - 1) / kPiece;
  return kHeader + plain + pieces * kAbytes;
}


// --- Writer ---

Result<std::unique_ptr<Writer>> Writer::Create(const std::string& path, std::string mime) {
  std::unique_ptr<Writer> w(new Writer);
  w->fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (w->fd_ < 0) return fs::FromErrno(errno, "create", path);
  w->path_ = path;
  w->f_.mime = std::move(mime);
  randombytes_buf(w->f_.id.data(), w->f_.id.size());
  w->f_.key = SecretBuffer(crypto_secretstream_xchacha20poly1305_KEYBYTES);
  crypto_secretstream_xchacha20poly1305_keygen(w->f_.key.data());
  uint8_t header[kHeader];
  crypto_secretstream_xchacha20poly1305_init_push(&w->ss_, header, w->f_.key.data());
  crypto_generichash_init(&w->plain_hash_, nullptr, 0, 32);
  w->out_.resize(kPiece + kAbytes);
  w->tree_.Update({header, sizeof header});
  DALA_RETURN_IF_ERROR(fs::WriteAll(w->fd_, header, sizeof header, path));
  w->written_ = sizeof header;
  return w;
}

Result<std::unique_ptr<Writer>> Writer::CreateCarryingOver(const std::string& path, std::string mime,
                                                           const crypto::Hash& plaintext_hash) {
  DALA_ASSIGN_OR_RETURN(std::unique_ptr<Writer> w, Create(path, std::move(mime)));
  w->hash_plaintext_ = false;
  w->f_.plaintext_hash = plaintext_hash;
  return w;
}

Writer::~Writer() {
  if (fd_ >= 0) ::close(fd_);
  if (!done_ && !path_.empty()) ::unlink(path_.c_str());
  sodium_memzero(&ss_, sizeof ss_);
}

Status Writer::Put(const uint8_t* data, size_t n, uint8_t tag) {
  unsigned long long clen = 0;
  crypto_secretstream_xchacha20poly1305_push(&ss_, out_.data(), &clen, data, n, nullptr, 0, tag);
  tree_.Update({out_.data(), static_cast<size_t>(clen)});
  DALA_RETURN_IF_ERROR(fs::WriteAll(fd_, out_.data(), static_cast<size_t>(clen), path_));
  written_ += clen;
#if defined(__linux__) && (!defined(__ANDROID__) || __ANDROID_API__ >= 26)  // Bionic has it from API 26
  // Starts writing what is written so far to the disk, without waiting for it, so that Finish's fsync
  // finds little left to wait for (a large file otherwise reaches the disk only then). Only a hint.
  constexpr uint64_t kWriteBehind = 8 << 20;
  if (written_ - started_ >= kWriteBehind) {
    (void)::sync_file_range(fd_, static_cast<off_t>(started_), static_cast<off_t>(written_ - started_),
                            SYNC_FILE_RANGE_WRITE);
    started_ = written_;
  }
#endif
  return Status::Ok();
}

Status Writer::Write(std::span<const uint8_t> data) {
  if (done_ || fd_ < 0) return {Code::kState, "this attachment writer is finished"};
  // Padded by up to ~12%, the file must still fit under kMaxCiphertext to be delivered.
  if (plain_size_ + data.size() > kMaxCiphertext / 9 * 8)
    return {Code::kInvalidArgument, "the attachment is larger than Dala accepts (56 GiB)"};
  if (hash_plaintext_) crypto_generichash_update(&plain_hash_, data.data(), data.size());
  plain_size_ += data.size();
  return Append(data);
}

Status Writer::Append(std::span<const uint8_t> data) {
  // A full piece is written only once more data follows, so the FINAL piece is never a full piece that
  // already went out as a plain message.
  while (!data.empty()) {
    if (fill_ == kPiece) {
      DALA_RETURN_IF_ERROR(Put(piece_.data(), kPiece, 0));
      fill_ = 0;
    }
    if (fill_ == 0 && data.size() > kPiece) {  // whole pieces straight from the caller's buffer
      DALA_RETURN_IF_ERROR(Put(data.data(), kPiece, 0));
      data = data.subspan(kPiece);
      continue;
    }
    size_t take = std::min(kPiece - fill_, data.size());
    std::memcpy(piece_.data() + fill_, data.data(), take);
    fill_ += take;
    data = data.subspan(take);
  }
  return Status::Ok();
}

Result<Finished> Writer::Finish() {
  if (done_ || fd_ < 0) return Status(Code::kState, "this attachment writer is finished");
  // Zeros up to the padded size (encrypted like the rest): the file's size says little about the
  // attachment's.
  static const std::vector<uint8_t> kZeros(kPiece, 0);
  for (uint64_t pad = PaddedSize(plain_size_) - plain_size_; pad > 0;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(pad, kZeros.size()));
    DALA_RETURN_IF_ERROR(Append({kZeros.data(), n}));
    pad -= n;
  }
  // The writer keeps a full piece until it knows more follows, so what is left here is 0..kPiece bytes.
  DALA_RETURN_IF_ERROR(Put(piece_.data(), fill_, crypto_secretstream_xchacha20poly1305_TAG_FINAL));
  fill_ = 0;
  if (::fsync(fd_) != 0) return fs::FromErrno(errno, "sync", path_);
  ::close(fd_);
  fd_ = -1;
  auto slash = path_.rfind('/');
  DALA_RETURN_IF_ERROR(fs::SyncDirectory(slash == std::string::npos ? "." : path_.substr(0, slash)));
  f_.size = plain_size_;
  if (hash_plaintext_) crypto_generichash_final(&plain_hash_, f_.plaintext_hash.data(), f_.plaintext_hash.size());
  f_.root = tree_.Finish();
  f_.ciphertext_size = tree_.size();
  f_.chunk_hashes = tree_.chunk_hashes();
  done_ = true;
  return std::move(f_);
}

// --- Reader ---

Result<std::unique_ptr<Reader>> Reader::Open(const std::string& path, std::span<const uint8_t> key, Expect expect) {
  if (key.size() != crypto_secretstream_xchacha20poly1305_KEYBYTES)
    return Status(Code::kCorrupt, "an attachment key is damaged");
  std::unique_ptr<Reader> r(new Reader);
  r->f_ = std::fopen(path.c_str(), "rbe");
  if (r->f_ == nullptr) {
    if (errno == ENOENT) return Status(Code::kNotFound, "the attachment's file is missing");
    return fs::FromErrno(errno, "open", path);
  }
  r->expect_ = expect;
  // Padded (PaddedSize) or, written before padding, not: the file's size tells which layout to read. A
  // file of another size is read as the nearer one and fails there, naming what is wrong.
  struct stat sb;
  if (::fstat(fileno(r->f_), &sb) != 0) return fs::FromErrno(errno, "inspect", path);
  const uint64_t padded = PaddedSize(expect.size);
  r->total_ = static_cast<uint64_t>(sb.st_size) > CiphertextSize(expect.size) ? padded : expect.size;
  r->tree_ = ChunkTree(expect.chunk_size);
  uint8_t header[kHeader];
  if (std::fread(header, 1, sizeof header, r->f_) != sizeof header)
    return Status(Code::kVerify, "the attachment file is truncated (no header)");
  r->tree_.Update({header, sizeof header});
  if (crypto_secretstream_xchacha20poly1305_init_pull(&r->ss_, header, key.data()) != 0)
    return Status(Code::kVerify, "the attachment file's header is invalid");
  crypto_generichash_init(&r->plain_hash_, nullptr, 0, 32);
  r->in_.resize(kPiece + kAbytes);
  return r;
}

Reader::~Reader() {
  if (f_ != nullptr) std::fclose(f_);
  sodium_memzero(&ss_, sizeof ss_);
}

// The recorded size fixes the layout: every piece but the last holds kPiece bytes, the last (FINAL) one
// the rest. Reading exactly that much tells truncation, reordering and trailing data apart.
Status Reader::NextPiece() {
  const uint64_t left = total_ - plain_;
  const bool last = left <= kPiece;
  const size_t want = static_cast<size_t>(last ? left : kPiece) + kAbytes;
  size_t n = std::fread(in_.data(), 1, want, f_);
  if (std::ferror(f_)) return {Code::kIo, "reading the attachment file failed"};
  if (n < want) return {Code::kVerify, "the attachment file is truncated (its end is missing)"};
  if (expect_.check_root) tree_.Update({in_.data(), n});  // hashing costs as much as decrypting: only when checked
  unsigned long long mlen = 0;
  uint8_t tag = 0;
  if (crypto_secretstream_xchacha20poly1305_pull(&ss_, piece_.data(), &mlen, &tag, in_.data(), n, nullptr, 0) != 0)
    return {Code::kVerify, "the attachment file was altered or reordered (a piece failed authentication)"};
  const bool is_final = tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL;
  if (is_final != last)
    return {Code::kVerify, is_final ? "the attachment file is truncated (it ends early)"
                                    : "the attachment file does not end where its recorded size says (altered)"};
  if (last) {
    final_ = true;
    if (std::fgetc(f_) != EOF) return {Code::kVerify, "the attachment file has data after its end (altered)"};
  }
  // The attachment's bytes, then (in the last pieces) zeros that must be zeros.
  const uint64_t real = std::min<uint64_t>(mlen, expect_.size - std::min(plain_, expect_.size));
  if (real < mlen && !sodium_is_zero(piece_.data() + real, static_cast<size_t>(mlen - real)))
    return {Code::kVerify, "the attachment file's padding is not zeros (altered)"};
  if (expect_.check_plaintext_hash) crypto_generichash_update(&plain_hash_, piece_.data(), static_cast<size_t>(real));
  plain_ += mlen;
  piece_len_ = static_cast<size_t>(real);
  piece_pos_ = 0;
  return Status::Ok();
}

Result<size_t> Reader::Read(std::span<uint8_t> out) {
  if (out.empty()) return Status(Code::kInvalidArgument, "the read buffer is empty");
  while (piece_pos_ == piece_len_) {
    if (final_) {
      if (!verified_) {
        if (plain_ != total_)
          return Status(Code::kVerify, "the attachment's size differs from what was recorded (altered)");
        crypto::Hash h;
        crypto_generichash_final(&plain_hash_, h.data(), h.size());
        if (expect_.check_plaintext_hash && h != expect_.plaintext_hash)
          return Status(Code::kVerify, "the attachment's plaintext hash differs from what was recorded (altered)");
        if (expect_.check_root && tree_.Finish() != expect_.root)
          return Status(Code::kVerify, "the attachment's ciphertext hash differs from the signed one (altered)");
        verified_ = true;
      }
      return size_t{0};
    }
    DALA_RETURN_IF_ERROR(NextPiece());
  }
  size_t n = std::min(out.size(), piece_len_ - piece_pos_);
  std::memcpy(out.data(), piece_.data() + piece_pos_, n);
  piece_pos_ += n;
  return n;
}

Result<crypto::Hash> HashFileRange(const std::string& path, uint64_t offset, uint64_t length) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fs::FromErrno(errno, "open", path);
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, 32);
  std::vector<uint8_t> buf(kPiece);
  while (length > 0) {
    ssize_t n = ::pread(fd, buf.data(), std::min<uint64_t>(length, buf.size()), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return Status(Code::kVerify, "the attachment file is shorter than recorded");
    }
    crypto_generichash_update(&st, buf.data(), static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
    length -= static_cast<uint64_t>(n);
  }
  ::close(fd);
  crypto::Hash h;
  crypto_generichash_final(&st, h.data(), h.size());
  return h;
}

int64_t FileSize(const std::string& path) {
  struct stat sb;
  return ::stat(path.c_str(), &sb) == 0 ? static_cast<int64_t>(sb.st_size) : -1;
}

Status CopyFileInto(const std::string& source, Writer& writer) {
  int fd = ::open(source.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fs::FromErrno(errno, "open", source);
  std::vector<uint8_t> buf(kPiece);
  Status st = Status::Ok();
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      st = fs::FromErrno(errno, "read", source);
      break;
    }
    if (n == 0) break;
    st = writer.Write({buf.data(), static_cast<size_t>(n)});
    if (!st.ok()) break;
  }
  sodium_memzero(buf.data(), buf.size());
  ::close(fd);
  return st;
}

}  // namespace dala::attachment
