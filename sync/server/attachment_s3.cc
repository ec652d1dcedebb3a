// Attachments in an S3-compatible bucket. Each attachment is one object, ATTACHMENTS/NAME, written as a
// multipart upload whose parts hold fixed ranges of it (part n: bytes [(n-1)P, nP), P fixed by the
// attachment's size and chunk size), so that whichever node uploads a part writes the same bytes into it.
// S3 takes parts of at least 5 MiB, but a phone's connection may be cut after any chunk: the verified
// bytes after the last whole part are kept in a small object UPLOADS/NAME.tail, written again at the end of
// each request, and read back (and verified again) by whichever node resumes. A small attachment sent in
// one request is one PUT.
//
// What the bucket holds is read again whenever a node opens an attachment (the parts listed, the tail
// verified chunk by chunk against the manifest), so nodes share no state but the bucket and the database.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <future>
#include <mutex>
#include <vector>

#include "crypto/crypto.h"
#include "server/attachment_store.h"
#include "server/s3/s3_client.h"

namespace dala::server {
namespace {

constexpr uint64_t kMinPart = 5ull << 20;      // S3's smallest part (but the last)
constexpr uint64_t kTargetPart = 8ull << 20;   // a part per 8 MiB: few requests, little memory per upload
constexpr uint64_t kMaxParts = 10000;          // S3's most parts per upload
constexpr size_t kPartsInFlight = 3;            // parts of one upload on their way to the store at once

// The part size of an attachment: a whole number of chunks, at least 8 MiB, few enough parts.
uint64_t PartSize(const AttachmentShape& shape) {
  const uint64_t chunk = std::max<uint64_t>(shape.chunk_size, 1);
  uint64_t want = std::max({kTargetPart, kMinPart, (shape.size + kMaxParts - 1) / kMaxParts});
  return (want + chunk - 1) / chunk * chunk;
}

// What the bucket holds of one attachment.
struct Held {
  bool whole = false;              // the object is there with the attachment's size
  std::string upload_id;           // the open multipart upload with the most parts (empty: none)
  std::vector<s3::Part> parts;     // its parts 1..k, each whole
  uint64_t parts_end = 0;          // k * part size (or the size, if the last part is there)
  std::vector<uint8_t> tail;       // verified bytes after parts_end, from the tail object
  std::vector<std::string> others; // other open uploads of the same object (abandoned by a node)
  uint64_t bytes() const { return parts_end + tail.size(); }
};

class S3Store;

// Part-sized buffers kept between uploads: a part's bytes land in memory that is already mapped, instead of
// fresh pages the kernel must fault in and zero (7% of the server's CPU in an upload, measured). At most
// kKept buffers of at least a part's smallest size are kept; others are freed when given back. Neither
// call allocates but Take's reservation.
class PartBuffers {
 public:
  PartBuffers() { kept_.reserve(kKept); }
  std::vector<uint8_t> Take(size_t capacity) {
    std::vector<uint8_t> b;
    if (capacity == 0) return b;
    {
      std::lock_guard lock(mu_);
      if (!kept_.empty()) {
        b = std::move(kept_.back());
        kept_.pop_back();
      }
    }
    b.clear();
    b.reserve(capacity);
    return b;
  }
  void Give(std::vector<uint8_t> b) noexcept {
    if (b.capacity() < kMinPart) return;
    std::lock_guard lock(mu_);
    if (kept_.size() < kKept) kept_.push_back(std::move(b));
  }

 private:
  static constexpr size_t kKept = kPartsInFlight + 1;  // one upload's parts in flight and its tail
  std::mutex mu_;
  std::vector<std::vector<uint8_t>> kept_;
};

// Parts go out in the background while the next ones fill, a few at once (kPartsInFlight: memory is about
// that many parts per upload), so that receiving from the phone and sending to the store overlap, and the
// store takes parts side by side as it would from any S3 client.
class S3Writer final : public AttachmentWriter {
 public:
  S3Writer(s3::Client& client, PartBuffers& buffers, std::string key, std::string tail_key, AttachmentShape shape,
           std::string hashes, Held held)
      : client_(client), buffers_(buffers), key_(std::move(key)), tail_key_(std::move(tail_key)), hashes_(std::move(hashes)),
        shape_{shape.size, shape.chunk_size, hashes_}, part_(PartSize(shape_)), s_(std::move(held)),
        held_(s_.whole ? shape_.size : s_.bytes()), tail_kept_(s_.tail.size()) {}

  ~S3Writer() override { buffers_.Give(std::move(s_.tail)); }  // (the parts in flight are waited for after)

