# kvserve container image: a build stage with the toolchain, a runtime stage with the binaries and
# their shared libraries only. Both stages install packages with scripts/install-deps.sh, the script
# the README's set-up commands use, so the image and a developer machine link the same libraries.
#
#   podman build -t kvserve .                                   (or docker build)
#   podman run --rm -p 50051:50051 -p 9464:9464 kvserve          the default model (models/default)
#   podman run --rm -p 50051:50051 -v /srv/models/llama:/models/llama:ro kvserve --model=/models/llama
#
# Arguments after the image name are kvserve flags (`kvserve --help`); a later --listen replaces the
# one in ENTRYPOINT. docs/deployment.md covers the image, Kubernetes and `scripts/image-test.sh`.

# Pin by digest for releases: --build-arg BASE_IMAGE=debian:bookworm-slim@sha256:...
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# Parallel compile jobs; empty = one per core.
ARG BUILD_JOBS=
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh build
COPY . /src
# x86-64-v3 (AVX2/FMA) rather than the build machine's own ISA: the image runs on other nodes.
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVSERVE_BUILD_TESTS=OFF \
    -DKVSERVE_NATIVE=OFF -DKVSERVE_ARCH=x86-64-v3 \
 && cmake --build /build ${BUILD_JOBS:+-j ${BUILD_JOBS}} --target kvserve kvserve-cli
# The default model (models/default, a directory or a symlink to one of models/), resolved, where
# kvserve's no---model lookup finds it: <binary dir>/../share/kvserve/models/default. A tree
# without one ships none, and kvserve then serves the embedded random-weight model.
RUN mkdir /default-model \
 && if [ -e /src/models/default/config.json ]; then cp -rL /src/models/default /default-model/default; fi

FROM ${BASE_IMAGE}
COPY scripts/install-deps.sh /tmp/install-deps.sh
# The runtime group lists exactly the packages whose libraries the binaries link directly;
# scripts/image-test.sh checks that against ldd inside this image.
RUN /tmp/install-deps.sh runtime \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
 && useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin kvserve \
 && mkdir /models
COPY --from=build /build/server/kvserve /build/tools/cli/kvserve-cli /usr/local/bin/
COPY --from=build /default-model /usr/local/share/kvserve/models

LABEL org.opencontainers.image.title="kvserve" \
      org.opencontainers.image.description="LLM-serving gRPC microservice (kvserve.v1.KvServe, grpc.health.v1, Prometheus /metrics)"

# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
# oneDNN's idle OpenMP workers (used only with --nobatch-invariant) sleep rather than spin: pods
# share nodes, and spinning workers stall the engine under contention. kvserve's own matmul
# workers bound their spinning whatever this says.
ENV OMP_WAIT_POLICY=PASSIVE
USER 10001:10001
# Model directories are mounted under /models (read-only is enough). Not a VOLUME: the default
# model is in the image, and a VOLUME would leave an anonymous volume behind every run.
WORKDIR /models
# 50051: gRPC (kvserve.v1.KvServe, grpc.health.v1, reflection); 8000: the OpenAI-compatible HTTP
# API; 9464: Prometheus /metrics.
EXPOSE 50051 8000 9464
# Docker and podman only (Kubernetes uses its own grpc probes). kvserve-cli exits 1 or 2 when not
# SERVING; HEALTHCHECK wants 1 for unhealthy, so map both. Its own deadline is 5 s.
HEALTHCHECK --interval=10s --timeout=6s --start-period=60s --retries=3 \
  CMD ["/bin/sh", "-c", "/usr/local/bin/kvserve-cli --target=127.0.0.1:50051 health >/dev/null || exit 1"]
# kvserve is PID 1: it waits for SIGTERM/SIGINT itself (sigwait) and drains before exiting 0, so
# no init process is needed. See --shutdown-timeout.
ENTRYPOINT ["/usr/local/bin/kvserve", "--listen=0.0.0.0:50051", "--http-address=0.0.0.0:8000"]
