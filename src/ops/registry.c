/* registry.c — the op table: op_id -> definition. Adding an op means an enum entry in internal.h, a
 * definition in its family's file, a line here, and a gradient-check case (the test fails without one). */
#include "../graph/internal.h"

extern const magna_op_def op_def_matmul, op_def_add, op_def_sub, op_def_mul, op_def_div, op_def_pow, op_def_scale,
    op_def_add_scalar, op_def_pow_scalar, op_def_abs, op_def_relu, op_def_leaky_relu, op_def_sigmoid, op_def_tanh, op_def_gelu,
    op_def_gelu_tanh, op_def_exp, op_def_log, op_def_sqrt, op_def_softmax, op_def_log_softmax, op_def_sum,
    op_def_mean, op_def_max, op_def_reshape, op_def_permute, op_def_slice, op_def_concat, op_def_embedding,
    op_def_layer_norm, op_def_batch_norm, op_def_conv2d, op_def_max_pool2d, op_def_avg_pool2d, op_def_dropout,
    op_def_attention, op_def_mse, op_def_cross_entropy, op_def_bce_with_logits;
extern const magna_op_def op_def_lstm, op_def_gru, op_def_rnn;

static const magna_op_def op_def_none = {"leaf", 0, NULL, NULL, NULL};

const magna_op_def *const magna_op_table[OP_COUNT] = {
    [OP_NONE] = &op_def_none,
    [OP_MATMUL] = &op_def_matmul,
    [OP_ADD] = &op_def_add,
    [OP_SUB] = &op_def_sub,
    [OP_MUL] = &op_def_mul,
    [OP_DIV] = &op_def_div,
    [OP_POW] = &op_def_pow,
    [OP_SCALE] = &op_def_scale,
    [OP_ADD_SCALAR] = &op_def_add_scalar,
    [OP_POW_SCALAR] = &op_def_pow_scalar,
    [OP_ABS] = &op_def_abs,
    [OP_RELU] = &op_def_relu,
    [OP_LEAKY_RELU] = &op_def_leaky_relu,
    [OP_SIGMOID] = &op_def_sigmoid,
    [OP_TANH] = &op_def_tanh,
    [OP_GELU] = &op_def_gelu,
    [OP_GELU_TANH] = &op_def_gelu_tanh,
    [OP_EXP] = &op_def_exp,
    [OP_LOG] = &op_def_log,
    [OP_SQRT] = &op_def_sqrt,
    [OP_SOFTMAX] = &op_def_softmax,
    [OP_LOG_SOFTMAX] = &op_def_log_softmax,
    [OP_SUM] = &op_def_sum,
    [OP_MEAN] = &op_def_mean,
    [OP_MAX] = &op_def_max,
    [OP_RESHAPE] = &op_def_reshape,
    [OP_PERMUTE] = &op_def_permute,
    [OP_SLICE] = &op_def_slice,
    [OP_CONCAT] = &op_def_concat,
    [OP_EMBEDDING] = &op_def_embedding,
    [OP_LAYER_NORM] = &op_def_layer_norm,
    [OP_BATCH_NORM] = &op_def_batch_norm,
    [OP_CONV2D] = &op_def_conv2d,
    [OP_MAX_POOL2D] = &op_def_max_pool2d,
    [OP_AVG_POOL2D] = &op_def_avg_pool2d,
    [OP_DROPOUT] = &op_def_dropout,
    [OP_ATTENTION] = &op_def_attention,
    [OP_MSE] = &op_def_mse,
    [OP_CROSS_ENTROPY] = &op_def_cross_entropy,
    [OP_BCE_WITH_LOGITS] = &op_def_bce_with_logits,
    [OP_LSTM] = &op_def_lstm,
    [OP_GRU] = &op_def_gru,
    [OP_RNN] = &op_def_rnn,
};
