#!/bin/sh
# gpu-prefix.sh — unpacks the .debs of .gpu-bundle (scripts/gpu-bundle.sh) into a private prefix that the
# build is pointed at: cmake -DMAGNA_DEPS_PREFIX=PREFIX (README, "GPU"). Run by gpu-check.sh on the GPU
# machine, and by test_gpu_bundle here.
#
#   scripts/gpu-prefix.sh [--debs DIR] [--prefix DIR]    (defaults .gpu-bundle/debs, .gpu-bundle/prefix)
#
# dpkg -x of every .deb (ar + tar where there is no dpkg), then what dpkg -x leaves that an installed
# system would not: /lib moved under /usr (merged /usr), links to absolute paths (libz.so ->
# /lib/x86_64-linux-gnu/libz.so.1.2.13) made relative inside the prefix, pkg-config files' /usr made the
# prefix's, documentation dropped. Last, every library is loaded once with ldd against this machine's
# libc, libstdc++ and libgomp: a version the machine lacks (GLIBC_2.34 on an older glibc, say) fails
# here, with its name, rather than in the build.
# Idempotent: a prefix made from the same .debs (its stamp, .magna-prefix, lists them) is left as it is;
# any other is made again from nothing. A folder that is neither empty nor such a prefix is refused.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEBS=$ROOT/.gpu-bundle/debs
PREFIX=$ROOT/.gpu-bundle/prefix
while [ $# -gt 0 ]; do
    case "$1" in
    --debs) DEBS=$(realpath -m "$2"); shift 2 ;;
    --prefix) PREFIX=$(realpath -m "$2"); shift 2 ;;
    *) echo "usage: scripts/gpu-prefix.sh [--debs DIR] [--prefix DIR]" >&2; exit 2 ;;
    esac
done
fail() { echo "gpu-prefix: $*" >&2; exit 1; }
ls "$DEBS"/*.deb >/dev/null 2>&1 || fail "no .deb files in $DEBS: run make gpu-bundle on a Debian machine"

# the stamp: this script's format and every .deb's SHA-256
FORMAT=1
stamp=$(printf 'format %s\n' "$FORMAT"; cd "$DEBS" && sha256sum ./*.deb)
STAMP=$PREFIX/.magna-prefix
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$stamp" ]; then
    echo "gpu-prefix: $PREFIX is up to date ($(ls "$DEBS"/*.deb | wc -l) packages)"
    exit 0
fi
if [ -d "$PREFIX" ] && [ -n "$(ls -A "$PREFIX")" ]; then
    [ -f "$STAMP" ] || fail "$PREFIX is not empty and is not a prefix this script made: not touching it"
    rm -rf "$PREFIX"
fi
mkdir -p "$PREFIX"

# unpack DEB: dpkg -x, or the same by hand (a .deb is an ar archive holding data.tar.{xz,zst,gz})
unpack() {
    if command -v dpkg-deb >/dev/null; then
        dpkg-deb -x "$1" "$PREFIX"
        return
    fi
    member=$(ar t "$1" | grep '^data\.tar') || fail "$1: no data.tar member"
    case "$member" in
    *.xz) ar p "$1" "$member" | xz -dc | tar -x -C "$PREFIX" ;;
    *.zst) ar p "$1" "$member" | zstd -dc | tar -x -C "$PREFIX" ;;
    *.gz) ar p "$1" "$member" | gzip -dc | tar -x -C "$PREFIX" ;;
    *) fail "$1: cannot unpack $member" ;;
    esac
}
for deb in "$DEBS"/*.deb; do
    unpack "$deb" || fail "cannot unpack $deb"
done

# merged /usr: Debian 12's zlib1g still ships /lib/x86_64-linux-gnu/libz.so.1
for d in lib lib64 bin sbin; do
    if [ -d "$PREFIX/$d" ] && [ ! -L "$PREFIX/$d" ]; then
        mkdir -p "$PREFIX/usr/$d"
        cp -a "$PREFIX/$d/." "$PREFIX/usr/$d/"
        rm -rf "${PREFIX:?}/$d"
    fi
done
rm -rf "$PREFIX/usr/share/doc" "$PREFIX/usr/share/man" "$PREFIX/usr/share/lintian" "$PREFIX/usr/share/doc-base"

# links to absolute paths point into the prefix instead, relatively (the prefix may move)
find "$PREFIX" -type l | while read -r link; do
    target=$(readlink "$link")
    case "$target" in /*) ;; *) continue ;; esac
    case "$target" in /lib/* | /lib64/* | /bin/* | /sbin/*) target=/usr$target ;; esac
    [ -e "$PREFIX$target" ] || fail "$link -> $(readlink "$link"): the prefix has no $target"
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$PREFIX$target")" "$link"
done
dangling=$(find "$PREFIX" -xtype l)
[ -z "$dangling" ] || fail "links that lead nowhere: $dangling"

# pkg-config: prefix=/usr (and any other variable set to a /usr path) becomes the prefix's
for pc in "$PREFIX"/usr/lib/*/pkgconfig/*.pc "$PREFIX"/usr/lib/pkgconfig/*.pc "$PREFIX"/usr/share/pkgconfig/*.pc; do
    [ -f "$pc" ] || continue
    sed -i "s#^\([A-Za-z_][A-Za-z0-9_]*\)=/usr\(/\|\$\)#\1=$PREFIX/usr\2#" "$pc"
done

# Does every library load here? ldd names a missing library or symbol version ("version `GLIBC_2.34' not
# found"); the prefix's own folders come first, as the programs' RPATH puts them.
libdirs=$(find "$PREFIX/usr/lib" -name '*.so*' -type f -exec dirname {} \; | sort -u | tr '\n' ':')
find "$PREFIX/usr/lib" -name '*.so.*' -type f | while read -r so; do
    out=$(LD_LIBRARY_PATH=$libdirs ldd "$so" 2>&1) && ! echo "$out" | grep -q 'not found' && continue
    echo "$so: $(echo "$out" | grep 'not found' || echo "$out")"
done >"$PREFIX/.ldd-problems"
problems=$(cat "$PREFIX/.ldd-problems")
rm -f "$PREFIX/.ldd-problems"
[ -z "$problems" ] || fail "the unpacked libraries do not load on this machine:
$problems"
need=""
if command -v objdump >/dev/null; then
    need=$(find "$PREFIX/usr/lib" -name '*.so.*' -type f -exec objdump -T {} \; 2>/dev/null |
        grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
fi
have=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/^glibc //')

glibc=""
[ -n "$need" ] && glibc=" (they need glibc >= $need, this machine has ${have:-?})"

echo "$stamp" >"$STAMP"
echo "gpu-prefix: $(ls "$DEBS"/*.deb | wc -l) packages unpacked into $PREFIX ($(du -sm "$PREFIX" | cut -f1) MB);" \
    "every library loads here$glibc"
