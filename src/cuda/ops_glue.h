/* ops_glue.h — the glue functions of every op family (src/cuda/ops_<family>.c), for the table in ops.c.
 * Each family appends its own section. */
#ifndef MAGNA_CUDA_OPS_GLUE_H
#define MAGNA_CUDA_OPS_GLUE_H

#include "ops.h"

/* ---- matmul, norms, convolution and pooling (ops_matmul.c, ops_norm.c, ops_conv.c) ---- */
magna_status cuda_matmul_forward(magna_graph *g, magna_node *n);
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

#endif
