# Debian package: `cmake -S . -B build-deb -DCMAKE_INSTALL_PREFIX=/usr &&
# cmake --build build-deb --target package`. Included last by the root CMakeLists.txt.
set(WALBUST_PACKAGING_DIR ${CMAKE_CURRENT_LIST_DIR})

# Absolute destinations: the unit and /etc belong where Debian puts them, whatever the prefix.
install(FILES ${WALBUST_PACKAGING_DIR}/walbust.service DESTINATION /lib/systemd/system)
install(FILES ${WALBUST_PACKAGING_DIR}/walbust.yaml DESTINATION /etc/walbust)
install(FILES ${WALBUST_PACKAGING_DIR}/rules.d/example.yaml DESTINATION /etc/walbust/rules.d)
install(FILES ${WALBUST_PACKAGING_DIR}/alerts.yml ${WALBUST_PACKAGING_DIR}/grafana-dashboard.json
        DESTINATION share/walbust)
install(FILES ${WALBUST_PACKAGING_DIR}/README.Debian DESTINATION share/doc/walbust)
foreach(doc README.md LICENSE COPYING)
  if(EXISTS ${PROJECT_SOURCE_DIR}/${doc})
    install(FILES ${PROJECT_SOURCE_DIR}/${doc} DESTINATION share/doc/walbust)
  endif()
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME walbust)
set(CPACK_PACKAGE_VENDOR "walbust")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "walbust maintainers <walbust@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Redis cache invalidation from PostgreSQL logical replication")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES TRUE)

set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "walbust maintainers <walbust@localhost>")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The extended description; CPack puts the summary above it as the synopsis line.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "walbust tails a PostgreSQL logical replication slot (pgoutput), matches every
committed row change against YAML rules and deletes the Redis keys they name,
acknowledging a transaction only once Redis confirmed its deletes. Ships a
hardened systemd unit, Prometheus metrics and alerts, and a Grafana dashboard.")
# Library dependencies come from dpkg-shlibdeps on the built binary.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql (>= 15), redis-server, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${WALBUST_PACKAGING_DIR}/debian/conffiles;${WALBUST_PACKAGING_DIR}/debian/postinst;${WALBUST_PACKAGING_DIR}/debian/prerm;${WALBUST_PACKAGING_DIR}/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

include(CPack)
