// The one boundary between the C API and the C++ inside, shared by libdala and libdala_desk: Guard runs an
// entry point's body, turns its Status (or an exception) into a dala_status and a dala_error, and never
// lets an exception cross. Argument conversions every object's entry points use live here too.
#pragma once

#include <dala/dala.h>

#include <cstring>
#include <new>
#include <string>

#include "base/id.h"
#include "base/secret.h"
#include "base/status.h"
#include "crypto/keyfile.h"

// dala_error is one malloc'd block, so that either library (libdala, libdala_desk) can make one and
// libdala's dala_error_free frees it.
struct dala_error {
  dala_status status;
  char message[1];  // NUL-terminated, allocated to fit
};

namespace dala::capi {

// Status -> a new dala_error (malloc'd: freed by dala_error_free in whichever library made it).
dala_error* NewError(const Status& st) noexcept;
Status InitOrFail();

template <typename F>
dala_status Guard(dala_error** out_error, F&& body) noexcept {
  if (out_error != nullptr) *out_error = nullptr;
  Status st;
  try {
    st = InitOrFail();
    if (st.ok()) st = body();
  } catch (const std::bad_alloc&) {
    st = Status(Code::kNoMemory, "out of memory");
  } catch (...) {
    st = Status(Code::kInternal, "unexpected internal error");
  }
  if (st.ok()) return DALA_OK;
  if (out_error != nullptr) *out_error = NewError(st);
  return static_cast<dala_status>(st.code());
}

inline Status Invalid(const char* what) { return {Code::kInvalidArgument, what}; }

#define DALA_CHECK_ARG(cond, msg)                       \
  do {                                                  \
    if (!(cond)) return ::dala::capi::Invalid(msg);     \
  } while (0)

// A C caller may store any int in an enum; in C++ loading an out-of-range enum is undefined. Enum inputs
// are therefore read as their raw integer.
template <typename E>
int RawEnum(const E& e) {
  static_assert(sizeof(E) == sizeof(int));
  int v;
  std::memcpy(&v, &e, sizeof v);
  return v;
}

Result<Credential> ToCredential(const dala_credential* c);
Status CheckString(const char* s, const char* what);
// A copy the caller frees with dala_string_free (malloc'd).
char* CopyString(const std::string& s);

inline Id16 ToId(const uint8_t (&bytes)[16]) {
  Id16 out;
  std::memcpy(out.data(), bytes, out.size());
  return out;
}
inline void FromId(const Id16& id, uint8_t (&bytes)[16]) { std::memcpy(bytes, id.data(), id.size()); }

// The one text form of both id types: 32 lowercase hex digits, NUL-terminated ("" for a NULL id).
void IdToText(const uint8_t* bytes, char out[33]) noexcept;
// Parses 32 hex digits into `bytes`; `what` names the id in the error ("a report id").
Status IdFromText(const char* text, uint8_t (&bytes)[16], const char* what);

}  // namespace dala::capi
