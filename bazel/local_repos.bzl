"""Local stand-ins for the repositories Bazel's built-in WORKSPACE suffix
would download, so that the build works with no network."""

def _rules_cc_impl(ctx):
    ctx.file("WORKSPACE", 'workspace(name = "rules_cc")\n')
    ctx.file("BUILD", "")
    ctx.file("cc/BUILD", "")
    rules = ["cc_binary", "cc_import", "cc_library", "cc_proto_library", "cc_shared_library",
             "cc_test", "cc_toolchain", "cc_toolchain_suite", "fdo_prefetch_hints", "fdo_profile",
             "objc_import", "objc_library"]
    ctx.file("cc/defs.bzl", "".join([
        "def %s(**kwargs):\n    native.%s(**kwargs)\n\n" % (r, r)
        for r in rules
    ]))

local_rules_cc = repository_rule(implementation = _rules_cc_impl, local = True)

def _rules_java_impl(ctx):
    ctx.file("WORKSPACE", 'workspace(name = "rules_java")\n')
    ctx.file("BUILD", "")
    ctx.file("java/BUILD", "")
    rules = ["java_binary", "java_import", "java_library", "java_lite_proto_library",
             "java_package_configuration", "java_plugin", "java_proto_library", "java_runtime",
             "java_test", "java_toolchain"]
    ctx.file("java/defs.bzl", "".join([
        "def %s(**kwargs):\n    native.%s(**kwargs)\n\n" % (r, r)
        for r in rules
    ]))

local_rules_java = repository_rule(implementation = _rules_java_impl, local = True)

def _coverage_impl(ctx):
    ctx.file("WORKSPACE", 'workspace(name = "remote_coverage_tools")\n')
    ctx.file("unavailable.sh", "#!/bin/sh\necho 'coverage is not available offline: use the CMake build' >&2\nexit 1\n", executable = True)
    ctx.file("BUILD", "\n".join([
        'sh_binary(name = "coverage_report_generator", srcs = ["unavailable.sh"], visibility = ["//visibility:public"])',
        'sh_binary(name = "lcov_merger", srcs = ["unavailable.sh"], visibility = ["//visibility:public"])',
        "",
    ]))

local_coverage_tools = repository_rule(implementation = _coverage_impl, local = True)
