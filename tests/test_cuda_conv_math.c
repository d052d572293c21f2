/* test_cuda_conv_math.c — the index math of the convolution and pooling kernels (src/cuda/conv_math.h) against
 * brute force, for every small stride, padding, kernel, dilation and size: the outputs whose window holds an
 * input (pooling's gather), the output of a tap that reads an input (col2im's gather), the clipped window,
 * and max pooling's tie and NaN rule. A gather built on these visits exactly the (output, tap) pairs a
 * scatter would; that is what makes the backward kernels equal the CPU's loops. */
#include "check.h"
#include "cuda/conv_math.h"

#include <math.h>
#include <stdio.h>

int main(void) {
    int64_t bad_windows = 0, bad_taps = 0, bad_pool = 0, cases = 0;
    for (int len = 1; len <= 9; len++)
        for (int k = 1; k <= 4; k++)
            for (int s = 1; s <= 3; s++)
                for (int p = 0; p <= 2; p++)
                    for (int d = 1; d <= 2; d++) {
                        const int extent = d * (k - 1) + 1;
                        if (len + 2 * p < extent) continue;
                        const int out = (len + 2 * p - extent) / s + 1;
                        cases++;
                        for (int i = 0; i < len; i++) {
                            /* pooling (no dilation): windows [o s - p, o s - p + k) holding i */
                            int lo, hi;
                            magna_cm_windows_of(i, s, p, k, out, &lo, &hi);
                            for (int o = 0; o < out; o++) {
                                const int holds = o * s - p <= i && i < o * s - p + k;
                                bad_windows += holds != (o >= lo && o < hi);
                            }
                            /* conv taps: output o of tap t reads o s - p + t d */
                            for (int t = 0; t < k; t++) {
                                int want = -1;
                                for (int o = 0; o < out; o++)
                                    if (o * s - p + t * d == i) want = o;
                                bad_taps += magna_cm_tap_output(i, t, s, p, d, out) != want;
                            }
                        }
                        /* the clipped window of every output: exactly its in-image pixels, never empty when the
                         * padding is at most half the kernel (pool2d's rule) */
                        for (int o = 0; o < out; o++) {
                            int h0, h1, w0, w1;
                            magna_cm_pool_window(o, o, len, len, k, k, s, s, p, p, &h0, &h1, &w0, &w1);
                            int want0 = o * s - p, want1 = o * s - p + k;
                            want0 = want0 < 0 ? 0 : want0, want1 = want1 > len ? len : want1;
                            bad_pool += h0 != want0 || h1 != want1 || w0 != want0 || w1 != want1 ||
                                        (2 * p <= k && d == 1 && h1 <= h0);
                        }
                    }
    CHECK(!bad_windows && !bad_taps && !bad_pool, "%lld shapes: %lld window, %lld tap and %lld clipping mistakes",
          (long long)cases, (long long)bad_windows, (long long)bad_taps, (long long)bad_pool);

    /* max pooling's rule: a later pixel wins only if strictly larger (the first of a tie stays), NaN wins and
     * stays */
    float best = 1.0f;
    int at = 0;
    magna_cm_take_max(&best, &at, 1.0f, 1);
    CHECK(best == 1.0f && at == 0, "a tie moved the argmax to %d", at);
    magna_cm_take_max(&best, &at, 2.0f, 2);
    CHECK(best == 2.0f && at == 2, "a larger value did not win: %g at %d", (double)best, at);
    magna_cm_take_max(&best, &at, NAN, 3);
    CHECK(isnan(best) && at == 3, "NaN did not win: %g at %d", (double)best, at);
    magna_cm_take_max(&best, &at, 5.0f, 4);
    CHECK(isnan(best) && at == 3, "a number beat NaN: %g at %d", (double)best, at);
    printf("conv/pool index math: %lld shapes against brute force\n", (long long)cases);
    return check_finish("test_cuda_conv_math");
}
