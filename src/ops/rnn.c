/* rnn.c — fused recurrent ops: LSTM, GRU and the tanh RNN, each running a whole sequence in one op.
 *
 * Inputs, in order: x [B, T, I], w_ih [I, G*H], w_hh [H, G*H], then optionally b_ih and b_hh [G*H] (both
 * or neither: PyTorch's two biases, which GRU needs apart), h0 [B, H], c0 [B, H] (LSTM). G is the number
 * of gates, in PyTorch's order: LSTM i, f, g, o (4); GRU r, z, n (3), with r applied to (W_hn h + b_hn);
 * the RNN 1. ip: [0] has biases, [1] has h0, [2] has c0; [3] the threads backward's bias sums have scratch
 * for (set by infer, never raised after compile: the workspace is planned by then).
 *
 * Output: the LSTM's is [B, T, 2, H], h and c of every step side by side; the GRU's and RNN's [B, T, H],
 * the h of every step. The final states are slices of it (magna_rnn_final_h / _c), so gradients from the
 * sequence and from the final states meet in this op's one output gradient.
 *
 * Forward: the input projection of every step is one GEMM over B*T rows (plus the biases), written into
 * the gate buffer (saved for backward; for the RNN, the output itself); each step then adds
 * h_{t-1} W_hh with one GEMM of B rows and runs the gate math row by row, activations stored in place.
 * Backward walks the steps back computing the pre-activation gradients dG of every step (one GEMM per
 * step carries dh back through W_hh), then dW_ih, dx, dW_hh and the biases are big GEMMs (and column
 * sums) over all B*T rows at the end. Scratch comes from the workspace declared at infer; nothing
 * allocates. The saved gates and tanh(c) (or W_hn h), dG and the gathered h_{t-1} are time-major, [T, B, ...]:
 * each step reads and writes one block of B rows, where [B, T, ...] had made every row its own page (the layer's
 * bf16 forward and backward took 8% less time). x, its gradient and the output keep the graph's [B, T, ...].
 * In a bf16 graph on a CPU with avx512_bf16 those four big products (the input projection, dW_ih, dx, dW_hh) take
 * bf16 operands with float32 sums on oneDNN (gemm_bf16.h), and the step products run on the bf16 panel kernel;
 * the gate math stays float32. */
#include "common.h"
#include "gemm_bf16.h"
#include "rnn.h"

#include <immintrin.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The bf16 GEMMs (made at infer, in n->kernel_state) and where their bf16 operands go in the workspace, past
 * the float32 layout: [scratchpad | x (BT I) | w_ih (I G) | dG (BT G) | h_{t-1} (BT H)]. */
typedef struct rnn_bf16 {
    int threads;
    magna_gemm_bf16 *proj, *dw_ih, *dx, *dw_hh;
    size_t base, x16, w16, dg16, h16, bias; /* byte offsets in the workspace */
} rnn_bf16;

static void rnn_release(magna_node *n) {
    rnn_bf16 *st = n->kernel_state;
    if (!st) return;
    magna_gemm_bf16_free(st->proj), magna_gemm_bf16_free(st->dw_ih);
    magna_gemm_bf16_free(st->dx), magna_gemm_bf16_free(st->dw_hh);
    free(st);
    n->kernel_state = NULL;
}

/* Makes them for the node's shapes when the graph runs bf16 here; *bytes grows by their workspace. */
static magna_status rnn_bf16_make(magna_graph *g, magna_node *n, const rnn_args *a, size_t *bytes) {
    if (!magna_gemm_bf16_wanted(g)) return MAGNA_OK;
    rnn_bf16 *st = calloc(1, sizeof *st);
    if (!st) return graph_error(g, MAGNA_ERR_NOMEM, "%s: out of memory", magna_op_table[n->op]->name);
    n->kernel_state = st;
    st->threads = omp_get_max_threads();
    const int64_t BT = a->B * a->T, I = a->I, G = a->G, H = a->H;
    size_t scratch = 0;
    int status = 0;
    /* the projection adds the biases itself (both summed into one row, bias) */
    bool ok = (st->proj = magna_gemm_bf16_make(BT, G, I, false, false, false, a->b_ih != NULL, false, &scratch, &status));
    if (ok && a->w_ih->requires_grad) ok = (st->dw_ih = magna_gemm_bf16_make(I, G, BT, true, false, true, false, false, &scratch, &status));
    if (ok && a->x->requires_grad) ok = (st->dx = magna_gemm_bf16_make(BT, I, G, false, true, false, false, false, &scratch, &status));
    if (ok && a->w_hh->requires_grad) ok = (st->dw_hh = magna_gemm_bf16_make(H, G, BT, true, false, true, false, false, &scratch, &status));
    if (!ok) {
        rnn_release(n);
        return graph_error(g, MAGNA_ERR_UNSUPPORTED, "%s: oneDNN bf16 matmul: %s", magna_op_table[n->op]->name,
                           magna_gemm_bf16_status(status));
    }
    st->base = round64(*bytes);
    st->x16 = st->base + round64(scratch);
    st->w16 = st->x16 + round64((size_t)(BT * I) * 2);
    st->dg16 = st->w16 + round64((size_t)(I * G) * 2);
    st->h16 = st->dg16 + round64((size_t)(BT * G) * 2);
    st->bias = st->h16 + round64((size_t)(BT * H) * 2);
    *bytes = st->bias + round64((size_t)G * sizeof(float));
    return MAGNA_OK;
}

static const rnn_bf16 *rnn_bf16_ready(const magna_node *n) {
    const rnn_bf16 *st = n->kernel_state;
    return st && !omp_in_parallel() && omp_get_max_threads() == st->threads ? st : NULL;
}

static void *ws_at(const magna_graph *g, size_t off) { return (char *)g->workspace + off; }

rnn_args rnn_args_of(const magna_node *n) {
    rnn_args a = {.cell = cell_of(n)};
    a.x = n->in[0], a.w_ih = n->in[1], a.w_hh = n->in[2];
    int k = 3;
    if (n->ip[0]) a.b_ih = n->in[k++], a.b_hh = n->in[k++];
    if (n->ip[1]) a.h0 = n->in[k++];
    if (n->ip[2]) a.c0 = n->in[k++];
    a.B = a.x->shape[0], a.T = a.x->shape[1], a.I = a.x->shape[2];
    a.H = a.w_hh->shape[0], a.G = gates_of(a.cell) * a.H;
    a.threads = n->ip[3] > 0 ? (int)n->ip[3] : 1;
    return a;
}