  uint64_t held() const override { return held_; }

  Status Append(uint64_t offset, std::span<const uint8_t> data) override {
    if (failed_ || s_.whole || offset != Written() || offset + data.size() > shape_.size)
      return Status(Code::kState, "an attachment write out of order");
    // Room for the tail to fill to a whole part (or to the end) without moving again.
    if (const uint64_t room = std::min<uint64_t>(part_, shape_.size - (Written() - s_.tail.size()));
        s_.tail.capacity() < room) {
      std::vector<uint8_t> b = buffers_.Take(room);
      b.assign(s_.tail.begin(), s_.tail.end());
      buffers_.Give(std::exchange(s_.tail, std::move(b)));
    }
    s_.tail.insert(s_.tail.end(), data.begin(), data.end());
    while (s_.tail.size() >= part_) DALA_RETURN_IF_ERROR(StartPart(part_));
    return Status::Ok();
  }

  Result<uint64_t> Sync() override {
    DALA_RETURN_IF_ERROR(WaitForPart());
    if (failed_) return Status(Code::kIo, "the S3 store failed earlier in this upload");
    if (s_.whole) return shape_.size;
    if (s_.bytes() == shape_.size) {
      DALA_RETURN_IF_ERROR(Complete());
      return shape_.size;
    }
    if (s_.tail.size() > tail_kept_) {
      DALA_RETURN_IF_ERROR(Fail(client_.Put(tail_key_, s_.tail)));
      tail_kept_ = s_.tail.size();
    }
    return s_.parts_end + tail_kept_;
  }

  Status Finish() override {
    DALA_RETURN_IF_ERROR(WaitForPart());
    if (s_.whole) return Status::Ok();
    if (failed_ || s_.bytes() != shape_.size) return Status(Code::kState, "the attachment is not all here");
    return Complete();
  }

 private:
  Status Fail(Status st) {
    if (!st.ok()) failed_ = true;
    return st;
  }

  uint64_t Written() const {
    uint64_t sending = 0;
    for (const auto& f : in_flight_) sending += f.bytes.size();
    return s_.parts_end + sending + s_.tail.size();
  }

  // The first `len` bytes of the tail become the next part, sent in the background (once fewer than
  // kPartsInFlight are on their way).
  Status StartPart(uint64_t len) {
    if (in_flight_.size() >= kPartsInFlight) DALA_RETURN_IF_ERROR(WaitForOldest());
    if (failed_) return Status(Code::kIo, "the S3 store failed earlier in this upload");
    if (s_.upload_id.empty()) {
      auto id = client_.CreateUpload(key_);
      if (!id.ok()) return Fail(id.status());
      s_.upload_id = std::move(*id);
    }
    // The part's bytes, before it joins the queue (nothing there without its future, if this throws).
    std::vector<uint8_t> bytes;
    if (len == s_.tail.size()) {  // the whole tail (as chunks arrive): its buffer goes with the part
      std::vector<uint8_t> next = buffers_.Take(std::min<uint64_t>(part_, shape_.size - Written()));
      bytes = std::exchange(s_.tail, std::move(next));
    } else {
      bytes = buffers_.Take(len);
      bytes.assign(s_.tail.begin(), s_.tail.begin() + static_cast<ptrdiff_t>(len));
      s_.tail.erase(s_.tail.begin(), s_.tail.begin() + static_cast<ptrdiff_t>(len));
    }
    auto& f = in_flight_.emplace_back();
    f.number = static_cast<int>(s_.parts.size() + in_flight_.size());
    f.bytes = std::move(bytes);
    tail_kept_ = 0;  // the tail object now holds bytes a part holds: stale (and ignored when read back)
    f.etag = std::async(std::launch::async, [this, &f] { return client_.UploadPart(key_, s_.upload_id, f.number, f.bytes); });
    return Status::Ok();
  }

  // The oldest part in flight confirmed (or the writer failed).
  Status WaitForOldest() {
    InFlight& f = in_flight_.front();
    Result<std::string> etag = f.etag.get();
    const uint64_t size = f.bytes.size();
    const int number = f.number;
    buffers_.Give(std::move(f.bytes));  // the part's request is over: nothing reads them any more
    in_flight_.pop_front();
    if (!etag.ok()) {
      // A store that says it stored other bytes than were sent: none of this upload's parts is trusted
      // again (they would be listed, and counted, when it resumes). It starts again.
      if (etag.status().code() == Code::kCorrupt) {
        while (!in_flight_.empty()) (void)WaitForOldest();
        (void)client_.Abort(key_, s_.upload_id);
      }
      return Fail(etag.status());
    }
    if (failed_) return Status(Code::kIo, "the S3 store failed earlier in this upload");
    s_.parts.push_back({number, size, std::move(*etag)});
    s_.parts_end += size;
    return Status::Ok();
  }

