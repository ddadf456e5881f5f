// The control for core_includes_io.cpp: the same command compiles a file that includes only
// core headers, so that test fails for the layering reason and no other.
#include "walbust/core/ack_tracker.h"
#include "walbust/core/rules.h"

int main() { return 0; }
