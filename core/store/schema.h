// The phone store's database schema (docs/storage-format.md) and its migrations.
#pragma once

#include "base/db.h"
#include "base/status.h"

namespace dala {

// Brings a store database to the current schema (creating it when empty).
Status MigrateStoreSchema(db::Db& db);

}  // namespace dala
