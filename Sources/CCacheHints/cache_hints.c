// The hint is a static inline function in the header; this file only gives SwiftPM a source.
#include "cache_hints.h"
