#include <dala/dala.h>
