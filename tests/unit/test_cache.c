#include "tap.h"
static void test_placeholder(void) {}
int main(void) { TAP_RUN(test_placeholder); TAP_DONE(); }