/* The step products' blocks (see step_product): panels of 32 columns, blocks of 8 rows. */

size_t rnn_ws_layout(const rnn_args *a, float *base, rnn_ws *w) {
    size_t off = 0;
#define TAKE(field, floats)                                                                                          \
    do {                                                                                                             \
        if (w) w->field = (floats) != 0 ? base + off : NULL;                                                         \
        off += rnn_round16(floats);                                                                                  \
    } while (0)
    TAKE(zeros, a->H);
    /* the packed weight and rows of the step products: [H, G] forward, [G, H] backward, same size */
    TAKE(wpack, (int64_t)magna_panel_b_floats(a->G, a->G > a->H ? a->G : a->H));
    TAKE(apack, a->threads * (int64_t)rnn_round16((int64_t)magna_panel_a_floats(a->B, a->G))); /* one per thread */
    const size_t fwd_start = off;
    TAKE(hproj, a->cell == CELL_GRU ? a->B * a->G : 0);
    const size_t fwd = off;
    off = fwd_start;
    TAKE(dgx, a->B * a->T * a->G);
    TAKE(dgh, a->cell == CELL_GRU ? a->B * a->T * a->G : 0);
    TAKE(hprev, a->B * a->T * (a->H > a->I ? a->H : a->I)); /* (bf16 backward's dx lands here first) */
    TAKE(dh, a->B * a->H);
    TAKE(dc, a->cell == CELL_LSTM ? a->B * a->H : 0);
    TAKE(colsum, (MAGNA_COLSUM_PARTS + 1) * a->G); /* a row per fixed part of the column sums, then the sums */
#undef TAKE
    return off > fwd ? off : fwd;
}

size_t rnn_saved_floats(const rnn_args *a) {
    if (a->cell == CELL_RNN) return 0;
    return rnn_round16(a->B * a->T * a->G) + rnn_round16(a->B * a->T * a->H);
}

static magna_status rnn_infer(magna_graph *g, magna_node *n) {
    const char *op = magna_op_table[n->op]->name;
    for (int i = 0; i < n->n_in; i++) {
        magna_status st = require_dtype(g, n, i, MAGNA_F32);
        if (st != MAGNA_OK) return st;
    }
    const rnn_args a = rnn_args_of(n);
    char s1[SHAPE_STR_MAX], s2[SHAPE_STR_MAX], s3[SHAPE_STR_MAX];
    if (a.x->ndim != 3)
        return graph_error(g, MAGNA_ERR_SHAPE, "%s: x must be [B, T, I], got %s", op, shape_str(a.x, s1, sizeof s1));
    if (a.w_hh->ndim != 2 || a.w_hh->shape[1] != a.G)
        return graph_error(g, MAGNA_ERR_SHAPE, "%s: w_hh must be [H, %d*H], got %s", op, gates_of(a.cell),
                           shape_str(a.w_hh, s1, sizeof s1));
    if (a.w_ih->ndim != 2 || a.w_ih->shape[0] != a.I || a.w_ih->shape[1] != a.G)
        return graph_error(g, MAGNA_ERR_SHAPE, "%s: w_ih must be [I, %d*H] = [%lld, %lld] for x %s and w_hh %s, got %s",
                           op, gates_of(a.cell), (long long)a.I, (long long)a.G, shape_str(a.x, s1, sizeof s1),
                           shape_str(a.w_hh, s2, sizeof s2), shape_str(a.w_ih, s3, sizeof s3));
    const magna_node *bias[2] = {a.b_ih, a.b_hh};
    for (int k = 0; k < 2; k++)
        if (bias[k] && (bias[k]->ndim != 1 || bias[k]->shape[0] != a.G))
            return graph_error(g, MAGNA_ERR_SHAPE, "%s: %s must be [%lld] (%d*H), got %s", op, k ? "b_hh" : "b_ih",
                               (long long)a.G, gates_of(a.cell), shape_str(bias[k], s1, sizeof s1));
    const magna_node *state[2] = {a.h0, a.c0};
    for (int k = 0; k < 2; k++)
        if (state[k] && (state[k]->ndim != 2 || state[k]->shape[0] != a.B || state[k]->shape[1] != a.H))
            return graph_error(g, MAGNA_ERR_SHAPE, "%s: %s must be [B, H] = [%lld, %lld], got %s", op, k ? "c0" : "h0",
                               (long long)a.B, (long long)a.H, shape_str(state[k], s1, sizeof s1));
    if (a.B * a.T > INT_MAX || a.T * (a.G > 2 * a.H ? a.G : 2 * a.H) > INT_MAX || a.I > INT_MAX)
        return graph_error(g, MAGNA_ERR_SHAPE, "%s: x %s is too large (B*T, T*%d*H and I must fit in an int)", op,
                           shape_str(a.x, s1, sizeof s1), gates_of(a.cell));
    if (a.cell == CELL_LSTM)
        node_set_shape(n, 4, (int64_t[]){a.B, a.T, 2, a.H});
    else
        node_set_shape(n, 3, (int64_t[]){a.B, a.T, a.H});
    n->dtype = MAGNA_F32;
    n->saved_bytes = rnn_saved_floats(&a) * sizeof(float);
    int threads = omp_get_max_threads();
    if (g->compiled && threads > n->ip[3]) threads = (int)n->ip[3];
    n->ip[3] = threads;
    const rnn_args sized = rnn_args_of(n);
    size_t bytes = rnn_ws_layout(&sized, NULL, NULL) * sizeof(float);
    rnn_release(n); /* set_batch: the bf16 GEMMs are made for one batch */
    magna_status st = rnn_bf16_make(g, n, &sized, &bytes);
    if (st != MAGNA_OK) return st;
    if (g->compiled && bytes > g->workspace_bytes) { /* more than was planned: float32 */
        rnn_release(n);
        bytes = rnn_ws_layout(&sized, NULL, NULL) * sizeof(float);
    }
    n->workspace_bytes = bytes;
    return MAGNA_OK;
}

