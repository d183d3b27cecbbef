// SPDX-License-Identifier: Apache-2.0
/* test_ss_parse.c - skeleton: being written. */
#include "tap.h"
#include "sigstore_int.h"

static void test_skeleton(void)
{
	CHECK(1);
}

int main(void)
{
	TAP_RUN(test_skeleton);
	TAP_DONE();
}
