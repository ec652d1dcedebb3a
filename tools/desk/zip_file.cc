#include "desk/zip_file.h"

#include <zip.h>

#include <cstring>
#include <set>

namespace dala::desk {
namespace {

struct Stream {
  uint64_t size = 0, at = 0;
  ZipWriter::Reader read;
  zip_error_t error;
};

zip_int64_t StreamCallback(void* user, void* data, zip_uint64_t len, zip_source_cmd_t cmd) {
  auto* s = static_cast<Stream*>(user);
  switch (cmd) {
    case ZIP_SOURCE_OPEN:
      s->at = 0;
      return 0;
    case ZIP_SOURCE_READ: {
      if (s->at >= s->size) return 0;
      const size_t want = static_cast<size_t>(std::min<uint64_t>(len, s->size - s->at));
      auto n = s->read(s->at, std::span<uint8_t>(static_cast<uint8_t*>(data), want));
      if (!n.ok() || *n == 0) {
        zip_error_set(&s->error, ZIP_ER_READ, 0);
        return -1;
      }
      s->at += *n;
      return static_cast<zip_int64_t>(*n);
    }
    case ZIP_SOURCE_CLOSE:
      return 0;
    case ZIP_SOURCE_STAT: {
      auto* st = static_cast<zip_stat_t*>(data);
      zip_stat_init(st);
      st->size = s->size;
      st->valid |= ZIP_STAT_SIZE;
      return sizeof(zip_stat_t);
    }
    case ZIP_SOURCE_ERROR:
      return zip_error_to_data(&s->error, data, len);
    case ZIP_SOURCE_FREE:
      zip_error_fini(&s->error);
      delete s;
      return 0;
    case ZIP_SOURCE_SUPPORTS:
      return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ, ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT,
                                            ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE, -1);
    default:
      zip_error_set(&s->error, ZIP_ER_OPNOTSUPP, 0);
      return -1;
  }
}

Status ZipError(::zip* z, const std::string& what) {
  return Status(Code::kIo, what + ": " + (z != nullptr ? zip_strerror(z) : "libzip failed"));
}

}  // namespace

Result<std::unique_ptr<ZipWriter>> ZipWriter::Create(const std::string& path) {
  int err = 0;
  ::zip* z = zip_open(path.c_str(), ZIP_CREATE | ZIP_EXCL, &err);
  if (z == nullptr) {
    if (err == ZIP_ER_EXISTS) return Status(Code::kExists, "'" + path + "' exists already");
    return Status(Code::kIo, "cannot create '" + path + "'");
  }
  std::unique_ptr<ZipWriter> w(new ZipWriter);
  w->z_ = z;
  return w;
}

ZipWriter::~ZipWriter() {
  if (z_ != nullptr) zip_discard(z_);
}

Status ZipWriter::Add(const std::string& name, std::string bytes, bool compress) {
  held_.push_back(std::make_unique<std::string>(std::move(bytes)));
  const std::string& b = *held_.back();
  zip_source_t* src = zip_source_buffer(z_, b.data(), b.size(), 0);
  if (src == nullptr) return ZipError(z_, "cannot add " + name);
  const zip_int64_t index = zip_file_add(z_, name.c_str(), src, ZIP_FL_ENC_UTF_8);
  if (index < 0) {
    zip_source_free(src);
    return ZipError(z_, "cannot add " + name);
  }
  if (!compress) zip_set_file_compression(z_, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0);
  return Status::Ok();
}

Status ZipWriter::AddStream(const std::string& name, uint64_t size, Reader read) {
  auto* s = new Stream{size, 0, std::move(read), {}};
  zip_error_init(&s->error);
  zip_source_t* src = zip_source_function(z_, StreamCallback, s);
  if (src == nullptr) {
    zip_error_fini(&s->error);
    delete s;
    return ZipError(z_, "cannot add " + name);
  }
  const zip_int64_t index = zip_file_add(z_, name.c_str(), src, ZIP_FL_ENC_UTF_8);
  if (index < 0) {
    zip_source_free(src);
    return ZipError(z_, "cannot add " + name);
  }
  zip_set_file_compression(z_, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0);  // media is compressed already
  return Status::Ok();
}

Status ZipWriter::Close() {
  if (zip_close(z_) != 0) return ZipError(z_, "cannot write the package");
  z_ = nullptr;
  held_.clear();
  return Status::Ok();
}

Result<std::unique_ptr<ZipReader>> ZipReader::Open(const std::string& path) {
  int err = 0;
  ::zip* z = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &err);
  if (z == nullptr) {
    if (err == ZIP_ER_NOENT) return Status(Code::kNotFound, "no package at '" + path + "'");
    return Status(Code::kCorrupt, "'" + path + "' is not a readable ZIP package");
  }
  std::unique_ptr<ZipReader> r(new ZipReader);
  r->z_ = z;
  const zip_int64_t n = zip_get_num_entries(z, 0);
  std::set<std::string> names;
  for (zip_int64_t i = 0; i < n; ++i) {
    zip_stat_t st;
    if (zip_stat_index(z, static_cast<zip_uint64_t>(i), 0, &st) != 0 || !(st.valid & ZIP_STAT_NAME))
      return Status(Code::kCorrupt, "an entry of the package cannot be read");
    if (!names.insert(st.name).second) return Status(Code::kCorrupt, std::string("the package holds two entries named ") + st.name);
    r->entries_.push_back({st.name, (st.valid & ZIP_STAT_SIZE) ? st.size : 0});
  }
  return r;
}

ZipReader::~ZipReader() {
  if (z_ != nullptr) zip_discard(z_);
}

Status ZipReader::Stream(const std::string& name, const std::function<void(std::span<const uint8_t>)>& piece) {
  zip_file_t* f = zip_fopen(z_, name.c_str(), 0);
  if (f == nullptr) return Status(Code::kNotFound, "the package holds no " + name);
  std::vector<uint8_t> buf(1 << 16);
  Status st = Status::Ok();
  for (;;) {
    const zip_int64_t n = zip_fread(f, buf.data(), buf.size());
    if (n < 0) {
      st = Status(Code::kCorrupt, name + " cannot be read from the package (damaged)");
      break;
    }
    if (n == 0) break;
    piece(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
  }
  zip_fclose(f);
  return st;
}

Result<std::string> ZipReader::Read(const std::string& name, size_t max) {
  std::string out;
  bool too_big = false;
  DALA_RETURN_IF_ERROR(Stream(name, [&](std::span<const uint8_t> p) {
    if (out.size() + p.size() > max) too_big = true;
    if (!too_big) out.append(reinterpret_cast<const char*>(p.data()), p.size());
  }));
  if (too_big) return Status(Code::kInvalidArgument, name + " is larger than a package's " + name + " may be");
  return out;
}

}  // namespace dala::desk
