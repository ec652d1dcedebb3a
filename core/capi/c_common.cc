// The C API's common ground: errors, status names, strings and the version (dala.h, "Status and errors").
#include <cstdlib>

#include "capi/boundary.h"

using dala::capi::RawEnum;

dala_status dala_error_status(const dala_error* e) noexcept { return e ? e->status : DALA_ERR_INTERNAL; }
const char* dala_error_message(const dala_error* e) noexcept { return e ? e->message : "no error object"; }
void dala_error_free(dala_error* e) noexcept { std::free(e); }
void dala_string_free(char* s) noexcept { std::free(s); }
const char* dala_version(void) noexcept { return DALA_VERSION_STRING; }
int dala_version_number(void) noexcept { return DALA_VERSION_NUMBER; }

const char* dala_status_name(dala_status status) noexcept {
  switch (RawEnum(status)) {
    case DALA_OK: return "DALA_OK";
    case DALA_ERR_INTERNAL: return "DALA_ERR_INTERNAL";
    case DALA_ERR_INVALID_ARGUMENT: return "DALA_ERR_INVALID_ARGUMENT";
    case DALA_ERR_WRONG_KEY: return "DALA_ERR_WRONG_KEY";
    case DALA_ERR_NOT_FOUND: return "DALA_ERR_NOT_FOUND";
    case DALA_ERR_EXISTS: return "DALA_ERR_EXISTS";
    case DALA_ERR_CORRUPT: return "DALA_ERR_CORRUPT";
    case DALA_ERR_IO: return "DALA_ERR_IO";
    case DALA_ERR_PERMISSION: return "DALA_ERR_PERMISSION";
    case DALA_ERR_STATE: return "DALA_ERR_STATE";
    case DALA_ERR_TOO_LARGE: return "DALA_ERR_TOO_LARGE";
    case DALA_ERR_VERIFY: return "DALA_ERR_VERIFY";
    case DALA_ERR_BUSY: return "DALA_ERR_BUSY";
    case DALA_ERR_NOT_ENCRYPTED: return "DALA_ERR_NOT_ENCRYPTED";
    case DALA_ERR_NO_MEMORY: return "DALA_ERR_NO_MEMORY";
    case DALA_ERR_NO_SPACE: return "DALA_ERR_NO_SPACE";
  }
  return "DALA_ERR_UNKNOWN";
}
