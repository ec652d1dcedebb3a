// Status and Result<T>: expected failures inside the core. Codes mirror dala_status (same numbers).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace dala {

enum class Code : int {
  kOk = 0,
  kInternal = 1,
  kInvalidArgument = 2,
  kWrongKey = 3,
  kNotFound = 4,
  kExists = 5,
  kCorrupt = 6,
  kIo = 7,
  kPermission = 8,
  kState = 9,
  kTooLarge = 10,
  kVerify = 11,
  kBusy = 12,
  kNotEncrypted = 13,
  kNoMemory = 14,
  kNoSpace = 15,
};

// A message must say what went wrong and what to do; it must never contain secrets or report contents.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be OK

  bool ok() const { return v_.index() == 0; }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<1>(v_);
  }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &std::get<0>(v_); }
  const T* operator->() const { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const T& operator*() const& { return std::get<0>(v_); }
  T&& operator*() && { return std::get<0>(std::move(v_)); }

 private:
  std::variant<T, Status> v_;
};

#define DALA_RETURN_IF_ERROR(expr)          \
  do {                                      \
    ::dala::Status _st = (expr);            \
    if (!_st.ok()) return _st;              \
  } while (0)

#define DALA_CONCAT_INNER(a, b) a##b
#define DALA_CONCAT(a, b) DALA_CONCAT_INNER(a, b)
#define DALA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
#define DALA_ASSIGN_OR_RETURN(lhs, expr) DALA_ASSIGN_OR_RETURN_IMPL(DALA_CONCAT(_res_, __LINE__), lhs, expr)

}  // namespace dala
