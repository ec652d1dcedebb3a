#include "base/secret.h"

#include <sodium.h>

#include <cstring>
#include <new>
#include <utility>

namespace dala {

bool InitSodium() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

SecretBuffer::SecretBuffer(size_t size) : size_(size) {
  if (size == 0) return;
  data_ = static_cast<uint8_t*>(sodium_malloc(size));
  if (data_ == nullptr) {
    size_ = 0;
    throw std::bad_alloc();
  }
  sodium_memzero(data_, size);
}

SecretBuffer::SecretBuffer(const uint8_t* data, size_t size) : SecretBuffer(size) {
  if (size > 0) std::memcpy(data_, data, size);
}

SecretBuffer::~SecretBuffer() { release(); }

SecretBuffer::SecretBuffer(SecretBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SecretBuffer& SecretBuffer::operator=(SecretBuffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void SecretBuffer::release() {
  if (data_ != nullptr) sodium_free(data_);  // sodium_free zeroes before unmapping
  data_ = nullptr;
  size_ = 0;
}

}  // namespace dala
