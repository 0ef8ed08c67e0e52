# Eddy server image. Build: docker build -t eddy .
# Run: docker run -p 8080:8080 -e EDDY_TENANTS="acme:<sha256 of token>" -v eddy-data:/var/lib/eddy eddy
# (A server on a non-loopback address needs tenants; `eddy token hash <token>` prints the hash.)
# The server runs as uid/gid 10001 (not root); a bind-mounted data folder must be writable by that uid.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# RocksDB's bindings are generated with libclang; librdkafka builds with cmake (and includes the libcurl headers).
RUN apt-get update && apt-get install -y --no-install-recommends clang libclang-dev cmake libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add wasm32-wasip2
COPY . .
RUN cargo build --release -p eddy-server --features rocksdb,kafka \
 && cd udfs && cargo build --release --target wasm32-wasip2

FROM debian:bookworm-slim
# curl is for the HEALTHCHECK: the eddy CLI has no health command.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*
# A fixed numeric id, so Kubernetes' runAsNonRoot can check it and volumes can be given to it (fsGroup).
RUN groupadd --system --gid 10001 eddy \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/eddy --no-create-home --shell /usr/sbin/nologin eddy \
 && mkdir -p /var/lib/eddy && chown 10001:10001 /var/lib/eddy
COPY --from=build /src/target/release/eddy /usr/local/bin/eddy
# The example UDFs, ready to upload with `eddy module push`.
COPY --from=build /src/udfs/target/wasm32-wasip2/release/*.wasm /usr/share/eddy/udfs/
ENV EDDY_LISTEN=0.0.0.0:8080 EDDY_DATA_DIR=/var/lib/eddy
# A named volume mounted here starts as a copy of this folder, owned by the server's user.
VOLUME /var/lib/eddy
EXPOSE 8080
USER 10001:10001
# The port is the one EDDY_LISTEN names (8080 if unset); /health answers without a token.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD port="${EDDY_LISTEN##*:}"; curl -fsS -o /dev/null "http://127.0.0.1:${port:-8080}/health" || exit 1
ENTRYPOINT ["eddy"]
CMD ["serve"]
