// SPDX-License-Identifier: Apache-2.0
/* ss_rekor.c - see sigstore_int.h (skeleton: being written). */
#include "sigstore_int.h"
