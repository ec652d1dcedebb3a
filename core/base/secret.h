// SecretBuffer: secret bytes in sodium_malloc'd memory (guard pages, mlock), zeroed when released.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace dala {

// Initialises libsodium once (thread-safe); false if it cannot start (no usable randomness).
bool InitSodium();

class SecretBuffer {
 public:
  SecretBuffer() = default;
  explicit SecretBuffer(size_t size);  // zero-filled; throws std::bad_alloc on failure
  SecretBuffer(const uint8_t* data, size_t size);
  ~SecretBuffer();
  SecretBuffer(SecretBuffer&& other) noexcept;
  SecretBuffer& operator=(SecretBuffer&& other) noexcept;
  SecretBuffer(const SecretBuffer&) = delete;
  SecretBuffer& operator=(const SecretBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  std::span<const uint8_t> span() const { return {data_, size_}; }

 private:
  void release();
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace dala