  // Every part in flight confirmed; the first failure if any.
  Status WaitForPart() {
    Status first;
    while (!in_flight_.empty()) {
      Status st = WaitForOldest();
      if (first.ok() && !st.ok()) first = st;
    }
    return first;
  }

  Status Complete() {
    if (s_.upload_id.empty() && s_.parts.empty()) {
      DALA_RETURN_IF_ERROR(Fail(client_.Put(key_, s_.tail)));  // small: one object, one request
    } else {
      while (s_.tail.size() > part_) DALA_RETURN_IF_ERROR(StartPart(part_));
      if (!s_.tail.empty()) DALA_RETURN_IF_ERROR(StartPart(s_.tail.size()));
      DALA_RETURN_IF_ERROR(WaitForPart());
      DALA_RETURN_IF_ERROR(Fail(client_.Complete(key_, s_.upload_id, s_.parts, shape_.size)));
    }
    s_.whole = true;
    s_.tail.clear();
    // Tidying: failures leave garbage only (a stale tail is never taken for bytes it does not verify as).
    (void)client_.Delete(tail_key_);
    for (const auto& id : s_.others) (void)client_.Abort(key_, id);
    return Status::Ok();
  }

  s3::Client& client_;
  PartBuffers& buffers_;
  std::string key_, tail_key_, hashes_;
  AttachmentShape shape_;
  uint64_t part_;
  Held s_;
  uint64_t held_;
  uint64_t tail_kept_;            // bytes of s_.tail the tail object holds
  bool failed_ = false;
  struct InFlight {
    int number = 0;
    std::vector<uint8_t> bytes;
    std::future<Result<std::string>> etag;
  };
  // Last: destroyed first, waiting for the parts in flight while everything they use still exists (a deque:
  // a part's bytes stay where they are while others are added).
  std::deque<InFlight> in_flight_;
};

class S3Store final : public AttachmentStore {
 public:
  explicit S3Store(std::unique_ptr<s3::Client> client) : client_(std::move(client)) {}

  std::string Describe() const override {
    const std::string& prefix = client_->location().prefix;
    return "the S3 bucket " + client_->location().bucket + (prefix.empty() ? "" : ", prefix " + prefix) + " at " +
           client_->location().endpoint;
  }

  std::optional<uint64_t> Version(const std::string&) override { return std::nullopt; }

  Result<uint64_t> Held(const std::string& name, const AttachmentShape& shape) override {
    DALA_ASSIGN_OR_RETURN(struct Held h, Read(name, shape));
    return h.whole ? shape.size : h.bytes();
  }

  Result<std::unique_ptr<AttachmentWriter>> Open(const std::string& name, const AttachmentShape& shape,
                                                 std::optional<uint64_t>) override {
    DALA_ASSIGN_OR_RETURN(struct Held h, Read(name, shape));
    return std::unique_ptr<AttachmentWriter>(new S3Writer(*client_, buffers_, Key(name), TailKey(name), shape,
                                                          std::string(shape.chunk_hashes), std::move(h)));
  }

