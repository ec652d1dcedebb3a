// The C API of attachments: capture, import, reading back, listing (dala.h, "Attachments").
#include "capi/handles.h"
#include "crypto/attachment_file.h"

#include <sodium.h>

#include <cstring>

#include "base/encoding.h"

using dala::Code;
using dala::Result;
using dala::Status;
using dala::capi::CheckString;
using dala::capi::Guard;
using dala::capi::Invalid;
using dala::capi::RawEnum;
using dala::capi::ToId;

void dala_attachment_id_to_string(const dala_attachment_id* id, char out[33]) noexcept {
  dala::capi::IdToText(id ? id->bytes : nullptr, out);
}

dala_status dala_attachment_id_parse(const char* text, dala_attachment_id* out_id, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(text != nullptr && out_id != nullptr, "text or out_id is NULL");
    return dala::capi::IdFromText(text, out_id->bytes, "an attachment id");
  });
}

dala_status dala_attachment_writer_open(dala_store* store, const dala_report_id* report, const char* mime_type,
                                        dala_attachment_writer** out_writer, dala_error** out_error) noexcept {
  if (out_writer != nullptr) *out_writer = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && report != nullptr && out_writer != nullptr, "store, report or out_writer is NULL");
    DALA_CHECK_ARG(mime_type != nullptr, "mime_type is NULL");
    DALA_ASSIGN_OR_RETURN(auto capture, store->impl->CaptureAttachment(ToId(report->bytes), mime_type));
    *out_writer = new dala_attachment_writer{std::move(capture)};
    return Status::Ok();
  });
}

dala_status dala_attachment_writer_write(dala_attachment_writer* writer, const uint8_t* data, size_t size,
                                         dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(writer != nullptr, "writer is NULL");
    DALA_CHECK_ARG(data != nullptr || size == 0, "data is NULL");
    if (!writer->impl) return {Code::kState, "this attachment writer is finished"};
    return writer->impl->Write({data, size});
  });
}

dala_status dala_attachment_writer_finish(dala_attachment_writer* writer, dala_attachment_id* out_id,
                                          dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(writer != nullptr && out_id != nullptr, "writer or out_id is NULL");
    if (!writer->impl) return {Code::kState, "this attachment writer is finished"};
    auto info = writer->impl->Finish();
    writer->impl.reset();
    if (!info.ok()) return info.status();
    std::memcpy(out_id->bytes, info->id.data(), info->id.size());
    return Status::Ok();
  });
}

void dala_attachment_writer_free(dala_attachment_writer* writer) noexcept { delete writer; }

dala_status dala_attachment_import_file(dala_store* store, const dala_report_id* report, const char* path,
                                        const char* mime_type, dala_attachment_id* out_id,
                                        dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && report != nullptr && out_id != nullptr, "store, report or out_id is NULL");
    DALA_CHECK_ARG(path != nullptr && mime_type != nullptr, "path or mime_type is NULL");
    DALA_ASSIGN_OR_RETURN(auto info, store->impl->ImportAttachment(ToId(report->bytes), path, mime_type));
    std::memcpy(out_id->bytes, info.id.data(), info.id.size());
    return Status::Ok();
  });
}

dala_status dala_attachment_reader_open(dala_store* store, const dala_attachment_id* id,
                                        dala_attachment_reader** out_reader, dala_error** out_error) noexcept {
  if (out_reader != nullptr) *out_reader = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr && out_reader != nullptr, "store, id or out_reader is NULL");
    DALA_ASSIGN_OR_RETURN(auto reader, store->impl->OpenAttachment(ToId(id->bytes)));
    *out_reader = new dala_attachment_reader{std::move(reader)};
    return Status::Ok();
  });
}

dala_status dala_attachment_reader_read(dala_attachment_reader* reader, uint8_t* buffer, size_t capacity,
                                        size_t* out_size, dala_error** out_error) noexcept {
  if (out_size != nullptr) *out_size = 0;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(reader != nullptr && buffer != nullptr && out_size != nullptr, "reader, buffer or out_size is NULL");
    DALA_CHECK_ARG(capacity > 0, "capacity must be positive");
    DALA_ASSIGN_OR_RETURN(size_t n, reader->impl->Read({buffer, capacity}));
    *out_size = n;
    return Status::Ok();
  });
}

void dala_attachment_reader_free(dala_attachment_reader* reader) noexcept { delete reader; }

dala_status dala_attachment_remove(dala_store* store, const dala_attachment_id* id, dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && id != nullptr, "store or id is NULL");
    return store->impl->RemoveAttachment(ToId(id->bytes));
  });
}

dala_status dala_store_list_attachments(dala_store* store, const dala_report_id* report, dala_attachment_list** out_list,
                                        dala_error** out_error) noexcept {
  if (out_list != nullptr) *out_list = nullptr;
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(store != nullptr && report != nullptr && out_list != nullptr, "store, report or out_list is NULL");
    DALA_ASSIGN_OR_RETURN(dala::Report latest, store->impl->Get(ToId(report->bytes)));
    DALA_ASSIGN_OR_RETURN(auto items, store->impl->Attachments(ToId(report->bytes), latest.content.version()));
    *out_list = new dala_attachment_list{std::move(items)};
    return Status::Ok();
  });
}

size_t dala_attachment_list_count(const dala_attachment_list* list) noexcept {
  return list == nullptr ? 0 : list->items.size();
}

dala_status dala_attachment_list_get(const dala_attachment_list* list, size_t index, dala_attachment_info* out_info,
                                     dala_error** out_error) noexcept {
  return Guard(out_error, [&]() -> Status {
    DALA_CHECK_ARG(list != nullptr && out_info != nullptr, "list or out_info is NULL");
    DALA_CHECK_ARG(index < list->items.size(), "index is out of range");
    const auto& a = list->items[index];
    std::memcpy(out_info->id.bytes, a.id.data(), a.id.size());
    out_info->version = a.version;
    out_info->mime_type = a.mime.c_str();
    out_info->size = a.size;
    out_info->ciphertext_size = a.ciphertext_size;
    std::memcpy(out_info->plaintext_hash, a.plaintext_hash.data(), 32);
    std::memcpy(out_info->ciphertext_hash, a.ciphertext_hash.data(), 32);
    out_info->created_ms = a.created_ms;
    return Status::Ok();
  });
}

void dala_attachment_list_free(dala_attachment_list* list) noexcept { delete list; }
