// What the JNI glue's files share: argument conversion and turning a failed call into a DalaException.
#pragma once

#include <dala/dala.h>
#include <jni.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace dala_jni {

// A Java byte[] as an owned, NUL-terminated string; nullopt for null.
inline std::optional<std::string> Str(JNIEnv* env, jbyteArray a) {
  if (a == nullptr) return std::nullopt;
  jsize n = env->GetArrayLength(a);
  std::string s(static_cast<size_t>(n), '\0');
  env->GetByteArrayRegion(a, 0, n, reinterpret_cast<jbyte*>(s.data()));
  return s;
}

inline const char* C(const std::optional<std::string>& s) { return s ? s->c_str() : nullptr; }

inline jbyteArray Bytes(JNIEnv* env, const void* p, size_t n) {
  jbyteArray a = env->NewByteArray(static_cast<jsize>(n));
  if (a != nullptr && n > 0) env->SetByteArrayRegion(a, 0, static_cast<jsize>(n), static_cast<const jbyte*>(p));
  return a;
}

inline jbyteArray Utf8(JNIEnv* env, const char* s) { return s == nullptr ? nullptr : Bytes(env, s, std::strlen(s)); }

inline void Zero(std::vector<uint8_t>& v) {
  volatile uint8_t* p = v.data();
  for (size_t i = 0; i < v.size(); ++i) p[i] = 0;
}

// Throws the DalaException for a failed call; frees the error.
inline void Throw(JNIEnv* env, dala_status st, dala_error* e) {
  const char* msg = e != nullptr ? dala_error_message(e) : dala_status_name(st);
  jclass cls = env->FindClass("org/dala/DalaException");
  if (cls != nullptr) {
    jmethodID create = env->GetStaticMethodID(cls, "create", "(I[B)Lorg/dala/DalaException;");
    jbyteArray m = Utf8(env, msg);
    auto ex = static_cast<jthrowable>(env->CallStaticObjectMethod(cls, create, static_cast<jint>(st), m));
    if (ex != nullptr && !env->ExceptionCheck()) env->Throw(ex);
  }
  dala_error_free(e);
}

// True when the call succeeded; otherwise throws and returns false.
inline bool Ok(JNIEnv* env, dala_status st, dala_error* e) {
  if (st == DALA_OK) return true;
  Throw(env, st, e);
  return false;
}

inline void ThrowInvalid(JNIEnv* env, const char* what) {
  jclass cls = env->FindClass("org/dala/DalaException$InvalidArgument");
  if (cls != nullptr) env->ThrowNew(cls, what);
}

// A 16-byte id from Java; throws (and returns false) when it is null or of another length.
template <typename Id>
inline bool ToId(JNIEnv* env, jbyteArray a, Id* out, const char* what) {
  if (a == nullptr || env->GetArrayLength(a) != 16) {
    ThrowInvalid(env, what);
    return false;
  }
  env->GetByteArrayRegion(a, 0, 16, reinterpret_cast<jbyte*>(out->bytes));
  return true;
}

struct Credential {
  std::vector<uint8_t> bytes;
  dala_credential c{};
  Credential(JNIEnv* env, jint kind, jbyteArray a) {
    if (a != nullptr) {
      bytes.resize(static_cast<size_t>(env->GetArrayLength(a)));
      env->GetByteArrayRegion(a, 0, static_cast<jsize>(bytes.size()), reinterpret_cast<jbyte*>(bytes.data()));
    }
    c.kind = static_cast<dala_credential_kind>(kind);
    c.bytes = a != nullptr ? bytes.data() : nullptr;
    c.length = bytes.size();
  }
  ~Credential() { Zero(bytes); }
  const dala_credential* get() const { return &c; }
};

inline dala_store* S(jlong h) { return reinterpret_cast<dala_store*>(h); }
inline dala_report* R(jlong h) { return reinterpret_cast<dala_report*>(h); }

inline jobjectArray NewArray(JNIEnv* env, const char* cls, size_t n, jclass* out_cls) {
  *out_cls = env->FindClass(cls);
  return *out_cls == nullptr ? nullptr : env->NewObjectArray(static_cast<jsize>(n), *out_cls, nullptr);
}

}  // namespace dala_jni
