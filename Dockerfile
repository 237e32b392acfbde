# syntax=docker/dockerfile:1
#
# secret-injector on a distroless, non-root base with glibc. Three binaries, one per
# role (docs/design.md, "The crates"):
# - `secret-injector`, the webhook (`serve`; also `inject`, `certs`), which the
#   Deployment runs with its own `command`: glibc, Cargo's `release` profile (the
#   admission and TLS path at full speed). With musl's allocator the webhook answered
#   4,369 reviews/s where the glibc build answers about 29,000 on the same machine
#   (docs/performance.md, "The image").
# - `secret-injector-agent`, the image's ENTRYPOINT, because the injected init
#   container and refresh sidecar run this image with only `args` (`init ...`,
#   `refresh ...`): static (musl), Cargo's `agent` profile (all for size). It waits on
#   the network; static, it maps no shared C library, which is a third of a small
#   process's memory.
# - `secret-injector-exec`, the small env-mode wrapper init copies into pods: the same
#   build, static because it runs inside any app image.
#
#   docker build -t ghcr.io/secret-injector/secret-injector:0.1.0 .

# Any Rust from Cargo.toml's rust-version on.
FROM rust:1-bookworm AS build
# musl-tools: musl-gcc compiles the C code (aws-lc-sys via cc-rs) for the musl agent;
# cmake/clang: aws-lc-sys falls back to CMake for some configurations.
# musl-gcc only searches musl's include dir, and aws-lc needs the kernel
# headers (linux/random.h, asm/...), which are libc-independent: link them in.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools cmake clang perl \
 && rm -rf /var/lib/apt/lists/* \
 && for h in linux asm-generic; do ln -sfn "/usr/include/$h" "/usr/include/x86_64-linux-musl/$h"; done \
 && ln -sfn /usr/include/x86_64-linux-gnu/asm /usr/include/x86_64-linux-musl/asm \
 && rustup target add x86_64-unknown-linux-musl
# musl-gcc compiles C only: Rust links the agent with its own musl, as a static PIE
# (linking with musl-gcc gave a PIE that asks for /lib/ld-musl-x86_64.so.1). build.rs
# links the binaries with Rust's bundled LLD, packed relocations and code folding.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=5
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin secret-injector \
 && cargo build --locked --profile agent --target x86_64-unknown-linux-musl \
      --bin secret-injector-agent --bin secret-injector-exec \
 && mkdir -p /out \
 && cp target/release/secret-injector target/x86_64-unknown-linux-musl/agent/secret-injector-agent \
       target/x86_64-unknown-linux-musl/agent/secret-injector-exec /out/

# glibc 2.36 (Debian 12), which loads the packed relocations; libgcc_s for unwinding.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="secret-injector" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects secrets from Vault/OpenBao, AWS Secrets Manager and Parameter Store, Google Secret Manager and Azure Key Vault into pods via tmpfs" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/secret-injector/secret-injector"
# The env-mode wrapper ships next to the agent: init copies it into env-mode pods.
COPY --from=build --chown=0:0 --chmod=0555 /out/secret-injector /out/secret-injector-agent /out/secret-injector-exec /usr/local/bin/
USER 65532:65532
EXPOSE 8443 8080
# No shell or HTTP client in the image; Kubernetes probes (/healthz, /readyz
# on the admin port) check the webhook, and the injected init container is
# short-lived. Docker's HEALTHCHECK would not be used by Kubernetes anyway.
HEALTHCHECK NONE
# The injected containers set only `args`: they run the agent. The webhook's Deployment
# names its binary (`command: [/usr/local/bin/secret-injector]`).
ENTRYPOINT ["/usr/local/bin/secret-injector-agent"]
