"""Macros of the agentos Bazel build."""

load("@rules_cc//cc:defs.bzl", "cc_library", "cc_test")

# The same warnings as CMake's build (-Werror in CI).
COPTS = ["-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter"]

def c_proto_library(name, srcs, root = "", deps = [], visibility = None):
    """C from .proto files with Debian's protoc-c, as a cc_library.

    srcs are paths relative to this package; `root` (a directory of the
    package, "" for the package itself) is the import root: a file at
    ROOT/agentos/v1/workflow.proto is `import "agentos/v1/workflow.proto"`
    and its header is included as "agentos/v1/workflow.pb-c.h".
    """
    base = [s[:-len(".proto")] for s in srcs]
    c_files = [b + ".pb-c.c" for b in base]
    h_files = [b + ".pb-c.h" for b in base]
    pkg = native.package_name()
    top = pkg + ("/" + root if root else "")
    native.genrule(
        name = name + "_gen",
        srcs = srcs,
        outs = c_files + h_files,
        cmd = "protoc-c -I%s --c_out=$(GENDIR)/%s %s" % (
            top,
            top,
            " ".join(["%s/%s" % (pkg, s) for s in srcs]),
        ),
        message = "protoc-c " + name,
    )
    cc_library(
        name = name,
        srcs = c_files,
        hdrs = h_files,
        includes = [root if root else "."],
        copts = ["-w"],
        deps = deps + ["@system//:protobuf_c"],
        visibility = visibility,
    )

def ao_unit_tests(deps_of):
    """One cc_test per tests/unit/test_*.c; deps_of maps a test's name to
    its dependencies (tests not listed there are a build error)."""
    for src in native.glob(["test_*.c"]):
        name = src[:-len(".c")]
        if name not in deps_of:
            fail("tests/unit/BUILD: add %s to DEPS" % name)
        cc_test(
            name = name,
            srcs = [src],
            copts = COPTS,
            deps = deps_of[name] + ["@system//:cmocka"],
            size = "small",
        )
