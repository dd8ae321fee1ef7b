# A minimal image around a static binary: no base image is pulled, so it
# builds where no registry is reachable. Build it with ./docker/build.sh
# (which compiles the binary first), or by hand:
#
#   CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o docker/node ./cmd/node
#   DOCKER_BUILDKIT=0 docker build -t distlock:latest .
FROM scratch
COPY docker/node /node
# The data dir belongs to the unprivileged user, so a fresh named volume
# mounted there inherits that ownership.
COPY --chown=65532:65532 docker/data/ /data/
USER 65532:65532
VOLUME /data
ENV DLOCK_BIND=0.0.0.0 \
    DLOCK_DATA_DIR=/data
EXPOSE 6379 8001 9001
HEALTHCHECK --interval=2s --timeout=2s --start-period=5s --retries=3 CMD ["/node", "--health-check"]
ENTRYPOINT ["/node"]
