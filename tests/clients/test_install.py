"""`make install PREFIX=...` as a user of the client library sees it: the
installed agentosd serves, and a C program built with nothing but
`pkg-config --cflags --libs agentos-client` (from the installed .pc, whose
prefix follows where it was installed) calls it."""
import os
import shutil
import subprocess
import tempfile
import unittest

import harness

BUILD = os.environ.get("AO_BUILD_DIR", os.path.join(harness.ROOT, "build"))

PROGRAM = r"""
#include <agentos/client.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    ao_client_options_t o = {0};
    o.target = argv[1];
    o.timeout_ms = 10000;
    ao_client_t *c;
    ao_client_error_t err;
    if (ao_client_connect(&o, &c, &err)) {
        fprintf(stderr, "connect: %s\n", err.message);
        return 1;
    }
    Agentos__V1__GetAgentHealthRequest req = AGENTOS__V1__GET_AGENT_HEALTH_REQUEST__INIT;
    Agentos__V1__GetAgentHealthResponse *resp = NULL;
    int rc = ao_client_get_agent_health(c, &req, &resp, &err);
    if (rc) {
        fprintf(stderr, "GetAgentHealth: %s: %s\n", ao_client_status_name(rc), err.message);
        ao_client_close(c);
        return 1;
    }
    printf("agents %zu first %s\n", resp->n_agents, resp->n_agents ? resp->agents[0]->agent : "");
    ao_client_free(resp);
    req.agent = "nobody";
    rc = ao_client_get_agent_health(c, &req, &resp, &err);
    printf("unknown %s\n", ao_client_status_name(rc));
    ao_client_close(c);
    return 0;
}
"""


class InstallTest(unittest.TestCase):
    def test_installed_library_and_server(self):
        prefix = tempfile.mkdtemp(prefix="agentos-install-")
        self.addCleanup(shutil.rmtree, prefix, True)
        subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], check=True,
                       stdout=subprocess.DEVNULL)
        for tool in ("agentosd", "agentosctl", "ao-logdump"):
            self.assertTrue(os.access(os.path.join(prefix, "bin", tool), os.X_OK), tool)
        pcs = [os.path.join(d, f) for d, _, fs in os.walk(prefix) for f in fs if f == "agentos-client.pc"]
        self.assertEqual(len(pcs), 1, pcs)
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]))
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "agentos-client"], env=env,
                               check=True, capture_output=True, text=True).stdout.split()
        self.assertTrue(any(f.startswith("-I" + prefix) for f in flags), flags)
        self.assertTrue(any(f.startswith("-L" + prefix) for f in flags), flags)
        libdir = [f[2:] for f in flags if f.startswith("-L")][0]

        src = os.path.join(prefix, "prog.c")
        with open(src, "w") as f:
            f.write(PROGRAM)
        exe = os.path.join(prefix, "prog")
        cc = ["cc", "-std=c11", "-Wall", "-Werror", src, "-o", exe] + flags + ["-Wl,-rpath," + libdir]
        if os.environ.get("AO_SANITIZE") == "ON":
            cc.append("-fsanitize=address,undefined")
        subprocess.run(cc, check=True)

        server = harness.Server(agents=[harness.builtin("analyst")])
        self.addCleanup(server.cleanup)  # runs last: removes its directory
        old = os.environ.get("AGENTOSD")
        os.environ["AGENTOSD"] = os.path.join(prefix, "bin", "agentosd")
        try:
            server.start()
        finally:
            if old is None:
                del os.environ["AGENTOSD"]
            else:
                os.environ["AGENTOSD"] = old
        self.addCleanup(server.stop)
        out = subprocess.run([exe, server.target], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("agents 1 first analyst", out.stdout)
        self.assertIn("unknown NOT_FOUND", out.stdout)


if __name__ == "__main__":
    unittest.main()
