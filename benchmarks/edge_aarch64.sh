#!/usr/bin/env bash
# Proof on aarch64: the same kcv .tflite and .onnx files, run by `kcv predict` on x86 and on an
# emulated arm64 Debian with the TensorFlow-free runtime from pip, compared.
#
#   sudo PYTHON=$(command -v python) benchmarks/edge_aarch64.sh   # the repository root, kcv's venv active
#
# Steps (each skipped when its output exists, so a rerun resumes):
#   1. host tools: debootstrap, qemu-user-static, binfmt-support (apt); binfmt_misc
#      mounted and qemu-aarch64 registered with the F flag (the interpreter is opened
#      at registration, so it works inside the chroot);
#   2. an arm64 Debian userland under $WORK/rootfs (debootstrap --arch=arm64, minbase);
#   3. inside it, a venv with the TensorFlow-free runtime (numpy, Pillow, click,
#      ai-edge-litert, onnxruntime: aarch64 wheels of the versions x86 runs, downloaded by
#      the host's pip) and kcv installed --no-deps;
#   4. on x86 (the kcv venv, with TensorFlow): a classification and a segmentation run,
#      their fp32 and int8 TFLite and ONNX files, validation images (... prepare);
#   5. `kcv predict` on both machines, one thread each (... predict; the emulated half at
#      nice 10), then the table (... compare) into $WORK/results.md. Latency under
#      emulation measures qemu, so none is reported.
#
# Environment: WORK (default /tmp/kcv-aarch64), SUITE (bookworm), MIRROR
# (http://deb.debian.org/debian), PYTHON (the x86 python with kcv; default: python),
# QEMU_CPUS (default "cortex-a76 cortex-a72"; a CPU whose pass finished is not rerun).
# Needs root (debootstrap, chroot, binfmt_misc) and network access to the mirror and PyPI.
# Not run in CI.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-/tmp/kcv-aarch64}
ROOTFS=$WORK/rootfs
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-python}
# The CPUs qemu emulates (QEMU_CPU), one arm64 pass each: XNNPACK picks its kernels by the
# features the CPU reports. cortex-a76 = Raspberry Pi 5 (NEON, dot product, fp16),
# cortex-a72 = Raspberry Pi 4 (NEON only). qemu's default, max (SVE2, SME2, i8mm: recent
# phone cores), is opt-in: what LiteRT runs on it is so slow to emulate that the fp32
# ResNet-18 had not done 100 images at 32 px in 11 min (cortex-a76: all 8 files in 9.5 min).
QEMU_CPUS=${QEMU_CPUS:-cortex-a76 cortex-a72}
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

say "3. the TensorFlow-free runtime, inside arm64"
if [ ! -x "$ROOTFS/opt/kcv/bin/python" ]; then
    chroot "$ROOTFS" python3 -m venv /opt/kcv
fi
# The versions the x86 side runs, so a difference is the architecture's, not a release's
# (left to pip, an aarch64 download can resolve to another release: ai-edge-litert 1.4.0
# against 2.3.0 on x86, when the platform tags missed 2.3.0's manylinux_2_27).
PINS=$("$PYTHON" -c 'import importlib.metadata as m
def pin(p):
    try:
        return f"{p}=={m.version(p)}"
    except m.PackageNotFoundError:
        return p
print(" ".join(pin(p) for p in ("numpy", "pillow", "click", "ai-edge-litert", "onnxruntime")), "setuptools>=68")')
PYV=$(chroot "$ROOTFS" python3 -c 'import sys; print("%d%d" % sys.version_info[:2])')
# aarch64 wheels are fetched by the host's pip (its index, proxy and certificates: the chroot
# may not trust this network's); pip under qemu then installs offline. Platform tags up to
# glibc 2.28 (Debian 12 has 2.36; ai-edge-litert 2.x is tagged manylinux_2_27).
mkdir -p "$ROOTFS/opt/kcv-wheels"
# shellcheck disable=SC2086
"$PYTHON" -m pip download -q --only-binary=:all: --python-version "$PYV" --implementation cp --abi "cp$PYV" \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64 \
    -d "$ROOTFS/opt/kcv-wheels" $PINS
# A clean environment: the host's PIP_* settings (find-links, constraints) mean nothing inside.
CHROOT_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
PIP=("${CHROOT_ENV[@]}" /opt/kcv/bin/pip install -q --no-index --find-links /opt/kcv-wheels)
# shellcheck disable=SC2086
chroot "$ROOTFS" "${PIP[@]}" $PINS
rm -rf "$ROOTFS/opt/kcv-src" && mkdir -p "$ROOTFS/opt/kcv-src"
cp -r "$REPO/kcv" "$REPO/kcv_entry" "$REPO/benchmarks" "$REPO/pyproject.toml" "$REPO/README.md" "$ROOTFS/opt/kcv-src/"
chroot "$ROOTFS" "${PIP[@]}" --no-deps /opt/kcv-src
chroot "$ROOTFS" "${CHROOT_ENV[@]}" /opt/kcv/bin/python -c "import sys, kcv; assert 'tensorflow' not in sys.modules; print('kcv', kcv.__version__, 'on', __import__('platform').machine())"

say "4. x86: runs, exports, validation images"
(cd "$REPO" && PYTHONPATH="$REPO" "$PYTHON" benchmarks/edge_aarch64.py prepare "$DATA")

say "5. kcv predict on x86 and on arm64 (one thread each; the emulated half at nice 10)"
(cd "$REPO" && PYTHONPATH="$REPO" "$PYTHON" benchmarks/edge_aarch64.py predict "$DATA" "$DATA/x86")
mkdir -p "$ROOTFS/opt/data"
mountpoint -q "$ROOTFS/opt/data" || mount --bind "$DATA" "$ROOTFS/opt/data"
ARMS=()
for cpu in $QEMU_CPUS; do
    say "   emulated CPU: $cpu"
    if [ ! -e "$DATA/arm64-$cpu/.done" ]; then
        nice -n 10 chroot "$ROOTFS" "${CHROOT_ENV[@]}" QEMU_CPU="$cpu" /opt/kcv/bin/python \
            /opt/kcv-src/benchmarks/edge_aarch64.py predict /opt/data "/opt/data/arm64-$cpu"
        touch "$DATA/arm64-$cpu/.done"
    fi
    ARMS+=("$DATA/arm64-$cpu")
done
(cd "$REPO" && PYTHONPATH="$REPO" "$PYTHON" benchmarks/edge_aarch64.py compare "$DATA" "$DATA/x86" "${ARMS[@]}") \
    | tee "$WORK/results.md"
versions='import importlib.metadata as m, platform, sys
print(platform.machine(), f"Python {platform.python_version()}", *(f"{p} {m.version(p)}" for p in ("ai-edge-litert", "onnxruntime", "numpy")), sep=", ")'
{
    echo
    echo "x86: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $("$PYTHON" -c "$versions")"
    echo "arm64: $(qemu-aarch64-static --version | head -1) on that host, Debian $SUITE ($(cat "$ROOTFS/etc/debian_version"))," \
         "$(chroot "$ROOTFS" "${CHROOT_ENV[@]}" /opt/kcv/bin/python -c "$versions")"
} | tee -a "$WORK/results.md"
