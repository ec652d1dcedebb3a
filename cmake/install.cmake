# What `cmake --install BUILD --prefix P` puts in P: the two libraries with their soname links, the public
# headers, the CLIs, a CMake package (Dala::dala, Dala::desk) and pkg-config files. The same pkg-config
# templates also describe the build tree (build/lib/pkgconfig), which the Swift package and the JNI glue use.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# Installed programs and the desk library find libdala beside them, wherever P is.
set_target_properties(dala_cli dala_server PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
set_target_properties(dala_desk PROPERTIES INSTALL_RPATH "$ORIGIN" EXPORT_NAME desk)  # Dala::desk

install(TARGETS dala dala_desk EXPORT DalaTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT Development
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS dala_cli dala_server RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/core/include/dala/dala.h ${PROJECT_SOURCE_DIR}/core/include/dala/dala.hh
              ${PROJECT_SOURCE_DIR}/tools/desk/include/dala/desk.h ${PROJECT_SOURCE_DIR}/tools/desk/include/dala/desk.hh
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/dala)

set(DALA_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Dala)
install(EXPORT DalaTargets NAMESPACE Dala:: DESTINATION ${DALA_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/DalaConfig.cmake.in
  ${CMAKE_BINARY_DIR}/cmake/DalaConfig.cmake INSTALL_DESTINATION ${DALA_CMAKE_DIR})
# Within 0.x every minor version may change the ABI (docs/c-api.md): only the same major.minor is compatible.
write_basic_package_version_file(${CMAKE_BINARY_DIR}/cmake/DalaConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/cmake/DalaConfig.cmake ${CMAKE_BINARY_DIR}/cmake/DalaConfigVersion.cmake
        DESTINATION ${DALA_CMAKE_DIR})

# pkg-config, installed: the prefix is computed from where the file is (${pcfiledir}), so it is right for
# any --prefix given at install time.
set(PC_NOTE "installed by cmake --install")
set(PC_PREFIX "\${pcfiledir}/../..")
set(PC_LIBDIR "\${prefix}/${CMAKE_INSTALL_LIBDIR}")
set(PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
set(PC_DESK_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
if(CMAKE_INSTALL_LIBDIR MATCHES "/")  # lib/x86_64-linux-gnu: one level deeper
  set(PC_PREFIX "\${pcfiledir}/../../..")
endif()
configure_file(${CMAKE_CURRENT_LIST_DIR}/dala.pc.in ${CMAKE_BINARY_DIR}/pkgconfig-install/dala.pc @ONLY)
configure_file(${CMAKE_CURRENT_LIST_DIR}/dala_desk.pc.in ${CMAKE_BINARY_DIR}/pkgconfig-install/dala_desk.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/pkgconfig-install/dala.pc ${CMAKE_BINARY_DIR}/pkgconfig-install/dala_desk.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# pkg-config, build tree: the same templates, pointing at build/lib and the source headers.
set(PC_NOTE "the build tree (not installed)")
set(PC_PREFIX ${CMAKE_BINARY_DIR})
set(PC_LIBDIR ${CMAKE_BINARY_DIR}/lib)
set(PC_INCLUDEDIR ${PROJECT_SOURCE_DIR}/core/include)
set(PC_DESK_INCLUDEDIR ${PROJECT_SOURCE_DIR}/tools/desk/include)
configure_file(${CMAKE_CURRENT_LIST_DIR}/dala.pc.in ${CMAKE_BINARY_DIR}/lib/pkgconfig/dala.pc @ONLY)
configure_file(${CMAKE_CURRENT_LIST_DIR}/dala_desk.pc.in ${CMAKE_BINARY_DIR}/lib/pkgconfig/dala_desk.pc @ONLY)

# dala-server under systemd: the unit (ExecStart pointing at the installed binary) and an example config.
set(DALA_SERVER_BIN ${CMAKE_INSTALL_FULL_BINDIR}/dala-server)
configure_file(${PROJECT_SOURCE_DIR}/sync/server/systemd/dala-server.service.in
               ${CMAKE_BINARY_DIR}/systemd/dala-server.service @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/systemd/dala-server.service DESTINATION lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/sync/server/systemd/dala-server.toml DESTINATION ${CMAKE_INSTALL_DATADIR}/dala)
