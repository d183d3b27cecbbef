// SPDX-License-Identifier: Apache-2.0
/* ss_x509.c - see sigstore_int.h (skeleton: being written). */
#include "sigstore_int.h"