/* The row loops below are compiled for AVX-512 and AVX2 too (ISA_CLONES), picked at load time: the build targets
 * x86-64-v2, and at that width the gate math of backward took a tenth of the layer's time. */
/* ---- activations, in place and vectorised through magna_vexp ------------------------------------- */

/* Inlined into the row functions, so their AVX-512/AVX2 clones vectorise these loops at their width too. */
__attribute__((always_inline)) static inline void sigmoid_inplace(float *v, int64_t n) {
    for (int64_t j = 0; j < n; j++) v[j] = -v[j];
    magna_vexp(v, v, n);
    for (int64_t j = 0; j < n; j++) v[j] = 1.0f / (1.0f + v[j]);
}

/* tanh(x) = 2 / (1 + exp(-2x)) - 1: exact at both infinities (exp overflowing to inf gives -1), within about
 * 1e-7 (absolute) of tanhf elsewhere. */
__attribute__((always_inline)) static inline void tanh_inplace(float *v, int64_t n) {
    for (int64_t j = 0; j < n; j++) v[j] = -2.0f * v[j];
    magna_vexp(v, v, n);
    for (int64_t j = 0; j < n; j++) v[j] = 2.0f / (1.0f + v[j]) - 1.0f;
}

/* ---- the per-step product (src/core/gemm_panel.c) ----------------------------------------------------- */

/* The kernel when the CPU has AVX-512, unless MAGNA_RNN_STEP=sgemm asks for magna_sgemm (the path other CPUs
 * take, so the tests can run it here too). */
static bool have_avx512(void) {
    static int have = -1; /* every thread computes the same value: a race is harmless */
    if (have < 0) {
        const char *env = getenv("MAGNA_RNN_STEP");
        have = !(env && strcmp(env, "sgemm") == 0) && magna_panel_available(false);
    }
    return have;
}

/* Which step product runs: magna_sgemm (CPUs without AVX-512, or MAGNA_RNN_STEP=sgemm), the float32 kernel, or
 * the bf16 one (a bf16 graph, rnn_bf16_ready). */
enum { STEP_SGEMM, STEP_F32, STEP_BF16 };

static int step_kernel(const magna_node *n) {
    if (!have_avx512()) return STEP_SGEMM;
    return rnn_bf16_ready(n) ? STEP_BF16 : STEP_F32;
}

/* Packs op(W_hh) [k, n] once for every step's product, for the kernel that will run. */
static void step_pack(const rnn_ws *ws, int kernel, int k, int n, const float *w_hh, int G, bool transposed) {
    if (kernel == STEP_F32) magna_panel_pack_f32(k, n, w_hh, G, transposed, ws->wpack, true);
    if (kernel == STEP_BF16) magna_panel_pack_bf16(k, n, w_hh, G, transposed, (uint16_t *)ws->wpack, true);
}

/* ---- forward ------------------------------------------------------------------------------------- */

typedef struct rnn_fwd {
    rnn_args a;
    float *out, *gates, *aux; /* aux: LSTM tanh(c), GRU W_hn h + b_hn */
    rnn_ws ws;
} rnn_fwd;

/* h_{t-1} (or c_{t-1}) of row b: the previous step's output, the initial state, or zeros. */
static const float *prev_state(const rnn_fwd *f, int64_t b, int64_t t, int which) {
    const rnn_args *a = &f->a;
    if (t > 0) {
        if (a->cell == CELL_LSTM) return f->out + ((b * a->T + t - 1) * 2 + which) * a->H;
        return f->out + (b * a->T + t - 1) * a->H;
    }
    const magna_node *s = which ? a->c0 : a->h0;
    return s ? fval(s) + b * a->H : f->ws.zeros;
}

/* The row of (b, t) in the saved gates and auxiliary rows: time-major, [T, B, ...], so that a step's rows are one
 * block of memory; the RNN's gates are its output, [B, T, H]. */
static inline int64_t saved_row(const rnn_fwd *f, int64_t b, int64_t t) {
    return f->a.cell == CELL_RNN ? b * f->a.T + t : t * f->a.B + b;
}

ISA_CLONES static void lstm_row_forward(const rnn_fwd *f, int64_t b, int64_t t) {
    const int64_t H = f->a.H, row = b * f->a.T + t, srow = saved_row(f, b, t);
    float *gi = f->gates + srow * 4 * H, *gf = gi + H, *gg = gf + H, *go = gg + H;
    sigmoid_inplace(gi, 2 * H);
    tanh_inplace(gg, H);
    sigmoid_inplace(go, H);
    float *h = f->out + row * 2 * H, *c = h + H, *tc = f->aux + srow * H;
    const float *cp = prev_state(f, b, t, 1);
#pragma omp simd
    for (int64_t j = 0; j < H; j++) tc[j] = c[j] = gf[j] * cp[j] + gi[j] * gg[j];
    tanh_inplace(tc, H);
#pragma omp simd
    for (int64_t j = 0; j < H; j++) h[j] = go[j] * tc[j];
}

/* gates hold x W_ih + b_ih (+ b_hh for r and z); hp is h_{t-1} W_hh for this row. */
ISA_CLONES static void gru_row_forward(const rnn_fwd *f, int64_t b, int64_t t, const float *b_hn) {
    const int64_t H = f->a.H, row = b * f->a.T + t, srow = saved_row(f, b, t);
    float *r = f->gates + srow * 3 * H, *z = r + H, *nn = z + H, *hn = f->aux + srow * H;
    const float *hp = f->ws.hproj + b * 3 * H;
    for (int64_t j = 0; j < 2 * H; j++) r[j] += hp[j];
    sigmoid_inplace(r, 2 * H);
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
        hn[j] = hp[2 * H + j] + (b_hn ? b_hn[j] : 0.0f);
        nn[j] += r[j] * hn[j];
    }
    tanh_inplace(nn, H);
    const float *hprev = prev_state(f, b, t, 0);
    float *h = f->out + row * H;
#pragma omp simd
    for (int64_t j = 0; j < H; j++) h[j] = nn[j] + z[j] * (hprev[j] - nn[j]);
}

/* The op's arguments and where its buffers are: the workspace laid out, its row of zeros cleared, the
 * gates (the output itself for the RNN) and the auxiliary rows in `saved`. Forward and backward alike. */
