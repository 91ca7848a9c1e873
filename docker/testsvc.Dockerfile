# The test service alone, for tests that run containers: one statically linked binary, nothing
# else (the test environment cannot pull a base image, and none is needed).
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile static \
#     --target x86_64-unknown-linux-gnu --bin titan-testsvc
# Context: a directory holding just that binary (scripts/docker-env.sh images builds one).
FROM scratch
COPY titan-testsvc /titan-testsvc
ENTRYPOINT ["/titan-testsvc"]
