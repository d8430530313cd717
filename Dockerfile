# The `jetshop` binary in a small image. One image for every role:
#   docker run jetshop run catalog | run gateway | up | openapi
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jetshop-cli \
 && cp target/release/jetshop /usr/local/bin/jetshop

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/jetshop --create-home jetshop
COPY --from=build /usr/local/bin/jetshop /usr/local/bin/jetshop
USER jetshop
WORKDIR /var/lib/jetshop
ENV JETSHOP_LOG_FORMAT=json
ENTRYPOINT ["jetshop"]
CMD ["--help"]