static rnn_fwd rnn_view(magna_graph *g, magna_node *n) {
    rnn_fwd f = {.a = rnn_args_of(n), .out = fval(n)};
    const rnn_args *a = &f.a;
    rnn_ws_layout(a, (float *)g->workspace, &f.ws);
    memset(f.ws.zeros, 0, (size_t)a->H * sizeof(float));
    if (a->cell == CELL_RNN) {
        f.gates = f.out;
    } else {
        f.gates = (float *)n->saved;
        f.aux = f.gates + rnn_round16(a->B * a->T * a->G);
    }
    return f;
}

/* ---- the time loop on the panel kernels: one parallel region --------------------------------------------- *
 * Splitting each step's product by columns and then its gate math by rows as two parallel regions would open 512
 * of them for one sequence of 128, each a wake-up and a join. One region runs the whole loop with that split
 * instead: each thread packs its own copy of the step's rows (a few KB), computes its panels of the product, and
 * after a barrier its rows of the gate math, then a barrier before the next step reads them. A team of one runs
 * the same loop outside any region (its barriers do nothing). */
static int loop_team(const rnn_args *a) {
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > a->threads) nt = a->threads;
    /* worth the threads: rows enough to share, or a product enough to split (a single sequence generating) */
    return (a->B > 1 && a->B * a->G >= 4096) || a->B * a->G * a->H >= 65536 ? nt : 1;
}

/* This thread's packed-rows slot, and the product of them with the packed weight into its columns [j0, j1). */
static float *team_apack(const rnn_fwd *f, int me) {
    return f->ws.apack + (size_t)me * rnn_round16((int64_t)magna_panel_a_floats(f->a.B, f->a.G));
}

static void team_product(const rnn_fwd *f, int kernel, int m, int n, int k, const float *a, int lda, bool accumulate,
                         float *c, int ldc, float *ap, int j0, int j1) {
    if (kernel == STEP_BF16) {
        magna_panel_pack_a_bf16(m, k, a, lda, false, 1.0f, (uint32_t *)ap);
        magna_panel_run_bf16(m, n, k, (const uint32_t *)ap, false, (const uint16_t *)f->ws.wpack, accumulate, c, ldc,
                             j0, j1);
    } else {
        magna_panel_pack_a_f32(m, k, a, lda, ap);
        magna_panel_run_f32(m, n, k, ap, f->ws.wpack, accumulate, c, ldc, j0, j1);
    }
}

static void forward_team_thread(const rnn_fwd *f, int kernel, const float *b_hn, int nt, int me) {
    const rnn_args *a = &f->a;
    const int64_t B = a->B, T = a->T, H = a->H, G = a->G, b0 = B * me / nt, b1 = B * (me + 1) / nt;
    int j0, j1;
    magna_panel_split((int)G, nt, me, &j0, &j1);
    float *ap = team_apack(f, me);
    const int ldo = (int)(a->cell == CELL_LSTM ? T * 2 * H : T * H);
    for (int64_t t = 0; t < T; t++) {
        const float *hprev = t > 0 ? f->out + (t - 1) * (a->cell == CELL_LSTM ? 2 : 1) * H : (a->h0 ? fval(a->h0) : NULL);
        const int ldh = t > 0 ? ldo : (int)H;
        float *c = a->cell == CELL_GRU ? f->ws.hproj : f->gates + saved_row(f, 0, t) * G;
        const int ldc = (int)(a->cell == CELL_GRU ? G : a->cell == CELL_RNN ? T * G : G);
        if (hprev) /* the GRU's h_{t-1} W_hh is written (hproj), the others' added into the gates */
            team_product(f, kernel, (int)B, (int)G, (int)H, hprev, ldh, a->cell != CELL_GRU, c, ldc, ap, j0, j1);
        else if (a->cell == CELL_GRU)
            for (int64_t b = 0; b < B; b++) memset(c + b * ldc + j0, 0, (size_t)(j1 - j0) * sizeof(float));
#pragma omp barrier
        for (int64_t b = b0; b < b1; b++) {
            if (a->cell == CELL_LSTM) lstm_row_forward(f, b, t);
            else if (a->cell == CELL_GRU) gru_row_forward(f, b, t, b_hn);
            else tanh_inplace(f->out + (b * T + t) * H, H);
        }
#pragma omp barrier
    }
}

