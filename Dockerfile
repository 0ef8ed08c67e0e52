# Eddy server image. Build: docker build -t eddy .
# Run: docker run -p 8080:8080 -e EDDY_TENANTS="acme:<sha256 of token>" -v eddy-data:/var/lib/eddy eddy
# (A server on a non-loopback address needs tenants; `eddy token hash <token>` prints the hash.)

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
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/eddy /usr/local/bin/eddy
# The example UDFs, ready to upload with `eddy module push`.
COPY --from=build /src/udfs/target/wasm32-wasip2/release/*.wasm /usr/share/eddy/udfs/
ENV EDDY_LISTEN=0.0.0.0:8080 EDDY_DATA_DIR=/var/lib/eddy
VOLUME /var/lib/eddy
EXPOSE 8080
ENTRYPOINT ["eddy"]
CMD ["serve"]
