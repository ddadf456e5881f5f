"""boot.sh refuses to exec systemd anywhere but in a fresh machine (see its guards), and
machine.py refuses to run commands through a PID that is no longer the machine's.

Every case runs the script against a rootfs that has no systemd at all, so even a broken
guard could not boot anything; the message proves which guard refused first.
"""

import os
import shutil
import subprocess
import tempfile
import unittest

from machine import BOOT_SH, PATH, Machine, MachineError


class BootGuard(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="walbust-guard-")
        self.root = os.path.join(self.tmp, "root")
        os.makedirs(self.root)
        self.token = "guard-test-token"
        with open(os.path.join(self.root, "walbust-machine"), "w") as f:
            f.write(self.token)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def boot(self, wrapper, token=None, env=None):
        environ = {
            "PATH": PATH,
            "WALBUST_MACHINE_TOKEN": token or self.token,
            "WALBUST_HOST_PIDNS": os.readlink("/proc/self/ns/pid"),
            "WALBUST_HOST_MNTNS": os.readlink("/proc/self/ns/mnt"),
        }
        environ.update(env or {})
        res = subprocess.run([*wrapper, "/bin/sh", BOOT_SH, self.root], env=environ, capture_output=True,
                             text=True, timeout=30)
        return res.returncode, res.stderr

    def assertRefused(self, result, reason):
        code, stderr = result
        self.assertEqual(code, 97, stderr)
        self.assertIn("refusing to boot systemd", stderr)
        self.assertIn(reason, stderr)

    def test_it_refuses_in_the_callers_pid_namespace(self):
        self.assertRefused(self.boot([]), "not PID 1")

    def test_it_refuses_when_only_the_mount_namespace_is_new(self):
        self.assertRefused(self.boot(["unshare", "--mount"]), "not PID 1")

    def test_it_refuses_as_pid_1_in_the_callers_mount_namespace(self):
        self.assertRefused(self.boot(["unshare", "--pid", "--fork"]), "launcher's mount namespace")

    def test_it_refuses_when_the_launchers_namespaces_are_unknown(self):
        self.assertRefused(self.boot(["unshare", "--pid", "--fork", "--mount"], env={"WALBUST_HOST_MNTNS": ""}),
                           "must name the launcher's namespaces")

    def test_it_refuses_a_rootfs_without_this_boots_marker(self):
        self.assertRefused(self.boot(["unshare", "--pid", "--fork", "--mount"], token="another-token"),
                           "does not hold this boot's token")

    def test_it_refuses_the_hosts_root_as_rootfs(self):
        self.root = "/"
        self.assertRefused(self.boot(["unshare", "--pid", "--fork", "--mount"]), "ROOTFS is the host's root")

    def test_it_refuses_a_rootfs_without_systemd(self):
        self.assertRefused(self.boot(["unshare", "--pid", "--fork", "--mount"]), "has no /lib/systemd/systemd")


class MachineTarget(unittest.TestCase):
    """nsenter must never reach the host through a PID the machine no longer owns."""

    def test_commands_are_refused_once_the_machine_is_gone(self):
        with Machine(name="guard") as m:
            self.assertIn(m.exec(["systemctl", "is-system-running"]).stdout.strip(), ("running", "degraded"))
            self.assertEqual(m.exec(["cat", "/walbust-machine"]).stdout, m.token)
            m.kill()
            with self.assertRaisesRegex(MachineError, "no longer this machine's PID 1"):
                m.exec(["true"])


if __name__ == "__main__":
    unittest.main()
