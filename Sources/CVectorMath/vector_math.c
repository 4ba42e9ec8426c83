/* The module's functions are static inline in its header (include/vector_math.h); SwiftPM
 * needs a source file to make a C target. */
#include "vector_math.h"
