#!/usr/bin/env python3
"""install_test.py - libdkimd as an outside program sees it, from the installed files only.

usage: install_test.py BUILD_DIR SOURCE_DIR DKIMD CC CXX [EXTRA_FLAG ...]

1. `meson install --destdir TMP` from BUILD_DIR.
2. The installed headers are exactly libdkimd's (client.h and what it includes): no
   header of a library that is not installed.
3. Each installed header compiles alone, as C and as C++, with warnings as errors.
4. tests/ipc/install_client.c is built with `pkg-config --cflags --libs libdkimd` (the
   installed .pc, PKG_CONFIG_SYSROOT_DIR=TMP) and an rpath into TMP, and must load TMP's
   libdkimd.so.0.
5. It runs: the exported reason and result functions, then a sample verified through a
   dkimd started here (--zone samples/keys.zone, a socket in TMP), which must pass.

CXX may be '' (no C++ compiler: that part is skipped, said so). EXTRA_FLAGs (the
build's sanitizers) are added when building the client, whose library carries them.
Every failure prints the command and its output and exits 1.
"""
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

EXPECTED_HEADERS = {"client.h", "result.h", "reason.h"}


def fail(msg, out=""):
    sys.stderr.write("install_test: FAILED: %s\n" % msg)
    if out:
        sys.stderr.write(out if out.endswith("\n") else out + "\n")
    sys.exit(1)


def run(cmd, what, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        fail("%s (exit %d)\n  $ %s" % (what, p.returncode, shlex.join(cmd)),
             p.stdout + p.stderr)
    return p.stdout


def find(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    return None


def main():
    if len(sys.argv) < 6:
        sys.stderr.write(__doc__)
        return 2
    build, source, dkimd, cc, cxx = sys.argv[1:6]
    extra = [f for f in sys.argv[6:] if f]
    cc = shlex.split(cc)
    cxx = shlex.split(cxx)
    tmp = tempfile.mkdtemp(prefix="dkimd-install-")
    daemon = None
    try:
        dest = os.path.join(tmp, "root")
        run(["meson", "install", "-C", build, "--destdir", dest, "--no-rebuild", "--quiet"],
            "meson install")

        pc = find(dest, "libdkimd.pc")
        client_h = find(dest, "client.h")
        if pc is None or client_h is None:
            fail("no libdkimd.pc or dkimd/client.h under %s" % dest)
        incdir = os.path.dirname(os.path.dirname(client_h))
        installed = set(os.listdir(os.path.join(incdir, "dkimd")))
        if installed != EXPECTED_HEADERS:
            fail("installed headers %s, expected %s (a header whose library is not "
                 "installed, or one libdkimd needs and does not install)"
                 % (sorted(installed), sorted(EXPECTED_HEADERS)))

        # Each header alone, twice over (its include guard), as C and as C++.
        langs = [("c", cc, ["-std=c17"])]
        if cxx:
            langs.append(("c++", cxx, ["-std=c++17"]))
        else:
            print("install_test: no C++ compiler: headers checked as C only")
        for h in sorted(installed):
            src = "#include <dkimd/%s>\n#include <dkimd/%s>\n" % (h, h)
            for lang, comp, std in langs:
                cmd = comp + ["-fsyntax-only", "-x", lang, *std, "-Wall", "-Wextra", "-Werror",
                              "-pedantic", "-I", incdir, "-"]
                p = subprocess.run(cmd, input=src, capture_output=True, text=True)
                if p.returncode != 0:
                    fail("dkimd/%s does not compile alone as %s\n  $ %s"
                         % (h, lang, shlex.join(cmd)), p.stdout + p.stderr)
            print("install_test: dkimd/%s compiles alone as C%s" % (h, " and C++" if cxx else ""))

        # A client built from the installed files only.
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pc), PKG_CONFIG_SYSROOT_DIR=dest,
                   PKG_CONFIG_LIBDIR=os.path.dirname(pc))
        flags = shlex.split(run(["pkg-config", "--cflags", "--libs", "libdkimd"],
                                "pkg-config libdkimd", env=env))
        libdirs = [f[2:] for f in flags if f.startswith("-L")]
        if not libdirs or not all(d.startswith(dest) for d in libdirs):
            fail("pkg-config gave no library directory in %s: %s" % (dest, shlex.join(flags)))
        prog = os.path.join(tmp, "install_client")
        run(cc + ["-std=c17", "-Wall", "-Wextra", "-Werror", *extra,
                  os.path.join(source, "tests", "ipc", "install_client.c"), "-o", prog,
                  *flags, "-Wl,-rpath," + libdirs[0]],
            "building a client with pkg-config libdkimd")
        # As an outside program runs: meson test points LD_LIBRARY_PATH into the build.
        clean = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        ldd = run(["ldd", prog], "ldd install_client", env=clean)
        lib = [l for l in ldd.splitlines() if "libdkimd.so" in l]
        if not lib or dest not in lib[0]:
            fail("install_client does not load the installed libdkimd.so.0", ldd)

        sock = os.path.join(tmp, "dkimd.sock")
        log_path = os.path.join(tmp, "dkimd.log")
        with open(log_path, "w") as log:
            daemon = subprocess.Popen(
                [dkimd, "--socket", sock, "--zone",
                 os.path.join(source, "samples", "keys.zone"), "--workers", "1",
                 "--authserv-id", "install.example", "--log", "stderr"],
                stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 20
        while not os.path.exists(sock):
            if daemon.poll() is not None or time.monotonic() > deadline:
                with open(log_path) as log:
                    fail("dkimd did not start", log.read())
            time.sleep(0.05)
        sample = os.path.join(source, "samples", "01-pass-rsa2048.eml")
        out = run([prog, sock, sample], "install_client against dkimd", env=clean)
        sys.stdout.write(out)
        if "install_client: pass" not in out:
            fail("the sample did not pass", out)
        print("install_test: ok")
        return 0
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
