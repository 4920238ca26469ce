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
ENTRYPOINT ["repeaterd"]
CMD ["run"]
