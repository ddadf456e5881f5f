"""Fuzzing as a fault test: the pgoutput decoder and stream, and the rules and template
parsers, must survive arbitrary bytes (tests/fuzz, built with clang's libFuzzer, ASan and
UBSan by scripts/fuzz.sh).

Run from tests/integration with WALBUST_SOURCE_DIR (the repository root), as ctest does.
A bounded run (30 s per target) starting from the seed corpus, plus a replay of every
saved crash reproducer under tests/fuzz/regressions/<target>/, which must stay fixed.
"""

import glob
import os
import subprocess
import unittest

SOURCE_DIR = os.environ.get(
    "WALBUST_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
FUZZ_SH = os.path.join(SOURCE_DIR, "scripts", "fuzz.sh")
REGRESSIONS = os.path.join(SOURCE_DIR, "tests", "fuzz", "regressions")
SECONDS_PER_TARGET = 30


def run_fuzz_sh(seconds):
    # The clang build takes most of the time; the whole run stays well under ctest's limit.
    return subprocess.run(["bash", FUZZ_SH, str(seconds)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)


class FuzzTest(unittest.TestCase):
    def test_1_saved_reproducers_replay_cleanly(self):
        result = run_fuzz_sh(0)  # build and replay only
        self.assertEqual(result.returncode, 0, "scripts/fuzz.sh 0 failed:\n" + result.stdout)
        for path in sorted(glob.glob(os.path.join(REGRESSIONS, "*", "*"))):
            # libFuzzer prints "Running: FILE" for every file it is given.
            self.assertIn("Running: " + path, result.stdout,
                          "reproducer not replayed: " + path + "\n" + result.stdout)

    def test_2_bounded_fuzzing_finds_nothing(self):
        result = run_fuzz_sh(SECONDS_PER_TARGET)
        print(result.stdout)
        self.assertEqual(result.returncode, 0,
                         "scripts/fuzz.sh %d found a problem:\n%s" % (SECONDS_PER_TARGET, result.stdout))


if __name__ == "__main__":
    unittest.main()
