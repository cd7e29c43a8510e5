"""plot_deps: imports matplotlib (Agg backend) for the bench plots, installing
Debian's python3-matplotlib with apt-get when it is missing (as root, or with
passwordless sudo). Import it before matplotlib.pyplot.
"""
import os
import subprocess
import sys

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where python3-matplotlib goes


def install_matplotlib():
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("plot_deps: installing python3-matplotlib", file=sys.stderr)
    install = sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "python3-matplotlib"]
    quiet = dict(env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    if subprocess.run(install, **quiet).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, **quiet)
        subprocess.run(install, check=True, **quiet)


try:
    import matplotlib
except ImportError:
    # Another python3 first on PATH (pyenv, a venv) does not see Debian's
    # packages: run this script again with the system's.
    other = os.path.exists(SYSTEM_PYTHON) and os.path.realpath(sys.executable) != os.path.realpath(SYSTEM_PYTHON)
    if other and not os.environ.get("PLOT_PY_REEXEC"):
        if subprocess.run([SYSTEM_PYTHON, "-c", "import matplotlib"], capture_output=True).returncode != 0:
            install_matplotlib()
        os.execve(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv, dict(os.environ, PLOT_PY_REEXEC="1"))
    install_matplotlib()
    import matplotlib

matplotlib.use("Agg")
