/* test_gradcheck.c — every op's backward against central finite differences, each case on three
 * seeds (three draws of its random shapes). Fails if any op in the library has no case. */
#include "gradcheck.h"

#include <stdio.h>

int gc_run_all(const gc_case *const *tables, int n_tables, int seeds);

int main(void) {
    magna_set_threads(2);
    const gc_case *const tables[] = {gc_cases_core, gc_cases_conv, gc_cases_sequence, gc_cases_recurrent};
    return gc_run_all(tables, 4, 3);
}
