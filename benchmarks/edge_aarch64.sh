#!/usr/bin/env bash
# Proof on aarch64: the same kcv .tflite files, run by `kcv predict` on x86 and on an
# emulated arm64 Debian with the TensorFlow-free runtime from pip, compared.
#
#   sudo benchmarks/edge_aarch64.sh            # from the repository root, on a Debian/Ubuntu x86 host
#
# Steps (each skipped when its output exists, so a rerun resumes):
#   1. host tools: debootstrap, qemu-user-static, binfmt-support (apt); binfmt_misc
#      mounted and qemu-aarch64 registered with the F flag (the interpreter is opened
#      at registration, so it works inside the chroot);
#   2. an arm64 Debian userland under $WORK/rootfs (debootstrap --arch=arm64, minbase);
#   3. inside it, a venv with the TensorFlow-free runtime from pip (numpy, Pillow,
#      click, ai-edge-litert, onnxruntime: aarch64 wheels) and kcv installed --no-deps;
#   4. on x86 (the kcv venv, with TensorFlow): a classification and a segmentation run,
#      their fp32 and int8 files, validation images (benchmarks/edge_aarch64.py prepare);
#   5. `kcv predict` on both machines (... predict), then the table (... compare) into
#      $WORK/results.md. Latency under emulation measures qemu, so none is reported.
#
# Environment: WORK (default /tmp/kcv-aarch64), SUITE (bookworm), MIRROR
# (http://deb.debian.org/debian), PYTHON (the x86 python with kcv; default: python).
# Needs root (debootstrap, chroot, binfmt_misc) and network access to the mirror and PyPI.
# Not run in CI.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/kcv-aarch64}
ROOTFS=$WORK/rootfs
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python}
DATA=$WORK/data
say() { echo "== $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "error: needs root (debootstrap, chroot, binfmt_misc)" >&2; exit 2; }
mkdir -p "$WORK"

say "1. host tools"
if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    apt-get update -q && apt-get install -y -q --no-install-recommends debootstrap qemu-user-static binfmt-support
fi
# qemu 7.2 (Debian 12) segfaults as soon as onnxruntime is imported or a LiteRT interpreter
# is created; qemu 10 (bookworm-backports) runs both.
if [ "$(qemu-aarch64-static --version | head -1 | sed -E 's/.*version ([0-9]+).*/\1/')" -lt 8 ]; then
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    echo "deb $MIRROR $codename-backports main" > /etc/apt/sources.list.d/kcv-qemu-backports.list
    apt-get update -q && apt-get install -y -q -t "$codename-backports" qemu-user-static
    [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64  # re-open the new binary
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    update-binfmts --enable qemu-aarch64 2>/dev/null || \
    echo ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
        > /proc/sys/fs/binfmt_misc/register
fi
grep -q '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || { echo "error: qemu-aarch64 is registered without the F flag" >&2; exit 2; }

say "2. arm64 Debian $SUITE userland in $ROOTFS"
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$ROOTFS" "$MIRROR"
fi
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
for fs in proc dev sys; do mountpoint -q "$ROOTFS/$fs" || mount --bind "/$fs" "$ROOTFS/$fs"; done
trap 'for fs in proc dev sys opt/data; do umount "$ROOTFS/$fs" 2>/dev/null || true; done' EXIT
[ "$(chroot "$ROOTFS" uname -m)" = aarch64 ] || { echo "error: the chroot does not run as aarch64" >&2; exit 2; }

say "3. the TensorFlow-free runtime from pip, inside arm64"
if [ ! -x "$ROOTFS/opt/kcv/bin/python" ]; then
    chroot "$ROOTFS" python3 -m venv /opt/kcv
fi
# pip in the chroot trusts what the host trusts (e.g. a proxy's CA) and uses the host's index.
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
PIPENV=(env PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DEFAULT_TIMEOUT=180)
for var in PIP_INDEX_URL PIP_EXTRA_INDEX_URL HTTPS_PROXY HTTP_PROXY https_proxy http_proxy; do
    [ -n "${!var:-}" ] && PIPENV+=("$var=${!var}")
done
chroot "$ROOTFS" "${PIPENV[@]}" /opt/kcv/bin/pip install -q "numpy>=1.26" "pillow>=10" "click>=8.1" \
    ai-edge-litert onnxruntime
rm -rf "$ROOTFS/opt/kcv-src" && mkdir -p "$ROOTFS/opt/kcv-src"
cp -r "$REPO/kcv" "$REPO/kcv_entry" "$REPO/benchmarks" "$REPO/pyproject.toml" "$REPO/README.md" "$ROOTFS/opt/kcv-src/"
chroot "$ROOTFS" "${PIPENV[@]}" /opt/kcv/bin/pip install -q --no-deps /opt/kcv-src
chroot "$ROOTFS" /opt/kcv/bin/python -c "import sys, kcv; assert 'tensorflow' not in sys.modules; print('kcv', kcv.__version__, 'on', __import__('platform').machine())"

say "4. x86: runs, exports, validation images"
(cd "$REPO" && PYTHONPATH="$REPO" "$PYTHON" benchmarks/edge_aarch64.py prepare "$DATA")

say "5. kcv predict on x86 and on arm64"
(cd "$REPO" && PYTHONPATH="$REPO" "$PYTHON" benchmarks/edge_aarch64.py predict "$DATA" "$DATA/x86")
mkdir -p "$ROOTFS/opt/data"
mountpoint -q "$ROOTFS/opt/data" || mount --bind "$DATA" "$ROOTFS/opt/data"
chroot "$ROOTFS" /opt/kcv/bin/python /opt/kcv-src/benchmarks/edge_aarch64.py predict /opt/data /opt/data/arm64
(cd "$REPO" && PYTHONPATH="$REPO" "$PYTHON" benchmarks/edge_aarch64.py compare "$DATA" "$DATA/x86" "$DATA/arm64") \
    | tee "$WORK/results.md"
{
    echo
    echo "x86: $(uname -m), $("$PYTHON" -c 'import ai_edge_litert, importlib.metadata as m; print("ai-edge-litert", m.version("ai-edge-litert"))')"
    echo "arm64: qemu-aarch64 $(qemu-aarch64-static --version | head -1 | awk '{print $3}'), Debian $SUITE," \
         "$(chroot "$ROOTFS" /opt/kcv/bin/python -c 'import importlib.metadata as m; print("ai-edge-litert", m.version("ai-edge-litert"), "onnxruntime", m.version("onnxruntime"))')"
} | tee -a "$WORK/results.md"
