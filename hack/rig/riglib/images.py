"""Container images without a registry: built with buildah, exported as OCI archives, imported into the
real node's containerd.

- `localhost/pause:rig`: the sandbox image, from Kubernetes' own pause.c (in the Go module cache after
  the rig's build), compiled static, `FROM scratch`.
- `localhost/procjob-base:<key>`: Debian bookworm + python3 by debootstrap, a stand-in for
  `python:3.11-slim-bookworm` (no registry to pull it from).
- `localhost/procjob:dev`: the project's Dockerfile, unchanged, built on that base. The same image runs
  the operator, the built-in stages and test stages that need "some image with python".

Each is cached outside the repo (like the Go builds: $PROCJOB_RIG_CACHE, default ~/.cache/procjob-rig)
under a key of its inputs, so a second `make image` with nothing changed builds nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .config import LOGS, ROOT, RigError, rel, say
from .nodeconf import PAUSE_IMAGE

PROCJOB_IMAGE = "localhost/procjob:dev"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
K8S_GO_MOD = ROOT / "hack" / "rig" / "k8s" / "go.mod"
# What the Dockerfile's build context holds (.dockerignore): the key of the project image.
CONTEXT_FILES = ("Dockerfile", "pyproject.toml", "README.md")
CONTEXT_DIRS = ("operator",)


def cache_dir() -> Path:
    base = os.environ.get("PROCJOB_RIG_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "procjob-rig"
    )
    path = Path(base) / "images"
    path.mkdir(parents=True, exist_ok=True)
    return path


def buildah(*args: str, log: Path | None = None, what: str = "buildah") -> str:
    """buildah with the cache's own storage (not the system's /var/lib/containers)."""
    store = cache_dir()
    argv = ["buildah", f"--root={store / 'storage'}", f"--runroot={store / 'run'}", *args]
    if log is None:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RigError(f"{what} failed: {(done.stderr or done.stdout).strip()[-300:]}")
        return done.stdout
    with log.open("ab") as out:
        code = subprocess.call(argv, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        raise RigError(f"{what} failed (exit {code}); {last_lines(log)}")
    return ""


def last_lines(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return f"last line: {lines[-1][:300] if lines else '(empty)'} (see {rel(log)})"


def k8s_module_dir() -> Path:
    """Where the Go module cache holds the Kubernetes module the rig pins (for pause.c)."""
    words = next(ln.split() for ln in K8S_GO_MOD.read_text().splitlines() if "k8s.io/kubernetes v" in ln)
    version = words[words.index("k8s.io/kubernetes") + 1]
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    return Path(modcache) / f"k8s.io/kubernetes@{version}"


def archive(name: str, key: str) -> Path:
    return cache_dir() / f"{name}-{key}.tar"


def export(image: str, dest: Path) -> None:
    """An OCI archive of `image`, named inside as `image` (what `ctr images import` tags it with)."""
    tmp = dest.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    buildah("push", image, f"oci-archive:{tmp}:{image}", what=f"exporting {image}")
    tmp.replace(dest)


def build_pause() -> Path:
    """The sandbox image; a static binary of Kubernetes' pause.c."""
    source = k8s_module_dir() / "build" / "pause" / "linux" / "pause.c"
    if not source.exists():
        raise RigError(f"missing {source}: run `make setup` (the rig's Go build downloads it)")
    key = hashlib.sha256(source.read_bytes() + b"gcc -Os -static v1").hexdigest()[:16]
    dest = archive("pause", key)
    if dest.exists():
        return dest
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pause-") as tmp:
        binary = Path(tmp) / "pause"
        argv = ["gcc", "-Os", "-static", "-DVERSION=rig", "-o", str(binary), str(source)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RigError(f"compiling pause.c failed: {done.stderr.strip()[-300:]}")
        recipe = 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
        (Path(tmp) / "Containerfile").write_text(recipe)
        log = LOGS / "image-pause.log"
        buildah("bud", "--isolation=chroot", "-t", PAUSE_IMAGE, tmp, log=log, what="building pause")
    export(PAUSE_IMAGE, dest)
    say(f"image {PAUSE_IMAGE} built ({time.monotonic() - t0:.0f}s)")
    return dest


def base_key() -> str:
    return hashlib.sha256(f"bookworm minbase {' '.join(BASE_PACKAGES)} {DEBIAN_MIRROR} v1".encode()).hexdigest()[:16]


def build_base() -> str:
    """Debian bookworm + python3 (debootstrap, minbase); the image name, built once per key."""
    key = base_key()
    image = f"localhost/procjob-base:{key}"
    if buildah("images", "-q", "--filter", f"reference={image}", what="listing images").strip():
        return image
    log = LOGS / "image-base.log"
    log.write_text("")
    t0 = time.monotonic()
    say("image: debootstrap of Debian bookworm + python3 (cold: 1-2 min; see .rig/logs/image-base.log)")
    with tempfile.TemporaryDirectory(prefix="procjob-base-", dir=cache_dir()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        argv = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", "bookworm", str(rootfs)]
        with log.open("ab") as out:
            code = subprocess.call([*argv, DEBIAN_MIRROR], stdout=out, stderr=subprocess.STDOUT)
        if code != 0:
            raise RigError(f"debootstrap failed (exit {code}); {last_lines(log)}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            shutil.rmtree(rootfs / junk, ignore_errors=True)
        tar = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar), "."], check=True)
        (Path(tmp) / "Containerfile").write_text('FROM scratch\nADD rootfs.tar /\nCMD ["python3"]\n')
        buildah("bud", "--isolation=chroot", "-t", image, "-f", str(Path(tmp) / "Containerfile"), tmp, log=log,
                what="building the base image")  # fmt: skip
    say(f"image {image} built ({time.monotonic() - t0:.0f}s)")
    return image


