/* ops_glue.h — the glue functions of every op family (src/cuda/ops_<family>.c), for the table in ops.c.
 * Each family appends its own section. */
#ifndef MAGNA_CUDA_OPS_GLUE_H
#define MAGNA_CUDA_OPS_GLUE_H

#include "ops.h"

#endif
