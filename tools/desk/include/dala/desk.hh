// desk.hh: dala.hh's ownership for the desk's handle (dala::Ref<dala_desk> closes it).
#ifndef DALA_DESK_HH
#define DALA_DESK_HH

#include <dala/dala.hh>
#include <dala/desk.h>

namespace dala {
DALA_HH_FREE(dala_desk, dala_desk_close)
DALA_HH_FREE(dala_desk_store, dala_desk_store_close)
DALA_HH_FREE(dala_desk_server, dala_desk_server_stop)
}  // namespace dala

#endif  // DALA_DESK_HH