  Status CopyTo(const std::string& name, uint64_t size, const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return Status(Code::kIo, "could not create " + path);
    uint64_t got = 0;
    Status st = client_->Get(Key(name), [&](std::span<const uint8_t> b) {
      size_t done = 0;
      while (done < b.size()) {
        ssize_t w = ::write(fd, b.data() + done, b.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        done += static_cast<size_t>(w);
      }
      got += b.size();
      return true;
    });
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (st.ok() && got != size) st = Status(Code::kCorrupt, "S3: an attachment object has the wrong size");
    if (st.ok() && !synced) st = Status(Code::kIo, "could not write " + path);
    if (!st.ok()) ::unlink(path.c_str());
    return st;
  }

  Result<std::string> Read(const std::string& name, uint64_t offset, size_t length) override {
    return client_->GetRange(Key(name), offset, length);
  }

  Result<std::optional<uint64_t>> BytesHeld() override { return std::optional<uint64_t>(); }

  Result<uint64_t> Verified(const std::string& name, const AttachmentShape& shape) override {
    // Read whole, chunk by chunk as it arrives, each checked against its hash.
    std::vector<uint8_t> chunk;
    uint64_t good = 0, got = 0;
    bool bad = false;
    Status st = client_->Get(Key(name), [&](std::span<const uint8_t> b) {
      got += b.size();
      if (got > shape.size) return !(bad = true);
      chunk.insert(chunk.end(), b.begin(), b.end());
      for (;;) {
        const uint64_t len = std::min<uint64_t>(shape.chunk_size, shape.size - good);
        if (len == 0 || chunk.size() < len) break;
        if (VerifiedBytes({chunk.data(), len}, good, shape) != len) return !(bad = true);
        chunk.erase(chunk.begin(), chunk.begin() + static_cast<ptrdiff_t>(len));
        good += len;
      }
      return true;
    });
    if (bad) return good;
    if (st.code() == Code::kNotFound) return uint64_t{0};
    DALA_RETURN_IF_ERROR(st);
    return good;
  }

  Status PutMark(const std::string& token) override { return client_->Put(MarkKey(token), crypto::Bytes(token)); }
  std::string MarkName(const std::string& token) const override { return "the object " + MarkKey(token); }
  Result<bool> HasMark(const std::string& token) override {
    DALA_ASSIGN_OR_RETURN(std::optional<uint64_t> size, client_->Size(MarkKey(token)));
    return size.has_value();
  }
  Status RemoveMark(const std::string& token) override { return client_->Delete(MarkKey(token)); }

 private:
  std::string MarkKey(const std::string& token) const { return client_->location().prefix + "nodes/" + token; }
  std::string Key(const std::string& name) const { return client_->location().prefix + "attachments/" + name; }
  std::string TailKey(const std::string& name) const {
    return client_->location().prefix + "uploads/" + name + ".tail";
  }

  Result<struct Held> Read(const std::string& name, const AttachmentShape& shape) {
    struct Held h;
    const std::string key = Key(name);
    DALA_ASSIGN_OR_RETURN(std::optional<uint64_t> size, client_->Size(key));
    if (size && *size == shape.size) {
      h.whole = true;
      return h;
    }
    const uint64_t part = PartSize(shape);
    DALA_ASSIGN_OR_RETURN(std::vector<std::string> ids, client_->ListUploads(key));
    for (const auto& id : ids) {
      DALA_ASSIGN_OR_RETURN(std::vector<s3::Part> parts, client_->ListParts(key, id));
      std::sort(parts.begin(), parts.end(), [](const s3::Part& a, const s3::Part& b) { return a.number < b.number; });
      // Parts 1..k, each whole (of the part size, or the last one of the attachment).
      std::vector<s3::Part> whole;
      uint64_t end = 0;
      for (const auto& p : parts) {
        if (p.number != static_cast<int>(whole.size() + 1)) break;
        if (p.size != std::min<uint64_t>(part, shape.size - end) || end + p.size > shape.size) break;
        end += p.size;
        whole.push_back(p);
      }
      if (h.upload_id.empty() || end > h.parts_end) {
        if (!h.upload_id.empty()) h.others.push_back(h.upload_id);
        h.upload_id = id;
        h.parts = std::move(whole);
        h.parts_end = end;
      } else {
        h.others.push_back(id);
      }
    }
    auto tail = client_->GetSmall(TailKey(name), part + shape.chunk_size);
    // A tail larger than any this server writes is not one of its own: it counts for nothing (as one that
    // does not verify), rather than stopping the upload for good.
    if (!tail.ok() && tail.status().code() != Code::kTooLarge) return tail.status();
    if (tail.ok() && *tail) {
      std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>((*tail)->data()), (*tail)->size());
      const uint64_t good = VerifiedBytes(bytes, h.parts_end, shape);
      h.tail.assign(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(good));
    }
    return h;
  }

  std::unique_ptr<s3::Client> client_;
  PartBuffers buffers_;  // (writers never outlive the store)
};

}  // namespace

Result<std::unique_ptr<AttachmentStore>> OpenS3Store(const std::string& url, bool probe,
                                                     std::function<void(const char*, int, double)> observe) {
  DALA_ASSIGN_OR_RETURN(s3::Location where, s3::ParseUrl(url));
  DALA_ASSIGN_OR_RETURN(s3::Credentials credentials, s3::CredentialsFromEnvironment());
  auto client = std::make_unique<s3::Client>(std::move(where), std::move(credentials), std::move(observe));
  if (probe) {
    Status st = client->Probe();
    if (!st.ok())
      return Status(st.code(), "the S3 bucket " + client->location().bucket + " at " + client->location().endpoint +
                                   " cannot be used: " + st.message());
  }
  return std::unique_ptr<AttachmentStore>(new S3Store(std::move(client)));
}

}  // namespace dala::server
