/* test_errors.c — wrong shapes, dtypes, sizes and call orders through the public API: each returns an
 * error whose message names the op and what it got; nothing aborts. */
#include "check.h"
#include "magna.h"

#include <string.h>

#define SHAPE(...) ((int64_t[]){__VA_ARGS__})

/* Builds one bad thing in a fresh graph; checks the status at compile and that the message has `want`. */
#define EXPECT_BUILD_ERROR(status_, want, ...)                                                                       \
    do {                                                                                                             \
        magna_graph *g = magna_graph_new(1);                                                                         \
        magna_node *out = (__VA_ARGS__);                                                                             \
        magna_status st = magna_graph_compile(g, out);                                                               \
        CHECK(out == NULL && st == (status_) && strstr(magna_graph_errmsg(g), want), "got status %d, message '%s'",  \
              (int)st, magna_graph_errmsg(g));                                                                       \
        printf("error %-14s %s\n", magna_status_name(st), magna_graph_errmsg(g));                                   \
        magna_graph_free(g);                                                                                         \
    } while (0)

static magna_node *f32(magna_graph *g, const char *name, int nd, const int64_t *s) {
    return magna_input(g, name, MAGNA_F32, nd, s);
}

int main(void) {
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "matmul: inner dimensions differ: a [32, 784] and b [128, 64]",
                       magna_matmul(g, f32(g, "a", 2, SHAPE(32, 784)), f32(g, "b", 2, SHAPE(128, 64)), false, false));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "batch dimensions differ",
                       magna_matmul(g, f32(g, "a", 3, SHAPE(2, 3, 4)), f32(g, "b", 3, SHAPE(3, 4, 5)), false, false));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "add: shapes [4, 3] and [4] do not broadcast",
                       magna_add(g, f32(g, "a", 2, SHAPE(4, 3)), f32(g, "b", 1, SHAPE(4))));
    EXPECT_BUILD_ERROR(MAGNA_ERR_DTYPE, "cross_entropy: input 1 ('y') is float32, expected int32",
                       magna_cross_entropy(g, f32(g, "x", 2, SHAPE(4, 3)), f32(g, "y", 1, SHAPE(4))));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "cross_entropy: logits [4, 3]",
                       magna_cross_entropy(g, f32(g, "x", 2, SHAPE(4, 3)),
                                           magna_input(g, "y", MAGNA_I32, 1, SHAPE(5))));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "mse: prediction [4, 1] and target [4]",
                       magna_mse(g, f32(g, "p", 2, SHAPE(4, 1)), f32(g, "t", 1, SHAPE(4))));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "reshape: cannot reshape [4, 6] (24 elements) into [5, -1]",
                       magna_reshape(g, f32(g, "x", 2, SHAPE(4, 6)), 2, SHAPE(5, -1)));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "input 'x': every dimension must be positive",
                       f32(g, "x", 2, SHAPE(4, 0)));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "ndim must be 1..8, got 9",
                       f32(g, "x", 9, SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)));
    EXPECT_BUILD_ERROR(MAGNA_ERR_UNSUPPORTED, "dtype bfloat16 is not supported yet",
                       magna_input(g, "x", MAGNA_BF16, 1, SHAPE(4)));
    EXPECT_BUILD_ERROR(MAGNA_ERR_ARG, "permute: the permutation is not one of the 3 axes of [2, 3, 4]",
                       magna_permute(g, f32(g, "x", 3, SHAPE(2, 3, 4)), (int[]){0, 0, 1}));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "slice: [5:9] selects nothing of axis 1 of [2, 4]",
                       magna_slice(g, f32(g, "x", 2, SHAPE(2, 4)), 1, 5, 9, 1));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "concat: input 1 [2, 5] does not match input 0 [3, 4] except on axis 1",
                       magna_concat(g, 2, (magna_node *[]){f32(g, "a", 2, SHAPE(3, 4)), f32(g, "b", 2, SHAPE(2, 5))},
                                    1));
    EXPECT_BUILD_ERROR(MAGNA_ERR_ARG, "dropout: p must be in [0, 1), got 1",
                       magna_dropout(g, f32(g, "x", 1, SHAPE(4)), 1.0f));
    EXPECT_BUILD_ERROR(MAGNA_ERR_ARG, "axes mask 0x8 does not name axes of [2, 3]",
                       magna_sum(g, f32(g, "x", 2, SHAPE(2, 3)), 0x8, false));
    /* the first error is kept; later builders given NULL return NULL quietly */
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "matmul: inner dimensions differ",
                       magna_relu(g, magna_tanh(g, magna_matmul(g, f32(g, "a", 2, SHAPE(2, 3)),
                                                                f32(g, "b", 2, SHAPE(4, 5)), false, false))));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "conv2d",
                       magna_conv2d(g, f32(g, "x", 4, SHAPE(2, 3, 8, 8)),
                                    magna_param(g, "w", 4, SHAPE(4, 2, 3, 3), magna_init_zeros()), NULL,
                                    (magna_conv2d_opts){0}));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "max_pool2d",
                       magna_max_pool2d(g, f32(g, "x", 4, SHAPE(1, 1, 2, 2)),
                                        (magna_pool2d_opts){.kernel_h = 3, .kernel_w = 3}));
    EXPECT_BUILD_ERROR(MAGNA_ERR_SHAPE, "attention",
                       magna_attention(g, f32(g, "q", 3, SHAPE(2, 4, 6)), f32(g, "k", 3, SHAPE(2, 4, 6)),
                                       f32(g, "v", 3, SHAPE(2, 4, 6)), 4, true));
    EXPECT_BUILD_ERROR(MAGNA_ERR_DTYPE, "embedding",
                       magna_embedding(g, magna_param(g, "t", 2, SHAPE(10, 4), magna_init_zeros()),
                                       f32(g, "ids", 1, SHAPE(3))));

    { /* a node from another graph */
        magna_graph *g = magna_graph_new(1), *h = magna_graph_new(1);
        magna_node *out = magna_relu(g, f32(h, "x", 1, SHAPE(3)));
        CHECK(out == NULL && strstr(magna_graph_errmsg(g), "belongs to another graph"), "%s", magna_graph_errmsg(g));
        magna_graph_free(g), magna_graph_free(h);
    }
    { /* calls out of order, bad sizes, bad data at run time */
        magna_graph *g = magna_graph_new(1);
        magna_node *x = f32(g, "x", 2, SHAPE(4, 3));
        magna_node *y = magna_input(g, "y", MAGNA_I32, 1, SHAPE(4));
        magna_node *w = magna_param(g, "w", 2, SHAPE(3, 3), magna_init_xavier_uniform());
        magna_node *loss = magna_cross_entropy(g, magna_matmul(g, x, w, false, false), y);
        CHECK(magna_graph_forward(g) == MAGNA_ERR_STATE, "forward before compile: %s", magna_graph_errmsg(g));
        CHECK(magna_graph_compile(g, loss) == MAGNA_OK, "%s", magna_graph_errmsg(g));
        CHECK(magna_graph_compile(g, loss) == MAGNA_ERR_STATE, "compile twice");
        CHECK(magna_relu(g, x) == NULL && strstr(magna_graph_errmsg(g), "already compiled"), "build after compile");
        CHECK(magna_node_set(x, (float[5]){0}, 5) == MAGNA_ERR_SHAPE && strstr(magna_graph_errmsg(g), "got 5 values"),
              "%s", magna_graph_errmsg(g));
        CHECK(magna_graph_set_batch(g, 9) == MAGNA_ERR_ARG && strstr(magna_graph_errmsg(g), "outside 1..4"), "%s",
              magna_graph_errmsg(g));
        int32_t labels[4] = {0, 1, 7, 2};
        magna_node_set(y, labels, 4);
        CHECK(magna_graph_forward(g) == MAGNA_ERR_RANGE &&
                  strstr(magna_graph_errmsg(g), "label 7 at row 2 is outside [0, 3)"),
              "%s", magna_graph_errmsg(g));
        printf("error %-14s %s\n", magna_status_name(MAGNA_ERR_RANGE), magna_graph_errmsg(g));
        labels[2] = 2;
        magna_node_set(y, labels, 4);
        CHECK(magna_graph_forward(g) == MAGNA_OK, "forward after fixing the data: %s", magna_graph_errmsg(g));
        magna_error err;
        CHECK(magna_optimizer_new(g, (magna_optimizer_opts){.kind = MAGNA_SGD, .lr = -1}, &err) == NULL &&
                  err.status == MAGNA_ERR_ARG,
              "negative lr: %s", err.message);
        CHECK(magna_optimizer_new(g, (magna_optimizer_opts){.kind = MAGNA_ADAM, .lr = 1, .nesterov = true}, &err) ==
                  NULL,
              "nesterov with adam");
        magna_graph_free(g);
    }
    { /* embedding ids out of range fail forward with the position */
        magna_graph *g = magna_graph_new(1);
        magna_node *ids = magna_input(g, "ids", MAGNA_I32, 2, SHAPE(2, 3));
        magna_node *e = magna_embedding(g, magna_param(g, "t", 2, SHAPE(10, 4), magna_init_normal(0, 1)), ids);
        magna_graph_keep(g, e);
        CHECK(magna_graph_compile(g, NULL) == MAGNA_OK, "%s", magna_graph_errmsg(g));
        magna_node_set(ids, (int32_t[]){1, 2, 3, 4, 10, 5}, 6);
        CHECK(magna_graph_forward(g) == MAGNA_ERR_RANGE && strstr(magna_graph_errmsg(g), "10"), "%s",
              magna_graph_errmsg(g));
        printf("error %-14s %s\n", magna_status_name(MAGNA_ERR_RANGE), magna_graph_errmsg(g));
        magna_node_set(ids, (int32_t[]){1, 2, 3, 4, -1, 5}, 6);
        CHECK(magna_graph_forward(g) == MAGNA_ERR_RANGE, "negative id: %s", magna_graph_errmsg(g));
        magna_graph_free(g);
    }
    CHECK(magna_graph_status(NULL) == MAGNA_ERR_ARG, "NULL graph");
    CHECK(magna_relu(NULL, NULL) == NULL, "NULL graph builder");
    return check_finish("test_errors");
}
