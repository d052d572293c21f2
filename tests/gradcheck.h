/* gradcheck.h — the table-driven finite-difference check every op goes through.
 *
 * A case builds a small graph on shapes it draws from `seed` and returns the node to check. Float
 * operands that need a gradient are params (magna_param with a random init); int32 operands and
 * float data without a gradient are inputs, filled by the case's `fill` after compile (or left to the
 * harness, which fills float inputs with U(-1, 1)). The harness then checks
 *     d/dp sum(out * R)   (R a fixed random tensor)
 * for every param element (sampled if large) against the central difference (L(p+h) - L(p-h)) / 2h,
 * in training mode with the dropout counter pinned, and fails when
 *     |analytic - numeric| > atol + rtol * |numeric|.
 * It also fails if any op in the library has no case at all. */
#ifndef MAGNA_TEST_GRADCHECK_H
#define MAGNA_TEST_GRADCHECK_H

#include "magna.h"

typedef struct gc_case {
    const char *name;
    /* Builds the graph; returns the node to check (NULL on a build error: the case fails). */
    magna_node *(*build)(magna_graph *g, uint64_t seed);
    /* Optional: fill inputs after compile (int32 labels and ids, positive data for log, ...). */
    void (*fill)(magna_graph *g, uint64_t seed);
    double atol, rtol; /* 0 means the defaults (5e-3, 2e-2) */
    double step;       /* finite-difference step h; 0 means 1e-2 */
} gc_case;

/* Small helpers for case builders. */
/* A uniform integer in [lo, hi] drawn from (seed, counter). */
int gc_randint(uint64_t seed, uint64_t counter, int lo, int hi);
/* A param of the given shape initialised U(lo, hi); with gc_params_through_op, the param (named so, for the
 * fills) times 1 instead: an activation, whose gradient the op under test writes first and may assign. */
magna_node *gc_param(magna_graph *g, const char *name, int ndim, const int64_t *shape, float lo, float hi);
extern bool gc_params_through_op;
/* Fill an input node with U(lo, hi) (float) or uniform integers in [lo, hi] (int32). */
void gc_fill_input(magna_node *n, uint64_t seed, float lo, float hi);
/* Make every |value| of a param at least `margin` (keeps relu/abs-like kinks away from 0), or spread
 * its values apart so max/argmax has no near-ties. Values exist only after compile: call these from a
 * case's `fill`, not its `build`. */
void gc_param_away_from_zero(magna_node *p, float margin);
void gc_param_distinct(magna_node *p, uint64_t seed);

/* Case tables, one per op family file. Each ends with an entry whose name is NULL. */
extern const gc_case gc_cases_core[];      /* tests/cases_core.c: matmul, elementwise, reductions, shape, losses */
extern const gc_case gc_cases_conv[];      /* tests/cases_conv.c: conv2d, pooling, batch norm */
extern const gc_case gc_cases_sequence[];  /* tests/cases_sequence.c: embedding, layer norm, attention, dropout */
extern const gc_case gc_cases_recurrent[]; /* tests/cases_recurrent.c: lstm, gru, rnn_tanh */

#endif
