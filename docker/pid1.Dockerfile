# titan-supervisor as PID 1 of a container, supervising native services: here the built-in
# demo (six tiers of the test service). Both binaries are statically linked, so the image needs
# no base and no libc:
#   RUSTFLAGS='-C target-feature=+crt-static' cargo build --profile static \
#     --target x86_64-unknown-linux-gnu --bin titan-supervisor --bin titan-testsvc
# Context: a directory holding just those two binaries (scripts/docker-env.sh images builds one).
FROM scratch
# the demo finds its test service beside its own executable
COPY titan-supervisor titan-testsvc /usr/local/bin/
# a scratch image has no /tmp: give the demo a directory of its own for logs, state and socket
WORKDIR /var/lib/titan
# `docker stop` sends SIGTERM to PID 1: the supervisor stops every service in reverse order
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/titan-supervisor"]
CMD ["demo", "--dir", "/var/lib/titan"]
