/* binary.c — add, sub, mul, div, pow with NumPy broadcasting.
 * out[i] = f(a[ia(i)], b[ib(i)]) where ia/ib map an output index to each operand by ignoring the
 * dimensions it is broadcast over (stride 0). Backward sums the gradient over those dimensions. */
#include "common.h"
#include "../cuda/launch.h"
#include "matmul.h"

#include <math.h>
#include <string.h>

/* The output seen as rows of its last dimension; each operand has a stride per output dim. */
typedef struct bcast {
    int nd;
    int64_t shape[MAGNA_MAX_DIMS];
    int64_t sa[MAGNA_MAX_DIMS], sb[MAGNA_MAX_DIMS];
    int64_t inner, rows;
} bcast;

static void operand_strides(const magna_node *x, int nd, const int64_t *oshape, int64_t *s) {
    int64_t stride = 1;
    for (int d = nd - 1; d >= 0; d--) {
        int xd = d - (nd - x->ndim);
        int64_t size = xd >= 0 ? x->shape[xd] : 1;
        s[d] = size == 1 && oshape[d] != 1 ? 0 : stride;
        stride *= size;
    }
}

static void bcast_init(bcast *b, const magna_node *n) {
    b->nd = n->ndim;
    for (int d = 0; d < n->ndim; d++) b->shape[d] = n->shape[d];
    operand_strides(n->in[0], n->ndim, n->shape, b->sa);
    operand_strides(n->in[1], n->ndim, n->shape, b->sb);
    b->inner = n->shape[n->ndim - 1];
    b->rows = n->numel / b->inner;
}

/* Offsets of row r (all dims but the last) in a and b. */
static inline void row_offsets(const bcast *b, int64_t r, int64_t *oa, int64_t *ob) {
    int64_t a = 0, c = 0;
    for (int d = b->nd - 2; d >= 0; d--) {
        int64_t i = r % b->shape[d];
        r /= b->shape[d];
        a += i * b->sa[d];
        c += i * b->sb[d];
    }
    *oa = a, *ob = c;
}

static magna_status binary_infer(magna_graph *g, magna_node *n) {
    const char *name = magna_op_table[n->op]->name;
    magna_node *a = n->in[0], *b = n->in[1];
    magna_status st;
    if ((st = require_dtype(g, n, 0, MAGNA_F32)) || (st = require_dtype(g, n, 1, MAGNA_F32))) return st;
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    int64_t shape[MAGNA_MAX_DIMS];
    for (int d = 0; d < nd; d++) {
        int da = d - (nd - a->ndim), db = d - (nd - b->ndim);
        int64_t x = da >= 0 ? a->shape[da] : 1, y = db >= 0 ? b->shape[db] : 1;
        if (x != y && x != 1 && y != 1) {
            char sa[SHAPE_STR_MAX], sb[SHAPE_STR_MAX];
            return graph_error(g, MAGNA_ERR_SHAPE, "%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)", name,
                               shape_str(a, sa, sizeof sa), shape_str(b, sb, sizeof sb), d, (long long)x, (long long)y);
        }
        shape[d] = x == 1 ? y : x;
    }
    node_set_shape(n, nd, shape);
    n->dtype = MAGNA_F32;
    /* the CUDA backward's scratch: a broadcast operand's gradient (a bias's) is a reduction over many rows
     * that runs in two passes over the whole GPU (cuda/elementwise.cu); the CPU needs none */
    n->workspace_bytes = 0;
    for (int i = 0; i < 2; i++) {
        const size_t w = n->in[i]->numel < n->numel ? magna_reduce_split_workspace(n->in[i]->numel, n->numel / n->in[i]->numel) : 0;
        if (w > n->workspace_bytes) n->workspace_bytes = w;
    }
    return MAGNA_OK;
}

static inline float apply(op_id op, float x, float y) {
    switch (op) {
    case OP_ADD: return x + y;
    case OP_SUB: return x - y;
    case OP_MUL: return x * y;
    case OP_DIV: return x / y;
    default: return powf(x, y);
    }
}

