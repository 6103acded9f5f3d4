# What `cmake --install` adds for users of the libraries beyond the
# libraries and headers themselves: a pkg-config file per library and a
# CMake package with imported targets (cmake/scree-config.cmake.in). Both are
# relocatable: they find the prefix from where they lie.
include(CMakePackageConfigHelpers)

# pkg-config: scree.pc, screeclient.pc, screekernels.pc.
file(RELATIVE_PATH SCREE_PC_TO_PREFIX "${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig"
     "${CMAKE_INSTALL_PREFIX}")
foreach(_pc IN ITEMS scree screeclient screekernels)
  configure_file(${CMAKE_CURRENT_LIST_DIR}/${_pc}.pc.in ${PROJECT_BINARY_DIR}/pkgconfig/${_pc}.pc
                 @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/${_pc}.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()

# CMake: find_package(scree). The three libraries join the export set
# scree-targets where they are installed (core/, client/c/, kernels/).
set(SCREE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/scree)
install(EXPORT scree-targets NAMESPACE scree:: FILE scree-targets.cmake
        DESTINATION ${SCREE_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/scree-config.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/scree-config.cmake
  INSTALL_DESTINATION ${SCREE_CMAKE_DIR})
# 0.x: a minor release may break the API (CHANGELOG.md), so only the same
# major.minor satisfies a request.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cmake/scree-config-version.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/scree-config.cmake
              ${PROJECT_BINARY_DIR}/cmake/scree-config-version.cmake
        DESTINATION ${SCREE_CMAKE_DIR})
