/* internal.h — what the layer files of src/nn share. */
#ifndef MAGNA_NN_INTERNAL_H
#define MAGNA_NN_INTERNAL_H

#include "../graph/internal.h"
#include "magna/nn.h"

/* The param "<layer>.<what>", with an L2 lambda when l2 > 0. */
magna_node *nn_param(magna_graph *g, const char *layer, const char *what, int ndim, const int64_t *shape,
                     magna_init init, float l2);
/* False (with the graph's error set when x exists) unless x has min_ndim..max_ndim dims. */
bool nn_check_input(magna_graph *g, const char *layer, magna_node *x, int min_ndim, int max_ndim);

#endif
