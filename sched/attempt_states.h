/* Temporary: the state table arrives with the attempt module. */
#include "store.h"