def context_key(base: str) -> str:
    """A key of everything the project image is built from: the build context, the base, the recipe."""
    digest = hashlib.sha256(f"{base} v1".encode())
    files = [ROOT / f for f in CONTEXT_FILES]
    for d in CONTEXT_DIRS:
        files += [p for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and ".egg-info" not in str(p) and p.suffix not in (".pyc", ".pyo", ".pyd")]  # fmt: skip
    for path in sorted(files):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def build_procjob(tag: str = PROCJOB_IMAGE, target: str | None = None) -> Path:
    """The project's Dockerfile, unchanged, on the local base; its OCI archive (cached by key).

    `tag` and `target` (a Dockerfile stage, e.g. `dev` for the Tiltfile) default to the runtime image
    `localhost/procjob:dev`, the one node-up imports; other builds are cached apart.
    """
    base = build_base()
    key = context_key(f"{base} {tag} {target or 'runtime'}")
    stem = "procjob" if (tag, target) == (PROCJOB_IMAGE, None) else "custom"
    dest = archive(stem, key)
    if dest.exists():
        say(f"image {tag} is up to date (key {key})")
        return dest
    log = LOGS / "image-procjob.log"
    log.write_text("")
    t0 = time.monotonic()
    say("image: building the Dockerfile with buildah (cold: about a minute; see .rig/logs/image-procjob.log)")
    # pip inside the build needs this machine's CA bundle and pip configuration (its index is behind a
    # TLS-intercepting proxy); mounted read-only for the build only, never part of the image.
    mounts = [f"--volume={p}:{p}:ro" for p in ("/etc/ssl/certs", "/etc/pip.conf") if Path(p).exists()]
    stage = [f"--target={target}"] if target else []
    buildah("bud", "--isolation=chroot", "--layers", *mounts, *stage, f"--build-arg=PYTHON_IMAGE={base}",
            f"--build-arg=REVISION={git_revision()}", "-t", tag, "-f", str(ROOT / "Dockerfile"),
            str(ROOT), log=log, what="building the procjob image")  # fmt: skip
    export(tag, dest)
    for old in cache_dir().glob(f"{stem}-*.tar"):
        if old != dest:
            old.unlink(missing_ok=True)
    say(f"image {tag} built ({time.monotonic() - t0:.0f}s, {dest.stat().st_size / 2**20:.0f} MiB)")
    return dest


def git_revision() -> str:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def import_archive(socket: Path, path: Path) -> None:
    """Import an OCI archive into the node's containerd (namespace k8s.io, where the kubelet looks)."""
    done = subprocess.run(
        ["ctr", f"--address={socket}", "--namespace=k8s.io", "images", "import", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RigError(f"importing {path.name} into the node failed: {(done.stderr or done.stdout).strip()[-300:]}")


def latest_procjob_archive() -> Path | None:
    """The archive `make image` built last (None before the first build)."""
    found = sorted(cache_dir().glob("procjob-*.tar"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None
