/* fuzz_safetensors.h — the loader's fuzz target (fuzz_safetensors.c), shared by libFuzzer and the replay test. */
#ifndef MAGNA_TEST_FUZZ_SAFETENSORS_H
#define MAGNA_TEST_FUZZ_SAFETENSORS_H

#include "magna.h"

#include <stddef.h>
#include <stdint.h>

/* The model every input is loaded into (made once): dense 4 -> 3 (w [4, 3], b [3]), Adam. */
magna_model *fuzz_model(void);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Inputs accepted so far by load_safetensors, load_safetensors_ex (with Adam's moments) and model_resume. */
extern int fuzz_accepted[3];

#endif
