# A static Switchboard binary in a distroless image, running as a non-root
# user. Build: docker build -t switchboard .
# Run:   docker run -p 8080:8080 -e SWITCHBOARD_JWT_SECRET=... switchboard
# (off loopback the server wants JWTs; see docs/operations.md).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# No cgo: the binary runs on an image without a C library.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/switchboard ./cmd/switchboard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/switchboard /switchboard
# The image's "nonroot" user; no shell, no package manager.
USER 65532:65532
ENV SWITCHBOARD_ADDR=0.0.0.0:8080
EXPOSE 8080
# The binary asks itself: the image has no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/switchboard", "health", "--addr", "127.0.0.1:8080"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/switchboard"]
CMD ["serve"]
