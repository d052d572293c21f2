/* ops.c — the CUDA op table: for each op_id, the glue (src/cuda/ops_<family>.c) that runs it on the
 * device, and whether its backward assigns a gradient it writes first (true: the plan skips zeroing it). An
 * op missing here makes a CUDA graph that uses it refuse to compile, naming the op. Conv2d and the pools
 * assign on the CPU but still add on CUDA. */
#include "ops.h"

#include "ops_glue.h"

const magna_cuda_op magna_cuda_op_table[OP_COUNT] = {
    [OP_NONE] = {0},
    /* ops_matmul.c, ops_norm.c, ops_conv.c */
    [OP_MATMUL] = {cuda_matmul_forward, cuda_matmul_backward, true},
    [OP_LAYER_NORM] = {cuda_layer_norm_forward, cuda_layer_norm_backward},
    [OP_BATCH_NORM] = {cuda_batch_norm_forward, cuda_batch_norm_backward},
    [OP_CONV2D] = {cuda_conv2d_forward, cuda_conv2d_backward},
    [OP_MAX_POOL2D] = {cuda_max_pool2d_forward, cuda_max_pool2d_backward},
    [OP_AVG_POOL2D] = {cuda_avg_pool2d_forward, cuda_avg_pool2d_backward},
    /* the elementwise family (ops_elementwise.c, ops_shape.c, ops_reduce.c) */
    [OP_ADD] = {cuda_binary_forward, cuda_binary_backward, true},
    [OP_SUB] = {cuda_binary_forward, cuda_binary_backward, true},
    [OP_MUL] = {cuda_binary_forward, cuda_binary_backward, true},
    [OP_DIV] = {cuda_binary_forward, cuda_binary_backward, true},
    [OP_POW] = {cuda_binary_forward, cuda_binary_backward, true},
    [OP_SCALE] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_ADD_SCALAR] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_POW_SCALAR] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_ABS] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_RELU] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_LEAKY_RELU] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_SIGMOID] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_TANH] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_GELU] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_GELU_TANH] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_EXP] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_LOG] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_SQRT] = {cuda_unary_forward, cuda_unary_backward, true},
    [OP_SOFTMAX] = {cuda_softmax_forward, cuda_softmax_backward},
    [OP_LOG_SOFTMAX] = {cuda_softmax_forward, cuda_softmax_backward},
    [OP_SUM] = {cuda_reduce_forward, cuda_reduce_backward},
    [OP_MEAN] = {cuda_reduce_forward, cuda_reduce_backward},
    [OP_MAX] = {cuda_reduce_forward, cuda_reduce_backward},
    [OP_RESHAPE] = {cuda_reshape_forward, cuda_reshape_backward, true},
    [OP_PERMUTE] = {cuda_permute_forward, cuda_permute_backward},
    [OP_SLICE] = {cuda_slice_forward, cuda_slice_backward},
    [OP_CONCAT] = {cuda_concat_forward, cuda_concat_backward},
    [OP_EMBEDDING] = {cuda_embedding_forward, cuda_embedding_backward},
    [OP_DROPOUT] = {cuda_dropout_forward, cuda_dropout_backward},
    [OP_MSE] = {cuda_mse_forward, cuda_mse_backward},
    [OP_CROSS_ENTROPY] = {cuda_cross_entropy_forward, cuda_cross_entropy_backward},
    [OP_BCE_WITH_LOGITS] = {cuda_bce_forward, cuda_bce_backward},
    [OP_ATTENTION] = {cuda_attention_forward, cuda_attention_backward, true},
    [OP_LSTM] = {cuda_rnn_forward, cuda_rnn_backward},
    [OP_GRU] = {cuda_rnn_forward, cuda_rnn_backward},
    [OP_RNN] = {cuda_rnn_forward, cuda_rnn_backward},
};