static magna_status rnn_forward(magna_graph *g, magna_node *n) {
    rnn_fwd f = rnn_view(g, n);
    const rnn_args *a = &f.a;
    const int64_t B = a->B, T = a->T, H = a->H, G = a->G, BT = B * T;
    /* every step's input projection at once, then the biases (b_hh too, except GRU's n part) */
    const rnn_bf16 *bs = rnn_bf16_ready(n);
    if (bs) {
        uint16_t *x16 = ws_at(g, bs->x16), *w16 = ws_at(g, bs->w16);
        if (a->cell == CELL_RNN)
            magna_to_bf16(x16, fval(a->x), BT * a->I);
        else /* x's rows in the gates' time-major order */
            magna_to_bf16_time_major(x16, fval(a->x), B, T, a->I);
        magna_to_bf16(w16, fval(a->w_ih), a->I * G);
        float *bias = NULL;
        if (a->b_ih) { /* b_ih + b_hh (the GRU's n part of b_hh is applied inside r * (W_hn h + b_hn)) */
            const float *bi = fval(a->b_ih), *bh = fval(a->b_hh);
            const int64_t hh_cols = a->cell == CELL_GRU ? 2 * H : G;
            bias = ws_at(g, bs->bias);
            for (int64_t j = 0; j < G; j++) bias[j] = j < hh_cols ? bi[j] + bh[j] : bi[j];
        }
        const int e = magna_gemm_bf16_run(bs->proj, ws_at(g, bs->base), x16, w16, f.gates, bias);
        if (e) return graph_error(g, MAGNA_ERR_UNSUPPORTED, "%s: oneDNN forward: %s", magna_op_table[n->op]->name,
                                  magna_gemm_bf16_status(e));
    } else if (a->cell != CELL_RNN) { /* batch b's T rows into every B-th row of the time-major gates */
        for (int64_t b = 0; b < B; b++)
            magna_sgemm(false, false, (int)T, (int)G, (int)a->I, 1.0f, fval(a->x) + b * T * a->I, (int)a->I,
                        fval(a->w_ih), (int)G, 0.0f, f.gates + b * G, (int)(B * G));
    } else {
        magna_sgemm(false, false, (int)BT, (int)G, (int)a->I, 1.0f, fval(a->x), (int)a->I, fval(a->w_ih), (int)G,
                    0.0f, f.gates, (int)G);
    }
    if (a->b_ih && !bs) {
        const float *bi = fval(a->b_ih), *bh = fval(a->b_hh);
        const int64_t hh_cols = a->cell == CELL_GRU ? 2 * H : G;
        float *gates = f.gates;
        PARALLEL_FOR(BT * G >= PAR_MIN, r, BT, {
            float *gr = gates + r * G;
            for (int64_t j = 0; j < G; j++) gr[j] += bi[j];
            for (int64_t j = 0; j < hh_cols; j++) gr[j] += bh[j];
        });
    }
    const float *w_hh = fval(a->w_hh), *b_hn = a->b_hh && a->cell == CELL_GRU ? fval(a->b_hh) + 2 * H : NULL;
    const int fast = step_kernel(n);
    if (fast != STEP_SGEMM) {
        step_pack(&f.ws, fast, (int)H, (int)G, w_hh, (int)G, false);
        const int nt = loop_team(a);
        if (nt == 1) {
            forward_team_thread(&f, fast, b_hn, 1, 0);
        } else {
#pragma omp parallel num_threads(nt)
            forward_team_thread(&f, fast, b_hn, nt, omp_get_thread_num());
        }
        return MAGNA_OK;
    }
    /* CPUs without AVX-512: each step one magna_sgemm over all gate columns, then the gate math row by row */
    const int ldo = (int)(a->cell == CELL_LSTM ? T * 2 * H : T * H); /* h row stride in the output */
    const bool par = B > 1 && B * G >= 4096;
    for (int64_t t = 0; t < T; t++) {
        const bool has_prev = t > 0 || a->h0;
        const float *hprev = t > 0 ? (a->cell == CELL_LSTM ? f.out + (t - 1) * 2 * H : f.out + (t - 1) * H)
                                   : (a->h0 ? fval(a->h0) : NULL);
        const int ldh = t > 0 ? ldo : (int)H;
        if (a->cell == CELL_GRU) {
            memset(f.ws.hproj, 0, (size_t)(B * G) * sizeof(float));
            if (has_prev)
                magna_sgemm(false, false, (int)B, (int)G, (int)H, 1.0f, hprev, ldh, w_hh, (int)G, 1.0f, f.ws.hproj, (int)G);
            PARALLEL_FOR(par, b, B, gru_row_forward(&f, b, t, b_hn););
        } else {
            if (has_prev)
                magna_sgemm(false, false, (int)B, (int)G, (int)H, 1.0f, hprev, ldh, w_hh, (int)G, 1.0f,
                            f.gates + saved_row(&f, 0, t) * G, (int)(a->cell == CELL_RNN ? T * G : G));
            if (a->cell == CELL_LSTM) {
                PARALLEL_FOR(par, b, B, lstm_row_forward(&f, b, t););
            } else {
                float *out = f.out;
                PARALLEL_FOR(par, b, B, tanh_inplace(out + (b * T + t) * H, H););
            }
        }
    }
    return MAGNA_OK;
}

/* ---- backward ------------------------------------------------------------------------------------ */

/* dh_tot = dout_h + dh (carried from step t+1); writes this row's dG and the carries to step t-1. */
ISA_CLONES static void lstm_row_backward(const rnn_fwd *f, const float *dout, int64_t b, int64_t t) {
    const int64_t H = f->a.H, row = b * f->a.T + t, srow = saved_row(f, b, t);
    const float *restrict gi = f->gates + srow * 4 * H, *restrict gf = gi + H, *restrict gg = gf + H;
    const float *restrict go = gg + H, *restrict tc = f->aux + srow * H, *restrict cp = prev_state(f, b, t, 1);
    const float *restrict dh_out = dout + row * 2 * H, *restrict dc_out = dh_out + H, *restrict dh = f->ws.dh + b * H;
    float *restrict dc = f->ws.dc + b * H, *restrict di = f->ws.dgx + (t * f->a.B + b) * 4 * H, *restrict df = di + H;
    float *restrict dg = df + H, *restrict dO = dg + H;
    /* GCC honours restrict on parameters only: without the pragma this loop of ten streams stayed scalar */
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
        const float dht = dh_out[j] + dh[j];
        const float dct = dc_out[j] + dc[j] + dht * go[j] * (1.0f - tc[j] * tc[j]);
        di[j] = dct * gg[j] * gi[j] * (1.0f - gi[j]);
        df[j] = dct * cp[j] * gf[j] * (1.0f - gf[j]);
        dg[j] = dct * gi[j] * (1.0f - gg[j] * gg[j]);
        dO[j] = dht * tc[j] * go[j] * (1.0f - go[j]);
        dc[j] = dct * gf[j];
    }
}

/* Brings [p, p + n) toward this core's L2. */
static void prefetch_floats(const float *p, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) _mm_prefetch((const char *)(p + i), _MM_HINT_T1);
}

/* What lstm_row_backward of row b at step t reads and writes, fetched while step t + 1 still runs: every row of the
 * saved gates and of dG is a page of its own ([B, T, ...] layout, walked backward through T), runs too short and
 * scattered for the hardware prefetcher. */
static void lstm_prefetch_row(const rnn_fwd *f, const float *dout, int64_t b, int64_t t) {
    const int64_t H = f->a.H, row = b * f->a.T + t, srow = saved_row(f, b, t);
    prefetch_floats(f->gates + srow * 4 * H, 4 * H);
    prefetch_floats(f->ws.dgx + (t * f->a.B + b) * 4 * H, 4 * H);
    prefetch_floats(f->aux + srow * H, H);
    prefetch_floats(dout + row * 2 * H, 2 * H);
    prefetch_floats(prev_state(f, b, t, 1), H);
}

/* h = (1 - z) n + z h_{t-1}, n = tanh(x_n + r hn). dh is left holding z dh_tot, the direct path to
 * h_{t-1}; the GEMM through W_hh adds the rest. */
