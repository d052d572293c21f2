/* ops.c — the CUDA op table: for each op_id, the glue (src/cuda/ops_<family>.c) that runs it on the
 * device. An op missing here makes a CUDA graph that uses it refuse to compile, naming the op. */
#include "ops.h"

#include "ops_glue.h"

const magna_cuda_op magna_cuda_op_table[OP_COUNT] = {
    [OP_NONE] = {0},
    /* ops_matmul.c, ops_norm.c, ops_conv.c */
    [OP_MATMUL] = {cuda_matmul_forward, cuda_matmul_backward},
    [OP_LAYER_NORM] = {cuda_layer_norm_forward, cuda_layer_norm_backward},
    [OP_BATCH_NORM] = {cuda_batch_norm_forward, cuda_batch_norm_backward},
    [OP_CONV2D] = {cuda_conv2d_forward, cuda_conv2d_backward},
    [OP_MAX_POOL2D] = {cuda_max_pool2d_forward, cuda_max_pool2d_backward},
    [OP_AVG_POOL2D] = {cuda_avg_pool2d_forward, cuda_avg_pool2d_backward},
};
