/* magna.h — the one include a user writes. */
#ifndef MAGNA_H
#define MAGNA_H

#include "magna/core.h"
#include "magna/graph.h"
#include "magna/ops.h"
#include "magna/optim.h"
#include "magna/data.h"
#include "magna/image.h"
#include "magna/nn.h"
#include "magna/train.h"
#include "magna/io.h"
#include "magna/generate.h"
#include "magna/text.h"
#include "magna/numbers.h"
#include "magna/dist.h"
#include "magna/cuda.h"

#endif
