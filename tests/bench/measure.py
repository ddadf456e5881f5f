"""Running one contender as a child process and measuring what it cost.

CPU time and peak RSS come from wait4() on the contender (ru_utime, ru_stime, ru_maxrss),
taken by the small rusage_exec launcher; wall time is measured here around the launcher.
"""

import os
import signal
import subprocess
import threading
import time

import psycopg2

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))


def proc_cpu_seconds(pid):
    """user+sys CPU seconds of a live process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def process_counters(pid):
    """{"cpu_s", "vcsw", "ivcsw"} of a live process, all its threads: user+sys CPU seconds
    and voluntary / involuntary context switches (/proc/PID/status counts only the main
    thread's, so every task is summed; a thread that already exited is not counted)."""
    cpu = proc_cpu_seconds(pid)
    if cpu is None:
        return None
    vcsw = ivcsw = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vcsw += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        ivcsw += int(line.split()[1])
    except OSError:
        return None
    return {"cpu_s": cpu, "vcsw": vcsw, "ivcsw": ivcsw}


def counters_delta(before, after):
    if before is None or after is None:
        return None
    return {k: after[k] - before[k] for k in before}


def _cpu_times():
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return idle, sum(values[:8])  # guest time is already counted in user


def wait_for_idle(max_wait, threshold=0.85, window=0.5):
    """Waits up to max_wait seconds for a window in which the machine's CPUs were at least
    `threshold` idle, so a run does not start in the middle of someone else's build.
    Returns the idle share of the last window (0..1)."""
    deadline = time.monotonic() + max_wait
    while True:
        idle0, total0 = _cpu_times()
        time.sleep(window)
        idle1, total1 = _cpu_times()
        share = (idle1 - idle0) / max(1, total1 - total0)
        if share >= threshold or time.monotonic() >= deadline:
            return share


class WalsenderSampler(threading.Thread):
    """Follows the CPU time of the walsender serving a slot while a contender reads it.

    The walsender is PostgreSQL's process, not the contender's, so wait4 cannot report it;
    sampling /proc every 100 ms gives its CPU time to within one sample. That shows how
    close to the walsender's own ceiling a contender runs.
    """

    def __init__(self, dsn, slot):
        super().__init__(daemon=True)
        self.dsn, self.slot = dsn, slot
        self.cpu = None
        self._halt = threading.Event()

    def run(self):
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        cur = conn.cursor()
        pid = None
        try:
            while not self._halt.is_set():
                if pid is None:
                    cur.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
                    row = cur.fetchone()
                    pid = row[0] if row else None
                if pid is not None:
                    cpu = proc_cpu_seconds(pid)
                    if cpu is not None:
                        self.cpu = cpu
                self._halt.wait(0.1)
        finally:
            conn.close()

    def stop(self):
        self._halt.set()
        self.join()


def build_launcher(work_dir):
    """Compiles rusage_exec.c (see there why the harness needs it) into work_dir."""
    exe = os.path.join(work_dir, "rusage_exec")
    subprocess.run(["cc", "-O2", "-Wall", "-o", exe, os.path.join(HERE, "rusage_exec.c")], check=True)
    return exe


class Child:
    """A contender process; wait() returns its wall time and rusage (CPU, peak RSS)."""

    launcher = None  # set to build_launcher()'s result before the first Child

    def __init__(self, cmd, log_path, stdout_path=None, timeout=3600, idle_before=None):
        self.cmd = cmd
        self.idle_before = idle_before
        self.log_path = log_path
        self.stdout_path = stdout_path or log_path + ".out"
        self.report_path = log_path + ".rusage"
        self.load = os.getloadavg()[0]
        err = open(log_path, "wb")
        out = open(self.stdout_path, "wb")
        self.start = time.perf_counter()
        self.proc = subprocess.Popen([Child.launcher, self.report_path] + cmd, stdout=out, stderr=err,
                                     stdin=subprocess.DEVNULL)
        err.close()
        out.close()
        # Bounded: a contender that hangs is killed, and the run reports its failure.
        self._watchdog = threading.Timer(timeout, self._kill)
        self._watchdog.daemon = True
        self._watchdog.start()
        self.killed = False

    def _kill(self):
        self.killed = True
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass

    def contender_pid(self):
        """The contender's pid: the launcher's only child."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                pids = f.read().split()
        except OSError:
            return None
        return int(pids[0]) if pids else None

    def terminate(self):
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self):
        _, status, _ = os.wait4(self.proc.pid, 0)
        wall = time.perf_counter() - self.start
        self._watchdog.cancel()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        with open(self.stdout_path, "rb") as f:
            stdout = f.read().decode(errors="replace")
        try:
            with open(self.report_path) as f:
                user, system, maxrss_kib, _, vcsw, ivcsw = f.read().split()
        except (OSError, ValueError):
            user = system = maxrss_kib = vcsw = ivcsw = "nan"  # the launcher itself was killed
        return {
            "exit_code": self.proc.returncode,
            "killed_by_timeout": self.killed,
            "wall_s": wall,
            "cpu_user_s": float(user),
            "cpu_sys_s": float(system),
            "cpu_s": float(user) + float(system),
            # Linux reports ru_maxrss in KiB.
            "max_rss_mb": float(maxrss_kib) / 1024.0,
            # Context switches of all the contender's threads (ru_nvcsw, ru_nivcsw): how often
            # it waited for input, and how often it was preempted.
            "vcsw": float(vcsw),
            "ivcsw": float(ivcsw),
            "load_avg_1m": self.load,
            "idle_before": self.idle_before,
            "stdout": stdout,
        }

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""
