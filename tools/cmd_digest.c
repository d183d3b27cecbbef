#include "cli.h"
int cmd_digest(int argc, char **argv) { return 2; }
