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
# A fixed, numeric uid (10001): Kubernetes' runAsNonRoot can only verify a
# numeric USER, and deploy/k8s/ runs the pods as 10001. The mail and OAuth
# key folders exist in the image, owned by that user, so a named volume
# mounted on them (docker-compose.yml) starts out writable by it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 jetshop \
 && useradd --system --uid 10001 --gid 10001 --home /var/lib/jetshop --create-home jetshop \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/jetshop/mail /var/lib/jetshop/oauth-keys
COPY --from=build /usr/local/bin/jetshop /usr/local/bin/jetshop
USER 10001:10001
WORKDIR /var/lib/jetshop
ENV JETSHOP_LOG_FORMAT=json
ENTRYPOINT ["jetshop"]
CMD ["--help"]
