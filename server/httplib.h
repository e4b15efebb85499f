// The one way server/ includes cpp-httplib.
//
// Debian's libcpp-httplib-dev is not header-only: /usr/include/httplib.h declares, and
// libcpp-httplib.so implements, a build with OpenSSL, zlib and Brotli support. Those macros change
// the layout of httplib's classes (SSLServer exists only with CPPHTTPLIB_OPENSSL_SUPPORT), so a
// translation unit that saw a different set would disagree with the library about every object it
// shares with it. They are defined in one place, the library's own pkg-config file (cpp-httplib.pc,
// linked as PkgConfig::HTTPLIB in server/CMakeLists.txt); this header refuses to compile without
// them rather than guess.
#ifndef KVSERVE_SERVER_HTTPLIB_H_
#define KVSERVE_SERVER_HTTPLIB_H_

#if !defined(CPPHTTPLIB_OPENSSL_SUPPORT) || !defined(CPPHTTPLIB_ZLIB_SUPPORT) || \
    !defined(CPPHTTPLIB_BROTLI_SUPPORT)
#error "link PkgConfig::HTTPLIB: libcpp-httplib.so is built with OpenSSL, zlib and Brotli"
#endif

#include <httplib.h>  // IWYU pragma: export

#endif  // KVSERVE_SERVER_HTTPLIB_H_
