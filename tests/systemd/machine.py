"""A throwaway Debian 12 machine with systemd as PID 1, to test the .deb and its unit.

The rootfs is made once by `debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus
bookworm` (plus the libraries the .deb depends on, so installing it needs no network) from the
archive apt already uses, and cached in the build tree (BUILD/systemd-rootfs, rebuilt when its
stamp changes). Every Machine copies it, boots /lib/systemd/systemd as PID 1 of new pid,
mount and cgroup namespaces through boot.sh (see its guards), and is driven with nsenter.
The network namespace is the host's: the unit inside reaches the test PostgreSQL and Redis
on 127.0.0.1, and the test reaches walbust's metrics endpoint the same way.

Needs root, debootstrap, unshare/nsenter (util-linux) and cgroup2.
"""

import atexit
import ctypes
import fcntl
import glob
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import fixtures  # noqa: E402  (the host-side PostgreSQL, Redis and helpers)

BOOT_SH = os.path.join(HERE, "boot.sh")
SUITE = "bookworm"
BASE_PACKAGES = ["systemd", "systemd-sysv", "dbus"]
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Units that make no sense in a test machine: first-boot prompts and gettys would wait on
# a console nobody types on.
MASKED_UNITS = [
    "systemd-firstboot.service", "console-getty.service", "getty@.service",
    "container-getty@.service", "serial-getty@.service", "getty.target",
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "fstrim.timer",
]
# What a denied syscall (SystemCallErrorNumber=EPERM), a read-only path (ProtectSystem=)
# or a killed process (SIGSYS) looks like in walbust's messages or systemd's.
DENIALS = re.compile(r"Operation not permitted|Permission denied|Read-only file system|SIGSYS|status=31/SYS|"
                     r"seccomp|audit\(", re.I)


class MachineError(RuntimeError):
    """The rootfs could not be built or the machine could not boot."""