ISA_CLONES static void gru_row_backward(const rnn_fwd *f, const float *dout, int64_t b, int64_t t) {
    const int64_t H = f->a.H, row = b * f->a.T + t, srow = saved_row(f, b, t);
    const float *restrict r = f->gates + srow * 3 * H, *restrict z = r + H, *restrict nn = z + H;
    const float *restrict hn = f->aux + srow * H, *restrict hprev = prev_state(f, b, t, 0);
    const float *restrict dh_out = dout + row * H;
    const int64_t grow = t * f->a.B + b; /* dG is time-major, as the saved gates */
    float *restrict dh = f->ws.dh + b * H, *restrict dxr = f->ws.dgx + grow * 3 * H, *restrict dxz = dxr + H;
    float *restrict dxn = dxz + H, *restrict dhr = f->ws.dgh + grow * 3 * H, *restrict dhz = dhr + H;
    float *restrict dhn = dhz + H;
#pragma omp simd
    for (int64_t j = 0; j < H; j++) {
        const float dht = dh_out[j] + dh[j];
        const float dnp = dht * (1.0f - z[j]) * (1.0f - nn[j] * nn[j]);
        const float drp = dnp * hn[j] * r[j] * (1.0f - r[j]);
        const float dzp = dht * (hprev[j] - nn[j]) * z[j] * (1.0f - z[j]);
        dxr[j] = dhr[j] = drp;
        dxz[j] = dhz[j] = dzp;
        dxn[j] = dnp;
        dhn[j] = dnp * r[j];
        dh[j] = dht * z[j];
    }
}

ISA_CLONES static void rnn_row_backward(const rnn_fwd *f, const float *dout, int64_t b, int64_t t) {
    const int64_t H = f->a.H, row = b * f->a.T + t;
    const float *h = f->out + row * H, *dh_out = dout + row * H, *dh = f->ws.dh + b * H;
    float *dg = f->ws.dgx + (t * f->a.B + b) * H;
#pragma omp simd
    for (int64_t j = 0; j < H; j++) dg[j] = (dh_out[j] + dh[j]) * (1.0f - h[j] * h[j]);
}

/* sum[j] = sum over rows of m[r, j], over MAGNA_COLSUM_PARTS fixed parts of the rows (each part's rows in order into
 * its own row of scratch, streaming whole rows), then the parts added in order (magna_colsum_combine): the same sums
 * on any thread count, taken as the bf16 pass (magna_to_bf16_colsum) takes them. */
static void column_sums_part(float *restrict acc, const float *m, int64_t r0, int64_t r1, int64_t cols) {
    memset(acc, 0, (size_t)cols * sizeof(float));
    for (int64_t r = r0; r < r1; r++) {
        const float *restrict mr = m + r * cols;
#pragma omp simd
        for (int64_t j = 0; j < cols; j++) acc[j] += mr[j];
    }
}

static void column_sums(float *sum, const float *m, int64_t rows, int64_t cols, float *scratch) {
    PARALLEL_FOR(rows * cols >= PAR_MIN, p, MAGNA_COLSUM_PARTS,
                 column_sums_part(scratch + p * cols, m, rows * p / MAGNA_COLSUM_PARTS,
                                  rows * (p + 1) / MAGNA_COLSUM_PARTS, cols););
    magna_colsum_combine(sum, scratch, MAGNA_COLSUM_PARTS, cols, true);
}

static void add_into(float *dst, const float *src, int64_t n) {
    for (int64_t j = 0; j < n; j++) dst[j] += src[j];
}

/* dst [B, T, cols] += src [T, B, cols]. */
static void add_time_major(float *dst, const float *src, int64_t B, int64_t T, int64_t cols) {
    PARALLEL_FOR(B * T * cols >= PAR_MIN, r, B * T, add_into(dst + r * cols, src + ((r % T) * B + r / T) * cols, cols););
}

static void backward_team_thread(const rnn_fwd *f, int kernel, const float *dout, int nt, int me) {
    const rnn_args *a = &f->a;
    const int64_t B = a->B, T = a->T, H = a->H, G = a->G, b0 = B * me / nt, b1 = B * (me + 1) / nt;
    int j0, j1;
    magna_panel_split((int)H, nt, me, &j0, &j1);
    float *ap = team_apack(f, me);
    for (int64_t t = T - 1; t >= 0; t--) {
        for (int64_t b = b0; b < b1; b++) {
            if (a->cell == CELL_LSTM) {
                lstm_row_backward(f, dout, b, t);
                if (t > 0) lstm_prefetch_row(f, dout, b, t - 1);
            } else if (a->cell == CELL_GRU) {
                gru_row_backward(f, dout, b, t);
            } else {
                rnn_row_backward(f, dout, b, t);
            }
        }
        if (t == 0 && !(a->h0 && a->h0->grad)) break;
#pragma omp barrier
        /* dh_{t-1} = dG_t W_hh^T: written, or added to the GRU's direct path that its gate math left in dh */
        team_product(f, kernel, (int)B, (int)H, (int)G, f->ws.dgh + t * B * G, (int)G, a->cell == CELL_GRU, f->ws.dh,
                     (int)H, ap, j0, j1);
#pragma omp barrier
    }
}

/* dG [B T, G] to bf16 for the big products; when it feeds bias gradients (g1, g2, either NULL), its column sums
 * too, in the same pass over dG, added into them. */
static void dg_to_bf16(const rnn_fwd *f, const float *dg, uint16_t *dg16, float *g1, float *g2) {
    const int64_t BT = f->a.B * f->a.T, G = f->a.G;
    if (!g1 && !g2) {
        magna_to_bf16(dg16, dg, BT * G);
        return;
    }
    float *sum = f->ws.colsum + (size_t)MAGNA_COLSUM_PARTS * G;
    magna_to_bf16_colsum(dg16, dg, BT, G, sum, true, f->ws.colsum);
    if (g1) add_into(g1, sum, G);
    if (g2) add_into(g2, sum, G);
}

/* h_{t-1} of every (b, t) in bf16, time-major as dG, for dW_hh's one GEMM: converted from where the forward left
 * them (the output, or h0), with no float32 copy. */
static void gather_hprev_bf16(const rnn_fwd *f, uint16_t *h16) {
    const int64_t B = f->a.B, BT = B * f->a.T, H = f->a.H;
    PARALLEL_FOR(BT * H >= PAR_MIN, r, BT, magna_to_bf16_row(h16 + r * H, prev_state(f, r % B, r / B, 0), H););
}

