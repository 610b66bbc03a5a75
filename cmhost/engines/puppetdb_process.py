"""How a server's PuppetDB JVM is run: Debian's puppetdb package, and its command line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cmhost.engines.puppetdb_config import Layout
from cmhost.engines.supervisor import ProcessSpec

PACKAGE_HINT = ("install the Debian packages puppetdb and puppet-terminus-puppetdb "
                "(apt-get install puppetdb puppet-terminus-puppetdb)")
PUPPETDB_JAR = Path("/usr/share/puppetdb/puppetdb.jar")
# puppet-terminus-puppetdb installs here; puppetserver's ruby-load-path sees it because
# /usr/lib/puppetserver/ruby/vendor_ruby/puppet is a link to /usr/lib/ruby/vendor_ruby/puppet.
TERMINUS = Path("/usr/lib/ruby/vendor_ruby/puppet/indirector/catalog/puppetdb.rb")
JAVA = "/usr/bin/java"
# Measured: about 100 MB of heap in use after start-up; the rest of the ~350 MB resident is
# classes and code (PuppetDB's Clojure is compiled at start). The heap starts small and gives
# memory back; the serial collector and C1 only, as for puppetserver, for footprint and start.
JVM_OPTIONS = ("-Xms32m", "-Xmx256m", "-XX:MinHeapFreeRatio=10", "-XX:MaxHeapFreeRatio=30",
               "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


def missing_package() -> str:
    """Why PuppetDB cannot run here ("" when it can)."""
    for path, what in ((PUPPETDB_JAR, "puppetdb.jar"), (TERMINUS, "its Puppet termini")):
        if not path.exists():
            return f"PuppetDB needs {what} ({path}); {PACKAGE_HINT}."
    if not (os.access(JAVA, os.X_OK) or shutil.which("java")):
        return f"PuppetDB needs Java ({JAVA}); {PACKAGE_HINT}."
    return ""


def process_spec(paths: Layout, name: str) -> ProcessSpec:
    """The supervised JVM (the package's systemd unit's command line, with our paths)."""
    java = JAVA if os.access(JAVA, os.X_OK) else (shutil.which("java") or JAVA)
    argv = [
        java, *JVM_OPTIONS, "-Djava.security.egd=/dev/urandom",
        f"-Djava.io.tmpdir={paths.run / 'tmp'}", "-XX:+CrashOnOutOfMemoryError",
        f"-XX:ErrorFile={paths.log / 'puppetdb_err_pid%p.log'}",
        "-cp", str(PUPPETDB_JAR), "clojure.main", "-m", "puppetlabs.puppetdb.core",
        "services", "--config", str(paths.conf),
        "--bootstrap-config", str(paths.root / "bootstrap.cfg"),
        "--restart-file", str(paths.run / "restart"),
    ]
    # Nothing of cmhost's environment (a master key, the database URL) reaches it.
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(paths.var)}
    return ProcessSpec(name=f"PuppetDB of {name}", argv=argv, cwd=paths.root,
                       log_file=paths.log / "console.log", pid_file=paths.run / "puppetdb.pid",
                       marker=str(paths.conf), env=env, stop_timeout=30.0)
