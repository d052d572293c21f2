/* ops_glue.h — the glue functions of every op family (src/cuda/ops_<family>.c), for the table in ops.c.
 * Each family appends its own section. */
#ifndef MAGNA_CUDA_OPS_GLUE_H
#define MAGNA_CUDA_OPS_GLUE_H

#include "ops.h"

/* ---- attention and the recurrent ops (ops_attention.c, ops_rnn.c) ---- */
magna_status cuda_attention_forward(magna_graph *g, magna_node *n);
void cuda_attention_backward(magna_graph *g, magna_node *n);
/* LSTM, GRU and the tanh RNN alike (the node's op says which) */
magna_status cuda_rnn_forward(magna_graph *g, magna_node *n);
void cuda_rnn_backward(magna_graph *g, magna_node *n);

#endif
