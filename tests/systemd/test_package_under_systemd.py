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

from machine import DENIALS, Deployment, Machine, build_deb, deb_depends, deb_field

STATE = "/var/lib/private/walbust/walbust-walbust.state"


def bumped(deb, out_dir):
    """deb repacked with version VERSION+test1; returns (path, version)."""
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
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.deb = build_deb(self.tmp)
        self.env = Deployment()
        self.addCleanup(self.env.close)
        self.m = Machine(packages=deb_depends(self.deb), name="pkg")
        self.addCleanup(self.m.close)

    def unit_log(self):
        return self.m.journal("-u", "walbust", "-n", "60")

    def props(self):
        return self.m.show("walbust", "ActiveState", "MainPID", "UnitFileState", "LoadState")

    def test_install_upgrade_remove_and_purge(self):
        self.install_and_start()
        self.upgrade()
        self.remove()
        self.purge()
        journal = self.m.journal("-u", "walbust")
        self.assertEqual([line for line in journal.splitlines() if DENIALS.search(line)], [])

    def install_and_start(self):
        res = self.m.install(self.deb)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        props = self.props()
        # Installed and known to systemd, but neither enabled nor started: it needs a config.
        self.assertEqual((props["LoadState"], props["ActiveState"], props["UnitFileState"]),
                         ("loaded", "inactive", "disabled"), props)
        self.env.configure(self.m)
        res = self.m.systemctl("enable", "--now", "walbust")
        self.assertEqual(res.returncode, 0, res.stderr + self.unit_log())
        self.env.check_deletes(1, on_timeout=self.unit_log)
        self.env.sync(on_timeout=self.unit_log)

    def upgrade(self):
        # postinst restarts the running daemon on the new package; it resumes from its slot:
        # the same slot, no gap, and it keeps deleting.
        before = self.props()
        slot_before = self.env.pg.slot_info("walbust")
        state_before = json.loads(self.m.read(STATE))
        newer, version = bumped(self.deb, self.tmp)
        res = self.m.install(newer)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(self.m.exec(["dpkg-query", "-W", "-f=${Version}", "walbust"]).stdout, version)
        after = self.props()
        self.assertEqual((after["ActiveState"], after["UnitFileState"]), ("active", "enabled"), after)
        self.assertNotEqual(after["MainPID"], before["MainPID"], "the upgrade restarted the daemon")
        self.env.check_deletes(2, on_timeout=self.unit_log)
        self.env.sync(on_timeout=self.unit_log)
        slot_after = self.env.pg.slot_info("walbust")
        self.assertEqual(slot_after["plugin"], "pgoutput")
        self.assertGreater(slot_after["confirmed_flush_lsn"], slot_before["confirmed_flush_lsn"])
        self.assertNotIn("gap", self.m.journal("-u", "walbust").lower())
        state_after = json.loads(self.m.read(STATE))
        self.assertEqual((state_after["system_identifier"], state_after["slot"]),
                         (state_before["system_identifier"], state_before["slot"]))

    def remove(self):
        # prerm stops the service; the config and the state stay.
        res = self.m.exec(["apt-get", "remove", "-y", "walbust"], timeout=300)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(self.m.show("walbust", "ActiveState")["ActiveState"], "inactive")
        self.assertFalse(os.path.exists(self.m.path("/usr/bin/walbust")))
        self.assertTrue(os.path.exists(self.m.path("/etc/walbust/walbust.yaml")))
        self.assertTrue(os.path.exists(self.m.path(STATE)))

    def purge(self):
        # The config and the recorded slot position go; the slot stays in PostgreSQL, as
        # README.Debian says, until an operator drops it. Files the admin added stay.
        res = self.m.exec(["apt-get", "purge", "-y", "walbust"], timeout=300)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertFalse(os.path.exists(self.m.path("/etc/walbust/walbust.yaml")))
        self.assertTrue(os.path.exists(self.m.path("/etc/walbust/rules.d/items.yaml")))
        self.assertFalse(os.path.exists(self.m.path("/var/lib/private/walbust")))
        self.assertFalse(os.path.lexists(self.m.path("/var/lib/walbust")))
        self.assertIsNotNone(self.env.pg.slot_info("walbust"))


if __name__ == "__main__":
    unittest.main()
