// dala.hh: a header-only C++ layer over the C API (after LiteCore's c4.hh). It adds no behaviour: it owns
// handles (dala::Ref<T> frees with the one free function of T), turns a failed call into a dala::Error
// exception carrying the status and message, and takes ownership of returned strings. The ABI stays the
// C one (dala.h); this header is compiled into the caller.
//
//   dala::Ref<dala_store> store;
//   dala::Call(dala_store_open, path, &cred, &opts, dala::Out(store));   // throws dala::Error
//   std::string json = dala::TakeString(...);
#ifndef DALA_DALA_HH
#define DALA_DALA_HH

#include <dala/dala.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>

namespace dala {

// A failed call: its status (never DALA_OK) and the library's message (which never holds secrets).
class Error : public std::runtime_error {
 public:
  Error(dala_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  dala_status status() const noexcept { return status_; }

 private:
  dala_status status_;
};

// The free function of each owned type; Ref<T> is a unique_ptr that calls it.
template <typename T>
struct Free;
#define DALA_HH_FREE(T, fn) \
  template <>               \
  struct Free<T> {          \
    void operator()(T* p) const noexcept { fn(p); } \
  };
DALA_HH_FREE(dala_error, dala_error_free)
DALA_HH_FREE(dala_store, dala_store_close)
DALA_HH_FREE(dala_report, dala_report_free)
DALA_HH_FREE(dala_report_list, dala_report_list_free)
DALA_HH_FREE(dala_attachment_writer, dala_attachment_writer_free)
DALA_HH_FREE(dala_attachment_reader, dala_attachment_reader_free)
DALA_HH_FREE(dala_attachment_list, dala_attachment_list_free)
DALA_HH_FREE(dala_server_list, dala_server_list_free)
DALA_HH_FREE(dala_receipt_list, dala_receipt_list_free)
DALA_HH_FREE(dala_sync_session, dala_sync_session_free)

template <typename T>
using Ref = std::unique_ptr<T, Free<T>>;

// An output argument for a Ref: Call(dala_report_load, store, &id, Out(report)). The Ref takes what the
// call wrote (NULL on failure) when the full expression ends, also when Call throws.
template <typename T>
class OutRef {
 public:
  explicit OutRef(Ref<T>& ref) noexcept : ref_(ref) {}
  OutRef(const OutRef&) = delete;
  OutRef& operator=(const OutRef&) = delete;
  ~OutRef() { ref_.reset(raw_); }
  operator T**() noexcept { return &raw_; }

 private:
  Ref<T>& ref_;
  T* raw_ = nullptr;
};
template <typename T>
OutRef<T> Out(Ref<T>& ref) noexcept {
  return OutRef<T>(ref);
}

// An error output kept for inspection instead of thrown (tests, and callers that branch on a status).
class ErrorSlot {
 public:
  ErrorSlot() = default;
  ErrorSlot(const ErrorSlot&) = delete;
  ErrorSlot& operator=(const ErrorSlot&) = delete;
  ~ErrorSlot() { Take(); }  // error_ frees it
  // For the next call: frees what the last one reported.
  dala_error** out() noexcept {
    Take();
    error_.reset();
    return &raw_;
  }
  // What the last call through out() reported; DALA_OK when it set no error.
  dala_status status() noexcept { return Take() ? dala_error_status(error_.get()) : DALA_OK; }
  std::string message() { return Take() ? dala_error_message(error_.get()) : std::string("(no error)"); }
  [[noreturn]] void Throw(dala_status fallback) {
    Take();
    if (!error_) throw Error(fallback, dala_status_name(fallback));
    throw Error(dala_error_status(error_.get()), dala_error_message(error_.get()));
  }

 private:
  bool Take() noexcept {
    if (raw_ != nullptr) error_.reset(std::exchange(raw_, nullptr));
    return error_ != nullptr;
  }
  Ref<dala_error> error_;
  dala_error* raw_ = nullptr;
};

// Calls a dala_* function that ends in dala_error **out_error, passing the other arguments through, and
// throws dala::Error if it does not return DALA_OK.
template <typename F, typename... Args>
void Call(F&& fn, Args&&... args) {
  ErrorSlot slot;
  dala_status status = fn(std::forward<Args>(args)..., slot.out());
  if (status != DALA_OK) slot.Throw(status);
}

// A string the library returned (freed with dala_string_free), as a std::string. NULL gives "".
inline std::string TakeString(char* s) {
  std::unique_ptr<char, void (*)(char*)> owned(s, dala_string_free);
  return s == nullptr ? std::string() : std::string(s);
}

// The credential structs point into the caller's bytes; these build them from a std::string.
inline dala_credential Passphrase(const std::string& p) noexcept {
  return dala_credential{DALA_CREDENTIAL_PASSPHRASE, reinterpret_cast<const uint8_t*>(p.data()), p.size(), nullptr, 0};
}

inline std::string ToString(const dala_report_id& id) {
  char text[33];
  dala_report_id_to_string(&id, text);
  return text;
}
inline std::string ToString(const dala_attachment_id& id) {
  char text[33];
  dala_attachment_id_to_string(&id, text);
  return text;
}

}  // namespace dala

#endif  // DALA_DALA_HH