static magna_status binary_forward(magna_graph *g, magna_node *n) {
    (void)g;
    if (n->alias_input) return MAGNA_OK; /* a bias add its matmul did (n->in[0]->bias_add, plan.c) */
    const float *A = fval(n->in[0]), *B = fval(n->in[1]);
    float *Y = fval(n);
    const op_id op = n->op;
    if (n->in[0]->numel == n->numel && n->in[1]->numel == n->numel) { /* same shape: one flat loop */
        const int64_t count = n->numel;
        switch (op) {
        case OP_ADD:
PARALLEL_FOR(count > PAR_MIN, i, count, Y[i] = A[i] + B[i];);
            break;
        case OP_MUL:
PARALLEL_FOR(count > PAR_MIN, i, count, Y[i] = A[i] * B[i];);
            break;
        default:
PARALLEL_FOR(count > PAR_MIN, i, count, Y[i] = apply(op, A[i], B[i]););
        }
        return MAGNA_OK;
    }
    bcast b;
    bcast_init(&b, n);
    const int64_t sa = b.sa[b.nd - 1], sb = b.sb[b.nd - 1], inner = b.inner;
PARALLEL_FOR(n->numel > PAR_MIN, r, b.rows, 
        int64_t oa, ob;
        row_offsets(&b, r, &oa, &ob);
        const float *a = A + oa, *c = B + ob;
        float *y = Y + r * inner;
        if (op == OP_ADD && sa == 1 && sb == 1)
            for (int64_t j = 0; j < inner; j++) y[j] = a[j] + c[j];
        else if (op == OP_ADD && sa == 1 && sb == 0)
            for (int64_t j = 0; j < inner; j++) y[j] = a[j] + c[0];
        else
            for (int64_t j = 0; j < inner; j++) y[j] = apply(op, a[j * sa], c[j * sb]);
    );
    return MAGNA_OK;
}

/* d out / d operand `which` at (x = a value, y = b value, o = output). */
static inline float partial(op_id op, int which, float x, float y, float o) {
    switch (op) {
    case OP_ADD: return 1.0f;
    case OP_SUB: return which == 0 ? 1.0f : -1.0f;
    case OP_MUL: return which == 0 ? y : x;
    case OP_DIV: return which == 0 ? 1.0f / y : -x / (y * y);
    default: return which == 0 ? y * powf(x, y - 1.0f) : o * logf(x);
    }
}

/* g[j] += sign * sum over rows r of dy[r * ld + j], j < cols, the rows in order. */
ISA_CLONES static void sum_rows_into(float *restrict g, const float *restrict dy, int64_t rows, int64_t ld,
                                     int64_t cols, float sign) {
    for (int64_t r = 0; r < rows; r++) {
        const float *restrict d = dy + r * ld;
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) g[j] += sign * d[j];
    }
}

/* Accumulates the gradient of one operand, or assigns it as its first writer (grad_assigns): a full-size
 * operand's elements are each written once; a broadcast one is zeroed first (it is small) and summed into.
 * Rows run in parallel only when that operand is not broadcast (then no two rows write the same element). */
