# kvserve image: build stage with the toolchain, runtime stage with shared libraries only.
#   podman build -t kvserve .   (or docker build)
#   podman run -p 50051:50051 kvserve                     # embedded default model
#   podman run -v /models/llama:/models/llama:ro kvserve --model=/models/llama
FROM debian:bookworm-slim AS build
COPY scripts/install-deps.sh /src/scripts/install-deps.sh
RUN /src/scripts/install-deps.sh build
COPY . /src
RUN cmake -S /src -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKVSERVE_BUILD_TESTS=OFF \
 && cmake --build /build --target kvserve kvserve-cli

FROM debian:bookworm-slim
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh
COPY --from=build /build/server/kvserve /build/tools/cli/kvserve-cli /usr/local/bin/
USER 10001:10001
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=6s CMD ["/bin/sh", "-c", "kvserve-cli health || exit 1"]
ENTRYPOINT ["/usr/local/bin/kvserve", "--listen=0.0.0.0:50051"]