def run(cmd, timeout=120, check=False, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    res = subprocess.run(cmd, timeout=timeout, **kwargs)
    if check and res.returncode != 0:
        raise MachineError(f"{' '.join(cmd)} failed (exit {res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def build_dir():
    """The CMake build tree of WALBUST_BIN (nearest parent holding CMakeCache.txt)."""
    d = os.path.dirname(os.path.abspath(fixtures.walbust_binary()))
    while d != os.path.dirname(d):
        if os.path.exists(os.path.join(d, "CMakeCache.txt")):
            return d
        d = os.path.dirname(d)
    raise MachineError("WALBUST_BIN is not inside a CMake build tree")


def build_deb(out_dir):
    """The .deb of the build tree, made by cpack (seconds: the tree is already built)."""
    config = os.path.join(build_dir(), "CPackConfig.cmake")
    run(["cpack", "--config", config, "-B", out_dir], timeout=300, check=True)
    debs = glob.glob(os.path.join(out_dir, "walbust_*.deb"))
    if len(debs) != 1:
        raise MachineError(f"cpack made {debs} in {out_dir}")
    return debs[0]


def deb_field(deb, field):
    return run(["dpkg-deb", "-f", deb, field], check=True).stdout.strip()


def deb_depends(deb):
    """Real package names of the .deb's Depends (first of each alternative, no versions).

    A virtual name (libspdlog1.10-fmt9) becomes the package the build host has providing
    it: debootstrap --include takes real packages only.
    """
    names = []
    for dep in filter(None, (d.strip() for d in deb_field(deb, "Depends").split(","))):
        names.append(re.split(r"[\s(:|]", dep.split("|")[0].strip())[0])
    out = run(["dpkg-query", "-W", "-f=${Package}\t${Provides}\n"], check=True).stdout
    real, providers = set(), {}
    for line in out.splitlines():
        package, _, provides = line.partition("\t")
        real.add(package)
        for virtual in filter(None, (p.strip() for p in provides.split(","))):
            providers.setdefault(re.split(r"[\s(:]", virtual)[0], package)
    return sorted({providers.get(n, n) if n not in real else n for n in names})


def apt_mirror():
    """The Debian archive apt already uses for SUITE (the only network there is)."""
    texts = []
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*")):
        try:
            with open(path) as f:
                texts.append(f.read())
        except OSError:
            pass
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):  # deb822 .sources
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
        for m in re.finditer(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):  # one-line
            if m.group(2) == SUITE:
                return m.group(1)
    return DEFAULT_MIRROR


def rootfs(extra_packages):
    """Path of the cached rootfs with BASE_PACKAGES and extra_packages, built if needed."""
    cache = os.path.join(build_dir(), "systemd-rootfs")
    os.makedirs(cache, exist_ok=True)
    path = os.path.join(cache, "rootfs")
    stamp_path = os.path.join(cache, "stamp")
    stamp = f"debootstrap --variant=minbase {SUITE} masked={','.join(MASKED_UNITS)}\n"
    # Test classes of parallel ctest runs share the cache: one builds, the others wait.
    with open(os.path.join(cache, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(stamp_path) as f:
                fresh = f.read() == stamp
        except OSError:
            fresh = False
        wanted = set(BASE_PACKAGES) | set(extra_packages)
        if fresh and os.path.isdir(path) and wanted <= installed_packages(path):
            return path
        _debootstrap(cache, path, sorted(wanted))
        with open(stamp_path, "w") as f:
            f.write(stamp)
    return path


def installed_packages(root):
    """Names of the packages dpkg lists as installed in root."""
    names, name = set(), None
    try:
        with open(os.path.join(root, "var/lib/dpkg/status")) as f:
            for line in f:
                if line.startswith("Package: "):
                    name = line.split()[1]
                elif line.startswith("Status: ") and line.split()[-1] == "installed" and name:
                    names.add(name)
    except OSError:
        pass
    return names


def _debootstrap(cache, path, packages):
    tmp = path + ".new"
    for old in (tmp, path):
        if os.path.exists(old):
            shutil.rmtree(old)
    if os.path.exists(os.path.join(cache, "stamp")):
        os.unlink(os.path.join(cache, "stamp"))
    log = os.path.join(cache, "debootstrap.log")
    with open(log, "w") as f:
        res = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE, tmp, apt_mirror()],
            stdout=f, stderr=subprocess.STDOUT, timeout=1500)
    if res.returncode != 0:
        raise MachineError(f"debootstrap failed (exit {res.returncode}):\n{fixtures.log_tail(log)}")
    for unit in MASKED_UNITS:
        os.symlink("/dev/null", os.path.join(tmp, "etc/systemd/system", unit))
    # Every boot gets its own machine id (machine.py writes it); an empty file would mean
    # "first boot" to systemd.
    with open(os.path.join(tmp, "etc/machine-id"), "w"):
        pass
    run(["chroot", tmp, "apt-get", "clean"], check=True)
    os.rename(tmp, path)


def _cgroup2_root():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return fields[4]
    raise MachineError("no cgroup2 hierarchy is mounted: systemd needs one")


def _remove_cgroup_tree(path):
    """rmdir of path and its children, deepest first; True once path is gone."""
    for d, _dirs, _files in sorted(os.walk(path), key=lambda t: -len(t[0])):
        try:
            os.rmdir(d)
        except OSError:
            pass
    return not os.path.isdir(path)


def _die_with_parent():
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


_live = set()


@atexit.register
def _close_all():
    for machine in list(_live):
        machine.close()


class Machine:
    """One booted machine. Use as a context manager, or call close()."""

    def __init__(self, packages=(), name="walbust"):
        self.token = secrets.token_hex(16)
        self.dir = tempfile.mkdtemp(prefix=f"walbust-machine-{name}-")
        self.root = os.path.join(self.dir, "root")
        self.console = os.path.join(self.dir, "console.log")
        self.proc = None
        self.pid1 = None
        self.cgroup = None
        self.mounted = False
        _live.add(self)
        try:
            self._mount_copy(rootfs(packages))
            with open(os.path.join(self.root, "walbust-machine"), "w") as f:
                f.write(self.token)
            with open(os.path.join(self.root, "etc/machine-id"), "w") as f:
                f.write(secrets.token_hex(16) + "\n")
            self.boot()
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _mount_copy(self, src):
        # A copy-on-write copy: the cached rootfs stays untouched below, this machine's
        # writes land in DIR/upper. (cp -a of the 240 MB tree takes over a minute here.)
        upper, work = os.path.join(self.dir, "upper"), os.path.join(self.dir, "work")
        for d in (upper, work, self.root):
            os.mkdir(d)
        run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={src},upperdir={upper},workdir={work}",
             self.root], check=True)
        self.mounted = True

    def _unmount_copy(self):
        if not self.mounted:
            return
        if run(["umount", self.root]).returncode != 0:
            run(["umount", "--lazy", self.root], check=True)
        self.mounted = False

    # -- boot and shutdown ------------------------------------------------------------

    def launch_env(self):
        return {
            "PATH": PATH,
            "WALBUST_MACHINE_TOKEN": self.token,
            "WALBUST_HOST_PIDNS": os.readlink("/proc/self/ns/pid"),
            "WALBUST_HOST_MNTNS": os.readlink("/proc/self/ns/mnt"),
        }

    def boot(self, timeout=120):
        # Its own cgroup, made the root of a cgroup namespace: systemd manages that subtree
        # only, and the whole machine is removed with it.
        base = _cgroup2_root()
        for stale in glob.glob(os.path.join(base, "walbust-machine-*")):
            _remove_cgroup_tree(stale)  # left by a killed test run; rmdir spares busy ones
        self.cgroup = os.path.join(base, "walbust-machine-" + self.token[:12])
        os.mkdir(self.cgroup)
        # If this test process dies, unshare gets SIGKILL (PR_SET_PDEATHSIG) and passes it on
        # to PID 1 (--kill-child), which takes the whole machine with it.
        script = ('echo $$ > "$1/cgroup.procs" && exec unshare --cgroup --pid --fork --kill-child=SIGKILL '
                  '--mount --propagation private -- /bin/sh "$2" "$3"')
        with open(self.console, "wb") as out:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", script, "sh", self.cgroup, BOOT_SH, self.root],
                env=self.launch_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent)
        self.pid1 = fixtures.wait_for(self._find_pid1, timeout=30, message="PID 1 of the machine",
                                      on_timeout=self.console_tail)
        fixtures.wait_for(self._booted, timeout=timeout, interval=0.5, message="systemd to finish booting",
                          on_timeout=lambda: self.console_tail() + "\n" + self.sh("systemctl list-jobs").stdout)

    def _find_pid1(self):
        if self.proc.poll() is not None:
            raise MachineError(f"the machine exited during boot (exit {self.proc.returncode}):\n{self.console_tail()}")
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                children = f.read().split()
        except OSError:
            return None
        if not children:
            return None
        pid = int(children[0])
        try:
            if os.readlink(f"/proc/{pid}/exe").endswith("/systemd"):
                return pid
        except OSError:
            pass
        return None

    def _booted(self):
        if self.proc.poll() is not None:
            raise MachineError(f"systemd exited (exit {self.proc.returncode}):\n{self.console_tail()}")
        res = self.exec(["systemctl", "is-system-running"], timeout=30)
        return res.stdout.strip() in ("running", "degraded")

    def console_tail(self, lines=60):
        return fixtures.log_tail(self.console, lines)

    def shutdown(self, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.exec(["systemctl", "poweroff", "--no-block"], timeout=30)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self):
        # SIGKILL to PID 1 of a pid namespace ends every process in it; only while that PID is
        # still this machine's, never a host process that reused the number.
        if self.pid1 is not None and self._owns_pid1():
            try:
                os.kill(self.pid1, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    def close(self):
        try:
            try:
                self.shutdown()
            except Exception:
                self.kill()
        finally:
            self._remove_cgroup()
            self._unmount_copy()
            # --one-file-system: should the overlay still be mounted, never walk into it.
            run(["rm", "-rf", "--one-file-system", self.dir], timeout=300)
            _live.discard(self)

    def _remove_cgroup(self):
        if self.cgroup is None:
            return
        for _ in range(50):
            if _remove_cgroup_tree(self.cgroup):
                return
            time.sleep(0.1)

    # -- driving it -------------------------------------------------------------------

    def _owns_pid1(self):
        """True while PID1 is this machine's systemd: its root holds this boot's marker."""
        try:
            with open(f"/proc/{self.pid1}/root/walbust-machine") as f:
                return self.proc.poll() is None and f.read() == self.token
        except OSError:
            return False

    def _check_target(self):
        # nsenter into a stale PID (the machine gone, the number reused) would run the command
        # on the host: systemctl poweroff, apt-get purge... The marker proves it is still ours.
        if not self._owns_pid1():
            raise MachineError(f"PID {self.pid1} is no longer this machine's PID 1:\n{self.console_tail()}")

    def exec(self, argv, timeout=120, input=None, env=None):
        """Runs argv inside the machine (its mount and pid namespaces, a clean environment)."""
        self._check_target()
        environ = ["PATH=" + PATH, "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"]
        environ += [f"{k}={v}" for k, v in (env or {}).items()]
        cmd = ["nsenter", "--target", str(self.pid1), "--mount", "--pid", "--", "/usr/bin/env", "-i",
               *environ, *argv]
        return run(cmd, timeout=timeout, input=input)

    def sh(self, script, timeout=120):
        return self.exec(["/bin/sh", "-c", script], timeout=timeout)

    def path(self, inside):
        """The host's path of a file under the machine's root (not under its tmpfs mounts)."""
        return os.path.join(self.root, inside.lstrip("/"))

    def read(self, inside):
        with open(self.path(inside)) as f:
            return f.read()

    def write(self, inside, text, mode=0o644):
        path = self.path(inside)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return inside

    def systemctl(self, *args, timeout=120):
        return self.exec(["systemctl", *args], timeout=timeout)

    def show(self, unit, *props):
        res = self.systemctl("show", unit, *(f"--property={p}" for p in props))
        return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)

    def journal(self, *args):
        return self.exec(["journalctl", "--no-pager", "-o", "short-precise", *args]).stdout

    def install(self, deb):
        """apt-get install ./walbust_*.deb inside (its dependencies are in the rootfs)."""
        name = os.path.basename(deb)
        shutil.copy(deb, self.path("/root/" + name))
        return self.exec(["/bin/sh", "-c", f"cd /root && apt-get install -y ./{name}"], timeout=300,
                         env={"DEBIAN_FRONTEND": "noninteractive"})


