#include <cstdio>

#include "walbust/version.h"

int main() {
  std::printf("walbust %s\n", walbust::kVersion);
  return 0;
}