static void binary_backward_operand(magna_node *n, const bcast *b, int which) {
    magna_node *x = n->in[which];
    float *G = x->grad;
    if (!G) return;
    const float *A = fval(n->in[0]), *B = fval(n->in[1]), *Y = fval(n), *DY = n->grad;
    const op_id op = n->op;
    const int64_t sa = b->sa[b->nd - 1], sb = b->sb[b->nd - 1], inner = b->inner;
    const int64_t sg = which == 0 ? sa : sb;
    const bool full = x->numel == n->numel, assign = full && grad_assigns(n, which);
    if (G == DY) return; /* a residual operand sharing this add's gradient (plan.c): dx = dy already */
    if (!full && grad_assigns(n, which)) memset(G, 0, (size_t)x->numel * sizeof *G);
    const int threads = omp_get_max_threads();
    if (!full && sg == 1 && n->numel > PAR_MIN && threads > 1 && inner >= 16 * threads) {
        /* A broadcast operand whose last dim is its own (a bias [N] over [rows, N]): each thread sums its own
         * columns over every row, in row order, so the sums are the serial loop's, bit for bit. A bias [N] of an
         * add or sub (every row's offset 0) through a vectorised row loop. */
        const bool bias_row = x->numel == inner && (op == OP_ADD || op == OP_SUB);
        const float sign = op == OP_SUB && which == 1 ? -1.0f : 1.0f;
        PARALLEL_FOR(true, t, threads, {
            const int64_t j0 = inner * t / threads, j1 = inner * (t + 1) / threads;
            if (bias_row)
                sum_rows_into(G + j0, DY + j0, b->rows, inner, j1 - j0, sign);
            else
                for (int64_t r = 0; r < b->rows; r++) {
                    int64_t oa, ob;
                    row_offsets(b, r, &oa, &ob);
                    float *gx = G + (which == 0 ? oa : ob);
                    const float *dy = DY + r * inner, *y = Y + r * inner, *a = A + oa, *c = B + ob;
                    if (op == OP_ADD || op == OP_SUB)
                        for (int64_t j = j0; j < j1; j++) gx[j] += sign * dy[j];
                    else
                        for (int64_t j = j0; j < j1; j++) gx[j] += dy[j] * partial(op, which, a[j * sa], c[j * sb], y[j]);
                }
        });
        return;
    }
PARALLEL_FOR(full && n->numel > PAR_MIN, r, b->rows, 
        int64_t oa, ob;
        row_offsets(b, r, &oa, &ob);
        float *gx = G + (which == 0 ? oa : ob);
        const float *dy = DY + r * inner, *y = Y + r * inner, *a = A + oa, *c = B + ob;
        if (assign && (op == OP_ADD || op == OP_SUB)) { /* full: gx and dy are both contiguous */
            const float sign = op == OP_SUB && which == 1 ? -1.0f : 1.0f;
            for (int64_t j = 0; j < inner; j++) gx[j] = sign * dy[j];
        } else if (assign) {
            for (int64_t j = 0; j < inner; j++) gx[j] = dy[j] * partial(op, which, a[j * sa], c[j * sb], y[j]);
        } else if (op == OP_ADD || (op == OP_SUB && which == 0)) {
            if (sg == 1)
                for (int64_t j = 0; j < inner; j++) gx[j] += dy[j];
            else {
                float s = 0;
                for (int64_t j = 0; j < inner; j++) s += dy[j];
                gx[0] += s;
            }
        } else {
            for (int64_t j = 0; j < inner; j++) gx[j * sg] += dy[j] * partial(op, which, a[j * sa], c[j * sb], y[j]);
        }
    );
}

static void binary_backward(magna_graph *g, magna_node *n) {
    (void)g;
    bcast b;
    bcast_init(&b, n);
    if (!n->alias_input) binary_backward_operand(n, &b, 0); /* fused: the matmul reads this node's grad itself */
    if (!(n->alias_input && magna_matmul_sums_bias(n->in[0]))) binary_backward_operand(n, &b, 1); /* or sums the bias's */
}

/* add and sub never read their operands in backward; the others do (pow reads its output too). */
const magna_op_def op_def_add = {"add", OPF_GRAD_ASSIGN, binary_infer, binary_forward, binary_backward};
const magna_op_def op_def_sub = {"sub", OPF_GRAD_ASSIGN, binary_infer, binary_forward, binary_backward};
const magna_op_def op_def_mul = {"mul", OPF_BWD_INPUTS | OPF_GRAD_ASSIGN, binary_infer, binary_forward, binary_backward};
const magna_op_def op_def_div = {"div", OPF_BWD_INPUTS | OPF_GRAD_ASSIGN, binary_infer, binary_forward, binary_backward};
const magna_op_def op_def_pow = {"pow", OPF_BWD_INPUTS | OPF_BWD_OUTPUT | OPF_GRAD_ASSIGN, binary_infer, binary_forward, binary_backward};

static magna_node *binary(magna_graph *g, op_id op, magna_node *a, magna_node *b) {
    if (!g) return NULL;
    magna_node *in[2] = {a, b};
    return graph_add_node(g, op, 2, in, NULL, 0, NULL, 0);
}

magna_node *magna_add(magna_graph *g, magna_node *a, magna_node *b) { return binary(g, OP_ADD, a, b); }
magna_node *magna_sub(magna_graph *g, magna_node *a, magna_node *b) { return binary(g, OP_SUB, a, b); }
magna_node *magna_mul(magna_graph *g, magna_node *a, magna_node *b) { return binary(g, OP_MUL, a, b); }
magna_node *magna_div(magna_graph *g, magna_node *a, magna_node *b) { return binary(g, OP_DIV, a, b); }
magna_node *magna_pow(magna_graph *g, magna_node *a, magna_node *b) { return binary(g, OP_POW, a, b); }
