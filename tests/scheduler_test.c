#include "harness.h"
static const h_testdef_t s_tests[] = { { NULL, NULL, NULL } };
int main (int argc, char **argv) { return h_main (s_tests, 0, argc, argv); }
