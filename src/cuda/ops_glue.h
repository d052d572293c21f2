/* ops_glue.h — the glue functions of every op family (src/cuda/ops_<family>.c), for the table in ops.c.
 * Each family appends its own section. */
#ifndef MAGNA_CUDA_OPS_GLUE_H
#define MAGNA_CUDA_OPS_GLUE_H

#include "ops.h"

/* ---- matmul, norms, convolution and pooling (ops_matmul.c, ops_norm.c, ops_conv.c) ---- */
/* a layer-norm node's optional scale and shift (in[1], in[2] when ip[0], ip[1] say they are there) */
static inline magna_node *cuda_ln_gamma(const magna_node *n) { return n->ip[0] ? n->in[1] : NULL; }
static inline magna_node *cuda_ln_beta(const magna_node *n) { return n->ip[1] ? n->in[1 + (n->ip[0] ? 1 : 0)] : NULL; }
magna_status cuda_matmul_forward(magna_graph *g, magna_node *n);
/* the product of n and its bias add h in one GEMM, written into h (fuse.c) */
magna_status cuda_matmul_bias_forward(magna_graph *g, magna_node *n, magna_node *h);
void cuda_matmul_backward(magna_graph *g, magna_node *n);
magna_status cuda_layer_norm_forward(magna_graph *g, magna_node *n);
void cuda_layer_norm_backward(magna_graph *g, magna_node *n);
magna_status cuda_batch_norm_forward(magna_graph *g, magna_node *n);
void cuda_batch_norm_backward(magna_graph *g, magna_node *n);
magna_status cuda_conv2d_forward(magna_graph *g, magna_node *n);
void cuda_conv2d_backward(magna_graph *g, magna_node *n);
magna_status cuda_max_pool2d_forward(magna_graph *g, magna_node *n);
void cuda_max_pool2d_backward(magna_graph *g, magna_node *n);
magna_status cuda_avg_pool2d_forward(magna_graph *g, magna_node *n);
void cuda_avg_pool2d_backward(magna_graph *g, magna_node *n);
/* bf16 elements of cuBLASLt's staging that the GEMMs of node n (matmul, conv2d; 0 for other ops) may need in
 * mixed precision: compile reserves the graph's largest (magna_cuda_blas_reserve) */
size_t cuda_gemm_stage_elems(const magna_graph *g, const magna_node *n);
#include <stdint.h>

/* ---- the elementwise family (cuda-ops-a): ops_elementwise.c, ops_shape.c, ops_reduce.c ---------------- */

/* n elements of `size` bytes of device memory in a malloc'd host copy; NULL with the graph's error set
 * (what: the op, for the message). For error messages that name the bad element, as the CPU op does. */
void *cuda_fetch_all(magna_graph *g, const void *device, int64_t n, size_t size, const char *what);
/* The host's copy of a node's values at forward time, when there is one: an input's mirror (what this
 * forward uploaded), also through views of an input (reshape); NULL for values made on the device. Ops that
 * must refuse bad data (ids, labels, targets) check it there, as the CPU op does, without waiting for the
 * device; only data made on the device is flagged by the kernel and read back (a synchronisation). */
const void *cuda_host_values(const magna_node *x);

magna_status cuda_unary_forward(magna_graph *g, magna_node *n); /* every unary and scalar op */
void cuda_unary_backward(magna_graph *g, magna_node *n);
magna_status cuda_binary_forward(magna_graph *g, magna_node *n); /* add, sub, mul, div, pow */
void cuda_binary_backward(magna_graph *g, magna_node *n);
magna_status cuda_dropout_forward(magna_graph *g, magna_node *n);
void cuda_dropout_backward(magna_graph *g, magna_node *n);
magna_status cuda_reshape_forward(magna_graph *g, magna_node *n);
void cuda_reshape_backward(magna_graph *g, magna_node *n);
magna_status cuda_permute_forward(magna_graph *g, magna_node *n);
void cuda_permute_backward(magna_graph *g, magna_node *n);
magna_status cuda_slice_forward(magna_graph *g, magna_node *n);
void cuda_slice_backward(magna_graph *g, magna_node *n);
magna_status cuda_concat_forward(magna_graph *g, magna_node *n);
void cuda_concat_backward(magna_graph *g, magna_node *n);
magna_status cuda_embedding_forward(magna_graph *g, magna_node *n);
void cuda_embedding_backward(magna_graph *g, magna_node *n);
magna_status cuda_reduce_forward(magna_graph *g, magna_node *n); /* sum, mean, max */
void cuda_reduce_backward(magna_graph *g, magna_node *n);
magna_status cuda_softmax_forward(magna_graph *g, magna_node *n); /* softmax, log-softmax */
void cuda_softmax_backward(magna_graph *g, magna_node *n);
magna_status cuda_mse_forward(magna_graph *g, magna_node *n);
void cuda_mse_backward(magna_graph *g, magna_node *n);
magna_status cuda_cross_entropy_forward(magna_graph *g, magna_node *n);
void cuda_cross_entropy_backward(magna_graph *g, magna_node *n);
magna_status cuda_bce_forward(magna_graph *g, magna_node *n);
void cuda_bce_backward(magna_graph *g, magna_node *n);
/* ---- attention and the recurrent ops (ops_attention.c, ops_rnn.c) ---- */
magna_status cuda_attention_forward(magna_graph *g, magna_node *n);
void cuda_attention_backward(magna_graph *g, magna_node *n);
/* LSTM, GRU and the tanh RNN alike (the node's op says which) */
magna_status cuda_rnn_forward(magna_graph *g, magna_node *n);
void cuda_rnn_backward(magna_graph *g, magna_node *n);

#endif
