/* cudasim shim for <assert.h> (on the include path of the simulator build only, ahead of the system
 * headers). It includes the C library's assert.h and then, in C++, redefines assert so that a failed
 * assertion inside a simulated kernel becomes a fault with the kernel's file:line (the launch returns
 * an error) instead of abort() killing the whole `go test` binary. Outside a kernel it still calls the
 * C library's __assert_fail. Like the system header it has no include guard: it honours NDEBUG anew at
 * every inclusion, so a kernel's own `#include <cassert>` cannot bring back the aborting macro. */
#include_next <assert.h>

#if defined(__cplusplus)
#ifndef MDM_CUDASIM_ASSERT_DECL
#define MDM_CUDASIM_ASSERT_DECL
extern "C" [[noreturn]] void cudasim_assert_fail(const char* expr, const char* file, unsigned line, const char* func);
#endif
#undef assert
#if defined(NDEBUG)
#define assert(expr) (static_cast<void>(0))
#else
#define assert(expr) \
    (static_cast<bool>(expr) ? static_cast<void>(0) : ::cudasim_assert_fail(#expr, __FILE__, __LINE__, __extension__ __PRETTY_FUNCTION__))
#endif
#endif