/* h_{t-1} of every (b, t) into the workspace's hprev [T B, H], time-major as dG, for dW_hh's one GEMM. */
static void gather_hprev(const rnn_fwd *f) {
    const int64_t B = f->a.B, BT = B * f->a.T, H = f->a.H;
    float *hprev = f->ws.hprev;
    PARALLEL_FOR(BT * H >= PAR_MIN, r, BT, memcpy(hprev + r * H, prev_state(f, r % B, r / B, 0), (size_t)H * sizeof(float)););
}

/* dW_ih += x^T dG, dx += dG W_ih^T, dW_hh += H_prev^T dG with bf16 operands (rnn_bf16). */
static void rnn_backward_bf16(magna_graph *g, const magna_node *n, const rnn_fwd *f, const rnn_bf16 *bs) {
    const rnn_args *a = &f->a;
    const int64_t I = a->I, G = a->G;
    void *scratch = ws_at(g, bs->base);
    uint16_t *x16 = ws_at(g, bs->x16), *w16 = ws_at(g, bs->w16), *dg16 = ws_at(g, bs->dg16), *h16 = ws_at(g, bs->h16);
    int e = 0;
    /* the biases' gradients from the same pass (dG's column sums; the GRU's b_hh from its h side below) */
    const bool ih = a->b_ih && a->b_ih->grad, hh = a->b_hh && a->b_hh->grad, shared = f->ws.dgh == f->ws.dgx;
    dg_to_bf16(f, f->ws.dgx, dg16, ih ? a->b_ih->grad : NULL, hh && shared ? a->b_hh->grad : NULL);
    if (a->w_ih->grad) {
        magna_to_bf16_time_major(x16, fval(a->x), a->B, a->T, I);
        e = magna_gemm_bf16_run(bs->dw_ih, scratch, x16, dg16, a->w_ih->grad, NULL);
    }
    if (!e && a->x->grad) { /* dx time-major into hprev's room (free until gather_hprev), then added in x's order */
        magna_to_bf16(w16, fval(a->w_ih), I * G);
        e = magna_gemm_bf16_run(bs->dx, scratch, dg16, w16, f->ws.hprev, NULL);
        if (!e) add_time_major(a->x->grad, f->ws.hprev, a->B, a->T, I);
    }
    if (!e && a->w_hh->grad) {
        gather_hprev_bf16(f, h16);
        if (!shared) dg_to_bf16(f, f->ws.dgh, dg16, hh ? a->b_hh->grad : NULL, NULL); /* the GRU's h side differs */
        e = magna_gemm_bf16_run(bs->dw_hh, scratch, h16, dg16, a->w_hh->grad, NULL);
    }
    if (e)
        graph_error(g, MAGNA_ERR_UNSUPPORTED, "%s: oneDNN backward: %s", magna_op_table[n->op]->name,
                    magna_gemm_bf16_status(e));
}

static void rnn_backward(magna_graph *g, magna_node *n) {
    rnn_fwd f = rnn_view(g, n);
    const rnn_args *a = &f.a;
    const int64_t B = a->B, T = a->T, H = a->H, G = a->G, BT = B * T;
    if (a->cell != CELL_GRU) f.ws.dgh = f.ws.dgx; /* the same pre-activations feed W_ih and W_hh */
    const float *dout = n->grad, *w_hh = fval(a->w_hh);
    memset(f.ws.dh, 0, (size_t)(B * H) * sizeof(float));
    if (f.ws.dc) memset(f.ws.dc, 0, (size_t)(B * H) * sizeof(float));
    const bool par = B > 1 && B * G >= 4096;
    const int fast = step_kernel(n);
    if (fast != STEP_SGEMM) {
        step_pack(&f.ws, fast, (int)G, (int)H, w_hh, (int)G, true); /* W_hh^T [G, H], once for every step */
        const int nt = loop_team(a);
        if (nt == 1) {
            backward_team_thread(&f, fast, dout, 1, 0);
        } else {
#pragma omp parallel num_threads(nt)
            backward_team_thread(&f, fast, dout, nt, omp_get_thread_num());
        }
    }
    /* CPUs without AVX-512: each step's gate math row by row, then dh_{t-1} = dG_t W_hh^T in one magna_sgemm (added
     * to the GRU's direct path, already in dh) */
    for (int64_t t = T - 1; t >= 0 && fast == STEP_SGEMM; t--) {
        switch (a->cell) {
        case CELL_LSTM:
            PARALLEL_FOR(par, b, B, {
                lstm_row_backward(&f, dout, b, t);
                if (t > 0) lstm_prefetch_row(&f, dout, b, t - 1);
            });
            break;
        case CELL_GRU: PARALLEL_FOR(par, b, B, gru_row_backward(&f, dout, b, t);); break;
        case CELL_RNN: PARALLEL_FOR(par, b, B, rnn_row_backward(&f, dout, b, t);); break;
        }
        if (t == 0 && !(a->h0 && a->h0->grad)) continue;
        magna_sgemm(false, true, (int)B, (int)H, (int)G, 1.0f, f.ws.dgh + t * B * G, (int)G, w_hh, (int)G,
                    a->cell == CELL_GRU ? 1.0f : 0.0f, f.ws.dh, (int)H);
    }
    if (a->h0 && a->h0->grad) {
        float *d = a->h0->grad;
        const float *dh = f.ws.dh;
        PARALLEL_FOR(B * H >= PAR_MIN, i, B * H, d[i] += dh[i];);
    }
    if (a->c0 && a->c0->grad) {
        float *d = a->c0->grad;
        const float *dc = f.ws.dc;
        PARALLEL_FOR(B * H >= PAR_MIN, i, B * H, d[i] += dc[i];);
    }
    /* the big products over all B*T rows (in bf16 where the graph asks and the GEMMs were made for them) */
    const rnn_bf16 *bs = rnn_bf16_ready(n);
    if (bs && (!a->w_ih->grad || bs->dw_ih) && (!a->x->grad || bs->dx) && (!a->w_hh->grad || bs->dw_hh)) {
        rnn_backward_bf16(g, n, &f, bs); /* the biases' gradients too */
        return;
    } else {
        /* x is [B, T, I] and dG time-major: batch b's T rows of dG are every B-th row */
        for (int64_t b = 0; b < B && a->w_ih->grad; b++)
            magna_sgemm(true, false, (int)a->I, (int)G, (int)T, 1.0f, fval(a->x) + b * T * a->I, (int)a->I,
                        f.ws.dgx + b * G, (int)(B * G), 1.0f, a->w_ih->grad, (int)G);
        for (int64_t b = 0; b < B && a->x->grad; b++)
            magna_sgemm(false, true, (int)T, (int)a->I, (int)G, 1.0f, f.ws.dgx + b * G, (int)(B * G), fval(a->w_ih),
                        (int)G, 1.0f, a->x->grad + b * T * a->I, (int)a->I);
        if (a->w_hh->grad) {
            gather_hprev(&f);
            magna_sgemm(true, false, (int)H, (int)G, (int)BT, 1.0f, f.ws.hprev, (int)H, f.ws.dgh, (int)G, 1.0f,
                        a->w_hh->grad, (int)G);
        }
    }
    /* the biases: column sums of dG (one sum serves both when the two sides share dG) */
    if (!a->b_ih) return;
    float *sum = f.ws.colsum + (size_t)MAGNA_COLSUM_PARTS * G;
    const bool hh = a->b_hh->grad != NULL, ih = a->b_ih->grad != NULL;
    if (ih || (hh && f.ws.dgh == f.ws.dgx)) column_sums(sum, f.ws.dgx, BT, G, f.ws.colsum);
    if (ih) add_into(a->b_ih->grad, sum, G);
    if (hh && f.ws.dgh != f.ws.dgx) column_sums(sum, f.ws.dgh, BT, G, f.ws.colsum);
    if (hh) add_into(a->b_hh->grad, sum, G);
}

