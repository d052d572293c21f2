/* ops.c — the CUDA op table: for each op_id, the glue (src/cuda/ops_<family>.c) that runs it on the
 * device. An op missing here makes a CUDA graph that uses it refuse to compile, naming the op. */
#include "ops.h"

#include "ops_glue.h"

const magna_cuda_op magna_cuda_op_table[OP_COUNT] = {
    [OP_NONE] = {0},
    [OP_ATTENTION] = {cuda_attention_forward, cuda_attention_backward},
    [OP_LSTM] = {cuda_rnn_forward, cuda_rnn_backward},
    [OP_GRU] = {cuda_rnn_forward, cuda_rnn_backward},
    [OP_RNN] = {cuda_rnn_forward, cuda_rnn_backward},
};
