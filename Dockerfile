# One image for every role: `repeaterd run --roles <role>`.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/repeaterd ./cmd/repeaterd

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 repeaterd
COPY --from=build /out/repeaterd /usr/local/bin/repeaterd
USER repeaterd
# SIGTERM starts the drain (REPEATERD_DRAIN_TIMEOUT); give the container at
# least that long to stop (docker-compose.yml's stop_grace_period).
STOPSIGNAL SIGTERM
# No curl in the image: the binary asks its own /readyz (on
# REPEATERD_METRICS_ADDR, else REPEATERD_HTTP_ADDR).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 CMD ["repeaterd", "healthcheck"]
ENTRYPOINT ["repeaterd"]
CMD ["run"]
