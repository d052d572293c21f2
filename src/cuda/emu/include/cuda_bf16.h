/* cuda_bf16.h under the CUDA emulator (magna_emu's include path only): C glue and tests that include the
 * runtime's header get the emulator's. */
#include "../cuda_emu.h"