# ---------------------------------------------------------------------------------------
# walbust deployed in a machine, against PostgreSQL and Redis on the host's loopback

PG_ROLE = "walbust_svc"
ITEM_RULES = """\
version: 1
rules:
  - name: item-pages
    table: item
    delete: ["item_{id}", "group_{grp}"]
  - name: test-marker
    table: walbust_marker
    on: [insert]
    delete: ["walbust_marker_{id}"]
"""


def require_scram(pg, role, password):
    """A LOGIN REPLICATION role that must authenticate with SCRAM on 127.0.0.1.

    The fixture's other roles keep trust, so the test itself connects as before.
    """
    pg.execute("SET password_encryption = 'scram-sha-256'", user="postgres")
    pg.execute(f"CREATE ROLE {role} LOGIN REPLICATION PASSWORD %s", (password,), user="postgres")
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        rest = f.read()
    with open(hba, "w") as f:
        f.write(f"host all {role} 127.0.0.1/32 scram-sha-256\n"
                f"host replication {role} 127.0.0.1/32 scram-sha-256\n" + rest)
    pg.execute("SELECT pg_reload_conf()", user="postgres")


class Deployment:
    """Host-side servers with passwords, the item schema, and walbust's files for a machine.

    PostgreSQL: role walbust_svc (SCRAM), table item(id, grp) and walbust_marker in the
    publication walbust. Redis: requirepass. The passwords go to /etc/credstore only; the
    DSN and URL carry none.
    """

    def __init__(self):
        self.pg_password = "pg-" + secrets.token_hex(8)
        self.redis_password = "redis-" + secrets.token_hex(8)
        self.pg = fixtures.PostgresServer()
        self.redis = None
        try:
            self.redis = fixtures.RedisServer()
            self.redis.client().config_set("requirepass", self.redis_password)
            require_scram(self.pg, PG_ROLE, self.pg_password)
            self.pg.execute("CREATE TABLE item (id serial PRIMARY KEY, grp int)")
            self.pg.execute(f"CREATE TABLE {fixtures.MARKER_TABLE} (id serial PRIMARY KEY, note text)")
            self.pg.execute(f"CREATE PUBLICATION walbust FOR TABLE item, {fixtures.MARKER_TABLE}")
            self.metrics_port = fixtures.free_port()
        except BaseException:
            self.close()
            raise

    def close(self):
        for server in (self.redis, self.pg):
            if server is not None:
                server.close()

    def client(self):
        return self.redis.client(password=self.redis_password)

    def config(self, **overrides):
        batch = overrides.get("batch", "{max_keys: 10000, max_delay: 0ms}")
        return (
            "postgres:\n"
            f"  dsn: \"host=127.0.0.1 port={self.pg.port} dbname={self.pg.DATABASE} user={PG_ROLE}\"\n"
            "  slot: walbust\n  publication: walbust\n  create_slot: true\n  status_interval: 1s\n"
            f"redis:\n  url: \"redis://127.0.0.1:{self.redis.port}/0\"\n  timeout: 2s\n"
            "rules:\n  - /etc/walbust/rules.d/*.yaml\n"
            f"batch: {batch}\n"
            "on_gap: fail\n"
            f"metrics:\n  listen: \"127.0.0.1:{self.metrics_port}\"\n"
            "log:\n  level: info\n  format: auto\n"
        )

    def configure(self, machine, **overrides):
        """walbust's config, rules and credentials in the machine (package already installed)."""
        machine.write("/etc/walbust/walbust.yaml", self.config(**overrides))
        machine.write("/etc/walbust/rules.d/items.yaml", ITEM_RULES)
        machine.write("/etc/credstore/pg-password", self.pg_password, mode=0o600)
        machine.write("/etc/credstore/redis-password", self.redis_password, mode=0o600)
        os.chmod(machine.path("/etc/credstore"), 0o700)

    # -- workload -----------------------------------------------------------------------

    def insert_items(self, grp, count=1):
        rows = self.pg.query("INSERT INTO item (grp) SELECT %s FROM generate_series(1, %s) RETURNING id",
                             (grp, count))
        return [r[0] for r in rows]

    def cache(self, keys):
        fixtures.fill_keys(self.client(), keys)

    def wait_gone(self, keys, timeout=30, on_timeout=None):
        client = self.client()
        fixtures.wait_for(lambda: not fixtures.existing_keys(client, keys), timeout=timeout,
                          message=f"walbust to delete {sorted(keys)[:5]}...", on_timeout=on_timeout)

    def sync(self, timeout=30, on_timeout=None):
        """Waits until walbust handled every transaction committed so far (a marker row)."""
        marker = self.pg.query(f"SELECT nextval('{fixtures.MARKER_TABLE}_id_seq')")[0][0]
        key = f"walbust_marker_{marker}"
        self.client().set(key, "x")  # before the insert, so its delete cannot come first
        self.pg.execute(f"INSERT INTO {fixtures.MARKER_TABLE} (id, note) VALUES (%s, 'sync')", (marker,))
        self.wait_gone([key], timeout=timeout, on_timeout=on_timeout)

    def check_deletes(self, grp, extra_templates=(), on_timeout=None):
        """Inserts one item and waits until walbust deleted its keys (cached beforehand)."""
        item = self.pg.query("SELECT nextval('item_id_seq')")[0][0]
        keys = [f"item_{item}", f"group_{grp}"] + [t.format(id=item, grp=grp) for t in extra_templates]
        self.cache(keys)
        self.pg.execute("INSERT INTO item (id, grp) VALUES (%s, %s)", (item, grp))
        self.wait_gone(keys, on_timeout=on_timeout)
        return item
