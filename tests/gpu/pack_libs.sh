# shellcheck shell=bash
# Which shared libraries a packed dtrain build carries and which it expects
# from the GPU machine's image; sourced by pack.sh, check_pack.sh and
# run_device.sh so the three agree on one rule.
#
# From the image: the C and C++ runtimes (glibc, libstdc++, libgcc_s; the
# image's gcc 13 runtime is newer than the GCC 12 one the build uses), the
# compression libraries every Ubuntu base image has, and the CUDA libraries
# (the image's toolkit, NCCL and PyTorch wheels carry them). Everything else
# is packed: a library packed needlessly costs a few hundred KiB, one missing
# costs a GPU session.

# pack_libs_is_cuda SONAME: true for a library of the CUDA toolkit or NCCL.
pack_libs_is_cuda() {
  case $1 in
    libcuda.so.* | libcudart.so.* | libcublas.so.* | libcublasLt.so.* | libnccl.so.* | libnvrtc*.so.* | \
      libnvJitLink.so.* | libcufft.so.* | libcurand.so.* | libcusparse.so.* | libcusolver.so.*)
      return 0
      ;;
  esac
  return 1
}

# pack_libs_from_image SONAME: true when the GPU machine's image provides it.
pack_libs_from_image() {
  pack_libs_is_cuda "$1" && return 0
  case $1 in
    ld-linux*.so.* | libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | librt.so.1 | libresolv.so.2 | \
      libutil.so.1 | libstdc++.so.6 | libgcc_s.so.1 | libz.so.1 | libzstd.so.1 | liblzma.so.5 | libbz2.so.1.0)
      return 0
      ;;
  esac
  return 1
}

# pack_libs_resolved ELF: "SONAME PATH" for every library ELF loads (the whole
# closure, as the dynamic loader resolves it now; PATH is "not found" when it
# cannot), one per line. The loader itself and the vDSO are left out.
pack_libs_resolved() {
  ldd "$1" 2>/dev/null | awk '$2 == "=>" { if ($3 == "not") print $1, "not found"; else print $1, $3 }'
}

# pack_libs_image_dirs PACK_DIR: the folders, colon-separated, that hold the
# libraries PACK_DIR/MANIFEST expects from the image ("from_image" lines),
# found with ldconfig, else by a bounded search of the usual places (the
# toolkit, the system library folder, Python's nvidia-* wheels). Prints the
# sonames it could not find on stderr.
pack_libs_image_dirs() {
  local manifest=$1/MANIFEST soname path dirs=""
  while read -r soname; do
    path=$(ldconfig -p 2>/dev/null | awk -v l="$soname" '$1 == l { print $NF; exit }')
    if [[ -z $path ]]; then
      path=$(timeout 30 find /usr/local /usr/lib /usr/lib64 /opt -xdev -name "$soname" \( -type f -o -type l \) \
        -print -quit 2>/dev/null || true)
    fi
    if [[ -z $path ]]; then
      echo "pack_libs: $soname not found on this machine" >&2
      continue
    fi
    case ":$dirs:" in
      *":$(dirname "$path"):"*) ;;
      *) dirs=${dirs:+$dirs:}$(dirname "$path") ;;
    esac
  done < <(awk '$1 == "from_image" { print $2 }' "$manifest")
  echo "$dirs"
}
