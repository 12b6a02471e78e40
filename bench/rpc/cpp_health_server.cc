/*
 * bench_rpc_cpp_server: the C++ reference for bench/rpc. It serves
 * grpc.health.v1.Health/Check with gRPC C++'s callback API, from code that
 * protoc + grpc_cpp_plugin generate at build time from
 * idl/grpc/health/v1/health.proto, with the same answers as agentosd's
 * Check (SERVING for "", agentos.v1.Orchestrator and grpc.health.v1.Health;
 * NOT_FOUND otherwise). Watch is not implemented here (UNIMPLEMENTED): the
 * benchmark measures the unary path only.
 *
 * It is a baseline, not a product: plaintext, default ServerBuilder
 * settings (what a C++ team would start from), so agentosd is compared with
 * what gRPC C++ gives for free.
 *
 * usage: bench_rpc_cpp_server [--listen ADDR]   (default 127.0.0.1:0)
 * Prints "listening port=N" once it serves, runs until SIGINT or SIGTERM.
 */
#include "grpc/health/v1/health.grpc.pb.h"

#include <grpcpp/grpcpp.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

namespace
{

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

bool known_service(const std::string &name)
{
    return name.empty() || name == "agentos.v1.Orchestrator" || name == "grpc.health.v1.Health";
}

class HealthService final : public Health::CallbackService
{
    grpc::ServerUnaryReactor *Check(grpc::CallbackServerContext *ctx, const HealthCheckRequest *req,
                                    HealthCheckResponse *resp) override
    {
        grpc::ServerUnaryReactor *r = ctx->DefaultReactor();
        if (!known_service(req->service())) {
            r->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   "unknown service \"" + req->service().substr(0, 100) + "\""));
            return r;
        }
        resp->set_status(HealthCheckResponse::SERVING);
        r->Finish(grpc::Status::OK);
        return r;
    }
};

} // namespace

int main(int argc, char **argv)
{
    std::string listen = "127.0.0.1:0";
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--listen") && i + 1 < argc) {
            listen = argv[++i];
        } else {
            std::fprintf(stderr, "usage: %s [--listen ADDR]\n", argv[0]);
            return 2;
        }
    }
    /* Blocked before gRPC starts its threads (they inherit the mask), taken
     * with sigwait below: a clean Shutdown instead of dying mid-call. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    HealthService service;
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port <= 0) {
        std::fprintf(stderr, "bench_rpc_cpp_server: cannot listen on %s\n", listen.c_str());
        return 1;
    }
    std::printf("listening port=%d\n", port);
    std::fflush(stdout);

    int sig = 0;
    sigwait(&sigs, &sig);
    server->Shutdown();
    server->Wait();
    return 0;
}
