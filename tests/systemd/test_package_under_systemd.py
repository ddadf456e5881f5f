"""The .deb's life cycle on a host where systemd runs: install, upgrade, remove, purge.

The upgrade installs the same package repacked with a higher version (dpkg-deb), so the
maintainer scripts run exactly as for a real upgrade without a second build.
"""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from machine import Deployment, Machine, build_deb, deb_field

STATE = "/var/lib/private/walbust/walbust-walbust.state"


def bumped(deb, out_dir):
    """deb repacked with version VERSION+test1."""
    tree = os.path.join(out_dir, "tree")
    subprocess.run(["dpkg-deb", "-R", deb, tree], check=True)
    control = os.path.join(tree, "DEBIAN", "control")
    with open(control) as f:
        text = f.read()
    version = deb_field(deb, "Version")
    with open(control, "w") as f:
        f.write(text.replace(f"Version: {version}\n", f"Version: {version}+test1\n"))
    path = os.path.join(out_dir, f"walbust_{version}+test1_{deb_field(deb, 'Architecture')}.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, path], check=True, capture_output=True)
    return path, version + "+test1"


class PackageLifecycle(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="walbust-pkg-")
        self.deb = build_deb(self.tmp)
        self.env = Deployment()
        self.addCleanup(self.env.close)
        self.m = Machine(name="pkg")
        self.addCleanup(self.m.close)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def unit_log(self):
        return self.m.journal("-u", "walbust", "-n", "60")

    def props(self):
        return self.m.show("walbust", "ActiveState", "MainPID", "ExecMainStartTimestampMonotonic", "UnitFileState",
                           "LoadState")

    def test_install_upgrade_remove_and_purge(self):
        res = self.m.install(self.deb)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        props = self.props()
        # Installed, known to systemd, but neither enabled nor started: it needs a config.
        self.assertEqual((props["LoadState"], props["ActiveState"], props["UnitFileState"]),
                         ("loaded", "inactive", "disabled"), props)

        self.env.configure(self.m)
        res = self.m.systemctl("enable", "--now", "walbust")
        self.assertEqual(res.returncode, 0, res.stderr + self.unit_log())
        self.env.check_deletes(1, on_timeout=self.unit_log)
        self.env.sync(on_timeout=self.unit_log)
        before = self.props()
        slot_before = self.env.pg.slot_info("walbust")
        state_before = json.loads(self.m.read(STATE))

        # Upgrade: postinst restarts the running daemon on the new package; it resumes from
        # its slot (no gap, the same slot, nothing missed while it restarted).
        newer, version = bumped(self.deb, self.tmp)
        res = self.m.install(newer)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn(version, self.m.exec(["dpkg-query", "-W", "-f=${Version}", "walbust"]).stdout)
        after = self.props()
        self.assertEqual(after["ActiveState"], "active", after)
        self.assertNotEqual(after["MainPID"], before["MainPID"], "the upgrade restarted the daemon")
        self.assertEqual(after["UnitFileState"], "enabled")
        self.env.check_deletes(2, on_timeout=self.unit_log)
        self.env.sync(on_timeout=self.unit_log)
        slot_after = self.env.pg.slot_info("walbust")
        self.assertEqual(slot_after["plugin"], "pgoutput")
        self.assertGreaterEqual(slot_after["confirmed_flush_lsn"], slot_before["confirmed_flush_lsn"])
        journal = self.m.journal("-u", "walbust")
        self.assertNotIn("gap", journal.lower(), journal)
        state_after = json.loads(self.m.read(STATE))
        self.assertEqual((state_after["system_identifier"], state_after["slot"]),
                         (state_before["system_identifier"], state_before["slot"]))

        # Remove: prerm stops the service; the config and the state stay.
        res = self.m.exec(["apt-get", "remove", "-y", "walbust"], timeout=300)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(self.m.show("walbust", "ActiveState")["ActiveState"], "inactive")
        self.assertFalse(os.path.exists(self.m.path("/usr/bin/walbust")))
        self.assertTrue(os.path.exists(self.m.path("/etc/walbust/walbust.yaml")))
        self.assertTrue(os.path.exists(self.m.path(STATE)))

        # Purge: the config and the recorded slot position go; the slot stays in PostgreSQL,
        # as README.Debian says, until an operator drops it.
        res = self.m.exec(["apt-get", "purge", "-y", "walbust"], timeout=300)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertFalse(os.path.exists(self.m.path("/etc/walbust/walbust.yaml")))
        self.assertFalse(os.path.exists(self.m.path("/var/lib/private/walbust")))
        self.assertFalse(os.path.lexists(self.m.path("/var/lib/walbust")))
        self.assertIsNotNone(self.env.pg.slot_info("walbust"))


if __name__ == "__main__":
    unittest.main()