const magna_op_def op_def_lstm = {"lstm", OPF_BWD_INPUTS | OPF_BWD_OUTPUT, rnn_infer, rnn_forward, rnn_backward,
                                  rnn_release};
const magna_op_def op_def_gru = {"gru", OPF_BWD_INPUTS | OPF_BWD_OUTPUT, rnn_infer, rnn_forward, rnn_backward,
                                 rnn_release};
const magna_op_def op_def_rnn = {"rnn_tanh", OPF_BWD_INPUTS | OPF_BWD_OUTPUT, rnn_infer, rnn_forward, rnn_backward,
                                 rnn_release};

/* ---- builders ------------------------------------------------------------------------------------ */

static magna_node *rnn_node(magna_graph *g, op_id op, magna_node *x, magna_node *w_ih, magna_node *w_hh,
                            magna_node *b_ih, magna_node *b_hh, magna_node *h0, magna_node *c0) {
    if (!g) return NULL;
    if ((b_ih == NULL) != (b_hh == NULL)) {
        graph_error(g, MAGNA_ERR_ARG, "%s: give both biases (b_ih and b_hh) or neither", magna_op_table[op]->name);
        return NULL;
    }
    magna_node *in[7] = {x, w_ih, w_hh};
    int k = 3;
    if (b_ih) in[k++] = b_ih, in[k++] = b_hh;
    if (h0) in[k++] = h0;
    if (c0) in[k++] = c0;
    const int64_t ip[3] = {b_ih != NULL, h0 != NULL, c0 != NULL};
    return graph_add_node(g, op, k, in, ip, 3, NULL, 0);
}

magna_node *magna_lstm(magna_graph *g, magna_node *x, magna_node *w_ih, magna_node *w_hh, magna_node *b_ih,
                       magna_node *b_hh, magna_node *h0, magna_node *c0) {
    return rnn_node(g, OP_LSTM, x, w_ih, w_hh, b_ih, b_hh, h0, c0);
}

magna_node *magna_gru(magna_graph *g, magna_node *x, magna_node *w_ih, magna_node *w_hh, magna_node *b_ih,
                      magna_node *b_hh, magna_node *h0) {
    return rnn_node(g, OP_GRU, x, w_ih, w_hh, b_ih, b_hh, h0, NULL);
}

magna_node *magna_rnn_tanh(magna_graph *g, magna_node *x, magna_node *w_ih, magna_node *w_hh, magna_node *b_ih,
                           magna_node *b_hh, magna_node *h0) {
    return rnn_node(g, OP_RNN, x, w_ih, w_hh, b_ih, b_hh, h0, NULL);
}

static bool is_recurrent(magna_graph *g, magna_node *out, const char *what) {
    if (!g || !out) return false;
    if (out->kind != NODE_OP || (out->op != OP_LSTM && out->op != OP_GRU && out->op != OP_RNN)) {
        graph_error(g, MAGNA_ERR_ARG, "%s: '%s' is not the output of lstm, gru or rnn_tanh", what, out->name);
        return false;
    }
    return true;
}

/* [B, T, 2, H] -> [B, T, H] (slice of h, then a view); GRU and RNN outputs already are the sequence. */
magna_node *magna_rnn_sequence(magna_graph *g, magna_node *out) {
    if (!is_recurrent(g, out, "rnn_sequence")) return NULL;
    if (out->op != OP_LSTM) return out;
    return magna_reshape(g, magna_slice(g, out, 2, 0, 1, 1), 3, (int64_t[]){-1, out->shape[1], out->shape[3]});
}

/* The last step's h (which = 0) or c (1): one slice of the output seen as [B, T * S * H]. */
static magna_node *final_state(magna_graph *g, magna_node *out, int which) {
    const int64_t T = out->shape[1], H = out->shape[out->ndim - 1], S = out->op == OP_LSTM ? 2 : 1;
    const int64_t start = ((T - 1) * S + which) * H;
    return magna_slice(g, magna_reshape(g, out, 2, (int64_t[]){-1, T * S * H}), 1, start, start + H, 1);
}

magna_node *magna_rnn_final_h(magna_graph *g, magna_node *out) {
    if (!is_recurrent(g, out, "rnn_final_h")) return NULL;
    return final_state(g, out, 0);
}

magna_node *magna_rnn_final_c(magna_graph *g, magna_node *out) {
    if (!is_recurrent(g, out, "rnn_final_c")) return NULL;
    if (out->op != OP_LSTM) {
        graph_error(g, MAGNA_ERR_ARG, "rnn_final_c: '%s' is not an LSTM's output (only an LSTM has a cell state)",
                    out->name);
        return NULL;
    }
    return final_state(g, out, 1);
}
