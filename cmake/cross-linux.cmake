# Cross-compiling libdala and its tests for another Linux architecture (tools/dev cross ARCH): clang and lld
# against a sysroot unpacked from Debian's packages for that architecture; ctest runs the programs built
# through qemu-user (CMAKE_CROSSCOMPILING_EMULATOR), no binfmt needed.
#   cmake -DCMAKE_TOOLCHAIN_FILE=cmake/cross-linux.cmake -DDALA_CROSS_TRIPLE=aarch64-linux-gnu \
#         -DDALA_SYSROOT=DIR -DDALA_PHONE_ONLY=ON ...
# DALA_CROSS_TRIPLE is Debian's multiarch name: aarch64-linux-gnu (arm64), arm-linux-gnueabihf (armhf) or
# s390x-linux-gnu (big-endian, for byte order).
set(CMAKE_TRY_COMPILE_PLATFORM_VARIABLES DALA_CROSS_TRIPLE DALA_SYSROOT)
if(NOT DALA_CROSS_TRIPLE OR NOT DALA_SYSROOT)
  message(FATAL_ERROR "cross-linux.cmake needs -DDALA_CROSS_TRIPLE=... and -DDALA_SYSROOT=...")
endif()

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSROOT ${DALA_SYSROOT})
set(CMAKE_C_COMPILER clang-14)
set(CMAKE_CXX_COMPILER clang++-14)
if(DALA_CROSS_TRIPLE STREQUAL "aarch64-linux-gnu")
  set(CMAKE_SYSTEM_PROCESSOR aarch64)
  set(_target aarch64-linux-gnu)
  set(_qemu qemu-aarch64)
elseif(DALA_CROSS_TRIPLE STREQUAL "arm-linux-gnueabihf")
  # Debian's armhf: ARMv7-A, Thumb-2, VFPv3-D16, hard-float calls.
  set(CMAKE_SYSTEM_PROCESSOR armv7l)
  set(_target armv7a-linux-gnueabihf)
  set(_qemu qemu-arm)
  set(CMAKE_C_FLAGS_INIT "-mthumb -mfpu=vfpv3-d16 -mfloat-abi=hard")
  set(CMAKE_CXX_FLAGS_INIT "-mthumb -mfpu=vfpv3-d16 -mfloat-abi=hard")
elseif(DALA_CROSS_TRIPLE STREQUAL "s390x-linux-gnu")
  # No phone is big-endian: s390x (tools/dev cross s390x, by hand) is here to check byte order. lld 14 cannot
  # link it: GNU ld from binutils-s390x-linux-gnu.
  set(CMAKE_SYSTEM_PROCESSOR s390x)
  set(_target s390x-linux-gnu)
  set(_qemu qemu-s390x)
  set(_linker bfd)
else()
  message(FATAL_ERROR "DALA_CROSS_TRIPLE ${DALA_CROSS_TRIPLE}: aarch64-linux-gnu, arm-linux-gnueabihf or s390x-linux-gnu")
endif()
set(CMAKE_C_COMPILER_TARGET ${_target})
set(CMAKE_CXX_COMPILER_TARGET ${_target})
find_program(CMAKE_STRIP NAMES llvm-strip-14 llvm-strip REQUIRED)  # binutils' strip knows only this machine
if(NOT _linker)
  set(_linker lld)
endif()
foreach(kind EXE SHARED MODULE)
  set(CMAKE_${kind}_LINKER_FLAGS_INIT "-fuse-ld=${_linker}")
endforeach()

# Libraries, headers and packages from the sysroot only; programs (protoc) from the build machine.
set(CMAKE_FIND_ROOT_PATH ${DALA_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_SYSROOT_DIR} ${DALA_SYSROOT})
set(ENV{PKG_CONFIG_LIBDIR} "${DALA_SYSROOT}/usr/lib/${DALA_CROSS_TRIPLE}/pkgconfig:${DALA_SYSROOT}/usr/share/pkgconfig")

set(CMAKE_CROSSCOMPILING_EMULATOR ${_qemu} -L ${DALA_SYSROOT})
