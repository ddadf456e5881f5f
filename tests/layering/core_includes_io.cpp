// Must NOT compile with core's include path: core may not depend on io. The layering test
// passes only when the compiler reports this include as missing.
#include "walbust/core/rules.h"
#include "walbust/io/config.h"

int main() { return 0; }
